"""Per-op times of a compiled program from the device's own profiler (`jax.profiler`).

XLA's runtimes record one trace event per executed op (on the CPU, a thunk;
inside loop bodies, one per iteration) with the op's HLO name in `args.hlo_op`.
An op's time is its events' *self* time: the duration less that of the events
nested in it on the same thread (a `while` op's event holds its body's events).
Each profiled call is bracketed by a `TraceAnnotation`, so events are summed
per call. The per-op times kept are those of the call whose ops took the least
time in all, and a whole run's time is the least over calls: on a machine shared
with other processes the least is the time of the work itself, a median also
holds the waits for a core (on a loaded 2-core machine, medians of one program
varied 10x between rounds). One call's times, not each op's least, so that the
ops of a run add up as they did in one run.

The profiler adds its own cost per event; the share of a run's untraced time
that its ops' self times account for (`OpTrace.coverage`) says how far the
per-op times can be read as parts of the whole. On the CPU the rest is the
executor's dispatch between thunks, the call's own launch, and the work of
thunks that run asynchronously on the intra-op thread pool (Eigen convolutions:
their event holds the dispatch, the pool's work follows outside any op event).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import numpy as np

_CALL = "mallocbench-call-"  # annotation name prefix of one profiled call


class OpProfileError(RuntimeError):
    """The profiler gave no usable per-op events; the message says what was missing."""


@dataclasses.dataclass(frozen=True)
class OpTrace:
    """Per-op times of one program from `calls` profiled calls (seconds per program run)."""

    seconds: dict[str, float]  # HLO op name -> its summed self time in the call whose ops took the least
    executions: dict[str, int]  # HLO op name -> events per call (loop iterations included)
    traced_s: float  # least wall seconds of a profiled call
    untraced_s: float  # least wall seconds of an unprofiled call, taken before the profiled ones
    calls: int

    @property
    def coverage(self) -> float:
        """Summed per-op seconds over the untraced run time (1.0: the ops account for the whole run)."""
        return sum(self.seconds.values()) / self.untraced_s


def trace_ops(run: Callable[[], Any], calls: int = 5, trace_dir: str | None = None) -> OpTrace:
    """Profile `run()` (one call of a compiled program, blocking until done) `calls` times.

    `run` must already be compiled and warm. Untimed calls are not made; the
    untraced wall time is the least of `calls` calls made before tracing.
    Raises OpProfileError if the trace holds no per-op events.
    """
    if isinstance(calls, bool) or not isinstance(calls, int) or calls < 1:
        raise ValueError(f"calls must be a positive integer, got {calls!r}")
    untraced = []
    for _ in range(calls):
        t0 = time.perf_counter()
        run()
        untraced.append(time.perf_counter() - t0)
    with tempfile.TemporaryDirectory(dir=trace_dir) as folder:
        traced = []
        options = jax.profiler.ProfileOptions()
        options.python_tracer_level = 0  # Python calls would add events and time to every call
        jax.profiler.start_trace(folder, profiler_options=options)
        try:
            for k in range(calls):
                with jax.profiler.TraceAnnotation(f"{_CALL}{k}"):
                    t0 = time.perf_counter()
                    run()
                    traced.append(time.perf_counter() - t0)
        finally:
            jax.profiler.stop_trace()
        files = sorted(Path(folder).glob("**/*.trace.json.gz"))
        if not files:
            raise OpProfileError(f"the profiler wrote no trace file under {folder}")
        events = json.loads(gzip.decompress(files[-1].read_bytes()))["traceEvents"]
    per_call, counts = op_self_times(events, calls)
    names = sorted({n for c in per_call for n in c})
    best = min(range(calls), key=lambda k: sum(per_call[k].values()))
    seconds = {n: float(per_call[best].get(n, 0.0)) for n in names}
    executions = {n: int(np.median([c.get(n, 0) for c in counts])) for n in names}
    return OpTrace(seconds, executions, float(min(traced)), float(min(untraced)), calls)


def op_self_times(events: Sequence[dict], calls: int) -> tuple[list[dict[str, float]], list[dict[str, int]]]:
    """Per call, each op's summed self seconds and its number of events, from Chrome trace events.

    Calls are the `TraceAnnotation` events named `mallocbench-call-<k>`; an op event
    belongs to the call whose window holds its start.
    """
    complete = [e for e in events if e.get("ph") == "X" and "dur" in e and "ts" in e]
    windows = sorted((e["ts"], e["ts"] + e["dur"], int(e["name"][len(_CALL):]))
                     for e in complete if str(e.get("name", "")).startswith(_CALL))
    if len(windows) != calls:
        raise OpProfileError(f"expected {calls} annotated calls in the trace, found {len(windows)}")
    ops = [e for e in complete if "hlo_op" in (e.get("args") or {})]
    if not ops:
        raise OpProfileError("the trace has no per-op events (no event carries args.hlo_op)")
    child = _nested_seconds(complete)
    per_call: list[dict[str, float]] = [{} for _ in range(calls)]
    counts: list[dict[str, int]] = [{} for _ in range(calls)]
    starts = np.array([w[0] for w in windows])
    for e in ops:
        k = int(np.searchsorted(starts, e["ts"], side="right")) - 1
        if k < 0 or e["ts"] > windows[k][1]:
            continue  # an event outside every call (e.g. a warm-up's tail)
        name = e["args"]["hlo_op"]
        call = windows[k][2]
        per_call[call][name] = per_call[call].get(name, 0.0) + (e["dur"] - child.get(id(e), 0.0)) * 1e-6
        counts[call][name] = counts[call].get(name, 0) + 1
    return per_call, counts


def _nested_seconds(events: Sequence[dict]) -> dict[int, float]:
    """id(event) -> microseconds of the events directly nested in it on the same thread."""
    by_thread: dict[Any, list[dict]] = {}
    for e in events:
        by_thread.setdefault((e.get("pid"), e.get("tid")), []).append(e)
    nested: dict[int, float] = {}
    for thread in by_thread.values():
        stack: list[dict] = []
        for e in sorted(thread, key=lambda e: (e["ts"], -e["dur"])):
            while stack and stack[-1]["ts"] + stack[-1]["dur"] <= e["ts"]:
                stack.pop()
            if stack:
                nested[id(stack[-1])] = nested.get(id(stack[-1]), 0.0) + e["dur"]
            stack.append(e)
    return nested
