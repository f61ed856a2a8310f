"""Per-op ground truth: each program of a suite timed whole and op by op on the local device.

For each size, the programs of every workload are compiled once and then profiled
in `rounds` interleaved rounds (every program once per round, in a rotated order,
so that load from other processes spreads over all of them). In a round a program
is called `calls` times untraced (its whole time: the least of them) and `calls`
times under `jax.profiler` (its per-op times, `harness.device.op_profile`). An op whose
trace event holds only its dispatch (an unfused convolution or dot on the CPU: its work
runs on the thread pool) is compiled and timed alone in each round instead
(`harness.device.op_alone`). Stored:

- `measurements`: one row per program, as a sweep stores an `xla-native` cell
  (median over rounds of the round's least time, CI of that median; `samples`
  the rounds' figures), so calibration reads it;
- `op_times`: one row per op with a kernel (op, kind, flops, bytes, shapes, trip
  count, seconds per run, events per run, `timed_alone`), and per program its
  `coverage`, the share of the whole time its ops account for. An op's seconds are
  those of the round whose profiled ops took the least in all (one call's figures,
  so that they add up as in one run), an op timed alone its least over rounds; the
  whole time is the least of all untraced calls, so coverage compares least with least.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Callable

import jax
import numpy as np

import workloads
from agent.registry import solve
from harness.device.machine import this_machine
from harness.device.op_alone import AloneTimer, dispatch_only, op_program
from harness.device.op_profile import OpTrace, trace_ops
from harness.device.realization import NATIVE, extract_linked
from harness.device.timing import environment, median_ci
from harness.model.profiles import Profile
from harness.results import store
from harness.results.artifacts import write_text
from harness.xla.hlo_text import parse_module
from harness.xla.instance import Instance


@dataclasses.dataclass(frozen=True)
class OpTimesSpec:
    """What one per-op run measures."""

    workloads: tuple[str, ...]
    sizes: tuple[str, ...]
    profile: Profile  # the profile whose prediction is stored beside each program
    rounds: int = 5
    calls: int = 5

    def __post_init__(self):
        for name in ("rounds", "calls"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        for size in self.sizes:
            if size not in workloads.SIZES:
                raise ValueError(f"unknown size {size!r}; valid sizes: {', '.join(workloads.SIZES)}")
        for name in self.workloads:
            workloads.get(name)  # raises with the valid names


@dataclasses.dataclass
class _Program:
    name: str
    size: str
    instance: Instance
    run: Callable[[], None]
    traces: list[OpTrace]
    untraced: list[float]
    alone: dict[str, AloneTimer]  # ops timed alone (`op_alone.dispatch_only`) -> their timer
    alone_s: dict[str, list[float]]  # -> seconds per execution, one per round


def run_op_times(spec: OpTimesSpec, root: str = store.DEFAULT_ROOT, label: str = "op-times",
                 on_program: Callable[[dict], None] = lambda row: None) -> str:
    """Measure every program of `spec` whole and op by op; returns the run id."""
    env = environment()
    run_id = store.start_run({
        "kind": "op-times", "workloads": list(spec.workloads), "sizes": list(spec.sizes),
        "rounds": spec.rounds, "calls": spec.calls, "profile": spec.profile.name, "backend": jax.default_backend(),
        **{k: env[k] for k in ("device_kind", "jax_version", "git_commit", "host")}, **this_machine().row(),
    }, root, run_id=store.new_run_id(label))
    n = 0
    try:
        for size in spec.sizes:
            programs = []
            for name in spec.workloads:
                fn, args = workloads.get(name).build(size)
                instance, _, compiled = extract_linked(fn, args, f"{name}/{size}")
                run = _runner(compiled, args)
                run()  # warm
                alone = _alone_timers(compiled, instance, spec.calls)
                programs.append(_Program(name, size, instance, run, [], [], alone, {n: [] for n in alone}))
            for r in range(spec.rounds):
                for p in programs[r % len(programs):] + programs[:r % len(programs)]:
                    trace = trace_ops(p.run, spec.calls)
                    p.traces.append(trace)
                    p.untraced.append(trace.untraced_s)
                    for op, timer in p.alone.items():
                        p.alone_s[op].append(timer())
            for p in programs:
                row, op_rows = _rows(p, spec, run_id, root)
                store.append("measurements", [row], run_id, root)
                store.append("op_times", op_rows, run_id, root)
                on_program(row)
                n += 1
    except BaseException:
        store.finish_run(run_id, root, status="interrupted", rows=n)
        raise
    store.finish_run(run_id, root, rows=n)
    return run_id


def _alone_timers(compiled, instance: Instance, calls: int) -> dict[str, AloneTimer]:
    """A timer for each op of the program whose trace event holds only its dispatch."""
    module = parse_module(compiled.as_text())
    names = {op.name for op in instance.ops}
    return {inst.name: AloneTimer(*op_program(module, inst), calls=calls)
            for c in module.computations.values() for inst in c.instructions
            if inst.name in names and dispatch_only(inst)}


def _runner(compiled, args) -> Callable[[], None]:
    def run() -> None:
        jax.block_until_ready(compiled(*args))
    return run


def _rows(p: _Program, spec: OpTimesSpec, run_id: str, root: str) -> tuple[dict, list[dict]]:
    """The program's measurement row and its ops' rows."""
    from harness.model.simulator import simulate

    folder = Path(store.run_dir(run_id, root))
    instance_file = write_text(folder / "instances" / f"{p.name}@{p.size}.json.gz", p.instance.to_json(), root)
    mapping = dataclasses.replace(solve(p.instance, spec.profile, None, "all-fast"), policy=NATIVE)
    mapping_file = write_text(folder / "mappings" / f"{p.name}@{p.size}@{NATIVE}@none.json", mapping.to_json(), root)
    samples = np.array(p.untraced)  # the least of `calls` untraced calls, one per round
    median = float(np.median(samples))
    low, high = median_ci(samples) if len(samples) >= 6 else (float(samples.min()), float(samples.max()))
    names = sorted({n for t in p.traces for n in t.seconds} | set(p.alone))
    best = min(p.traces, key=lambda t: sum(t.seconds.values()) - sum(t.seconds.get(n, 0.0) for n in p.alone))
    executions = {n: int(np.median([t.executions.get(n, 0) for t in p.traces])) for n in names}
    seconds = {n: float(best.seconds.get(n, 0.0)) for n in names}  # one call's figures: they add up
    seconds |= {n: min(p.alone_s[n]) * max(executions.get(n, 1), 1) for n in p.alone}
    least = min(t.untraced_s for t in p.traces)
    coverage = sum(seconds.values()) / least
    row = {
        "workload": p.name, "size": p.size, "profile": spec.profile.name, "policy": NATIVE, "budget": math.nan,
        "status": "ok", "error": "", "median_s": median, "min_s": least,
        "ci_low_s": low, "ci_high_s": high, "samples": [float(s) for s in samples], "n_samples": len(samples),
        "traced_s": float(np.median([t.traced_s for t in p.traces])), "op_coverage": coverage,
        "predicted_s": simulate(p.instance, mapping, spec.profile),
        "instance_file": instance_file, "mapping_file": mapping_file,
    }
    by_name = {op.name: op for op in p.instance.ops}
    op_rows = []
    for name in names:
        op = by_name.get(name)
        if op is None:
            continue  # an event of no op of the instance (none seen so far: reported by coverage)
        op_rows.append({
            "workload": p.name, "size": p.size, "op": name, "opcode": op.opcode, "kind": op.kind,
            "step": op.step, "computation": op.computation, "flops": op.flops, "matmul_flops": op.matmul_flops,
            "transcendentals": op.transcendentals, "bytes": float(sum(op.operand_bytes) + op.output_bytes),
            "shapes": " ".join(p.instance.buffers[b].shape for b in op.writes),
            "trip_count": op.trip_count if op.trip_count is not None else -1,
            "executions": executions[name], "measured_s": seconds[name], "timed_alone": name in p.alone,
            "coverage": coverage, "instance_file": instance_file,
        })
    return row, op_rows
