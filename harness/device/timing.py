"""Measure a JAX program's run time as a performance engineer would: `measure(fn, args)`.

The protocol, in order:

1. Arguments given as NumPy arrays are put on the device once, so the timed calls do not
   include host-to-device copies (JAX arrays stay where they are: a realized mapping may
   have placed them in host memory on purpose; Python and NumPy scalars are passed as
   given, since they may be static arguments). `env["time"]` is taken here, at the start.
2. Compile, timed apart (`compile_s`: `lower` + `compile`, i.e. tracing, lowering and XLA's
   compilation). A compile error or an exception while tracing ends the run here.
3. Garbage collection is switched off (after one `gc.collect()`) for the warm-up calls and
   the timed calls, and restored to its previous state in a `finally`.
4. `warmup` untimed calls, then timed calls, each `time.perf_counter()` around
   `compiled(*args)` and `jax.block_until_ready` on its outputs (the outputs are dropped
   after each call, so one call's outputs never sit in memory during the next call).
5. Stop after the first of: `max_repeats` samples; `time_limit_s` seconds since the end of
   compilation, warm-up included (checked between calls, a call is never interrupted; this
   wins over `min_repeats`, but there is always at least one sample); or, once there are
   `min_repeats` samples, the 95% confidence interval of the median lies within
   `rel_ci` x median of the median on both sides (`ci_met`). The interval is
   distribution-free (order statistics, binomial distribution; see `median_ci`).
   Checking it after every sample is a sequential test, so its real coverage is a little
   below the nominal 95%; the reported interval is the one of the final samples.

A run that fails (out of memory, compile error, any exception in compile or in a call)
gives a failed `Measurement` (`ok=False`, `error="<ExceptionType>: message"`, timings NaN,
no samples) and is never raised, so a caller can record it and go on. Caller bugs (a bad
argument of `measure` itself) raise `ValueError` / `TypeError` naming the argument.

Memory (where the backend reports it; the CPU backend does not, so `peak_bytes` and
`within_budget` are None there):

- `program_bytes`: the compiled program's `memory_analysis()` figures, under XLA's
  attribute names (`argument_size_in_bytes`, `output_size_in_bytes`, `temp_size_in_bytes`,
  `alias_size_in_bytes`, `generated_code_size_in_bytes`, and `host_*` and
  `peak_memory_in_bytes` where this JAX version has them); `{}` where unavailable.
- `peak_bytes`: the device's `peak_bytes_in_use` (from `device.memory_stats()`) at the end
  of the run, when it rose during the run (warm-up and timed calls): then it is exactly the
  device's high-water mark of allocated bytes during the run, including arrays of the
  process that are not the program's. JAX has no public way to reset the high-water mark,
  so when an earlier computation of the process set a higher mark, the run's own peak
  cannot be read and `peak_bytes` is None.
- `within_budget` (only when `budget_bytes` is given) compares the *device bytes of the
  program at its peak* with `budget_bytes`:

      program device bytes = peak_bytes_in_use during the run
                             - (bytes_in_use just before the run - argument bytes on the device)

  i.e. the high-water mark less the bytes held by other live arrays of the process, which
  leaves the program's device-resident arguments, its outputs and its temporaries at its
  peak (arguments placed in host memory are not device bytes and so do not count) — the
  device-memory (fast tier) use the budget of an offload mapping is about. It is True /
  False when the peak rose during the run (exact); when it did not, the earlier
  high-water mark gives an upper bound: True if even that bound is within budget, else
  None (cannot tell). None also when the device reports no `memory_stats()`. The device
  is the program's first device (that of its output or input shardings, else
  `jax.devices()[0]`).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import gc
import math
import os
import socket
import subprocess
import time
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np
from scipy.stats import binom

from harness.xla.extraction import without_persistent_cache

ENV_KEYS = ("device_kind", "platform", "jax_version", "jaxlib_version", "xla_flags", "git_commit", "host", "time")

# `memory_analysis()` attributes copied into `Measurement.program_bytes`, where present.
_MEMORY_ANALYSIS_FIELDS = (
    "argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes", "temp_size_in_bytes",
    "generated_code_size_in_bytes", "host_argument_size_in_bytes", "host_output_size_in_bytes",
    "host_alias_size_in_bytes", "host_temp_size_in_bytes", "host_generated_code_size_in_bytes",
    "peak_memory_in_bytes",
)

_MAX_ERROR_CHARS = 4000
_NAN = float("nan")


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One measured program: run-time statistics (seconds per call), memory and environment."""

    ok: bool
    error: str
    samples: tuple[float, ...]  # seconds per call, in the order taken
    median_s: float
    iqr_s: float
    min_s: float
    ci_low_s: float
    ci_high_s: float
    ci_met: bool
    compile_s: float
    peak_bytes: Optional[int]  # device peak during the timed run, None where unknown
    program_bytes: dict[str, int]  # memory_analysis figures
    budget_bytes: Optional[int]
    within_budget: Optional[bool]
    env: dict[str, str]  # ENV_KEYS

    def row(self) -> dict:
        """A flat dict for the results store."""
        row = {
            "status": "ok" if self.ok else "failed",
            "error": self.error,
            "median_s": self.median_s,
            "iqr_s": self.iqr_s,
            "min_s": self.min_s,
            "ci_low_s": self.ci_low_s,
            "ci_high_s": self.ci_high_s,
            "ci_met": self.ci_met,
            "samples": list(self.samples),
            "n_samples": len(self.samples),
            "compile_s": self.compile_s,
            "peak_bytes": self.peak_bytes,
            "budget_bytes": self.budget_bytes,
            "within_budget": self.within_budget,
        }
        row.update(self.env)
        return row


# --------------------------------------------------------------------------- statistics


@functools.lru_cache(maxsize=4096)
def _ci_ranks(n: int, confidence: float) -> Optional[tuple[int, int]]:
    """0-based indices (lo, hi) into the sorted samples of the median's CI; None if n is too small.

    With B ~ Binomial(n, 1/2) the number of samples below the true median m,
    P(x_(l+1) > m) = P(B <= l) (1-based order statistics), and by symmetry the same for the
    upper end. l is the largest integer with P(B <= l) <= (1 - confidence) / 2, so
    [x_(l+1), x_(n-l)] covers m with probability 1 - 2 P(B <= l) >= confidence.
    """
    tail = (1.0 - confidence) / 2.0
    low = int(binom.ppf(tail, n, 0.5))  # smallest l with cdf(l) >= tail
    while low >= 0 and binom.cdf(low, n, 0.5) > tail:
        low -= 1
    if low < 0:
        return None
    return low, n - 1 - low


def median_ci(samples: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """The distribution-free confidence interval of the median: a pair of order statistics.

    Covers the population median with probability at least `confidence` for any
    continuous distribution (exactly 1 - 2 * binom.cdf(l, n, 1/2), see `_ci_ranks`). With
    too few samples for any pair of order statistics to reach `confidence` (fewer than 6
    for 95%), the interval is (-inf, inf).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    x = np.sort(np.asarray(samples, dtype=float).ravel())
    if x.size == 0:
        raise ValueError("samples must not be empty")
    if not np.all(np.isfinite(x)):
        raise ValueError("samples must be finite")
    ranks = _ci_ranks(int(x.size), float(confidence))
    if ranks is None:
        return -math.inf, math.inf
    return float(x[ranks[0]]), float(x[ranks[1]])


def _ci_met(samples: Sequence[float], rel_ci: float) -> bool:
    med = float(np.median(samples))
    low, high = median_ci(samples)
    return med - low <= rel_ci * med and high - med <= rel_ci * med


# --------------------------------------------------------------------------- environment


def _git_commit() -> str:
    """HEAD of the checkout this file lives in (+"-dirty" if tracked files changed); "" if none."""
    here = os.path.dirname(os.path.abspath(__file__))

    def git(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(("git", *argv), cwd=here, capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return ""
        commit = head.stdout.strip()
        status = git("status", "--porcelain", "--untracked-files=no")
        if status.returncode == 0 and status.stdout.strip():
            commit += "-dirty"
        return commit
    except (OSError, subprocess.SubprocessError):
        return ""


def _jaxlib_version() -> str:
    try:
        import jaxlib

        return str(getattr(jaxlib, "__version__", ""))
    except Exception:  # pragma: no cover - jaxlib is a dependency of jax
        return ""


def environment() -> dict[str, str]:
    """Where and with what a measurement is taken; every value a string, never raises."""
    try:
        device = jax.devices()[0]
        device_kind, platform = str(device.device_kind), str(device.platform)
    except Exception:
        device_kind, platform = "", ""
    return {
        "device_kind": device_kind,
        "platform": platform,
        "jax_version": str(jax.__version__),
        "jaxlib_version": _jaxlib_version(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "git_commit": _git_commit(),
        "host": socket.gethostname(),
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------- memory


def _program_bytes(compiled) -> dict[str, int]:
    try:
        analysis = compiled.memory_analysis()
    except Exception:
        return {}
    if isinstance(analysis, (list, tuple)):  # older JAX: one per device
        analysis = analysis[0] if analysis else None
    if analysis is None:
        return {}
    figures = {}
    for name in _MEMORY_ANALYSIS_FIELDS:
        value = getattr(analysis, name, None)
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            figures[name] = int(value)
    return figures


def _program_device(compiled):
    """The program's first device: from its output, then input shardings; else jax.devices()[0]."""
    for attr in ("output_shardings", "input_shardings"):
        try:
            for sharding in jax.tree_util.tree_leaves(getattr(compiled, attr)):
                devices = sorted(sharding.device_set, key=lambda d: d.id)
                if devices:
                    return devices[0]
        except Exception:
            continue
    return jax.devices()[0]


def _memory_stats(device) -> dict:
    try:
        stats = device.memory_stats()
    except Exception:
        return {}
    return stats if isinstance(stats, dict) else {}


def _int_stat(stats: dict, key: str) -> Optional[int]:
    value = stats.get(key)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    return None


def _argument_device_bytes(args, device) -> Optional[int]:
    """Bytes of the arguments resident in `device`'s device memory (host-memory ones excluded)."""
    total, seen = 0, set()
    try:
        for leaf in jax.tree_util.tree_leaves(args):
            if not isinstance(leaf, jax.Array) or id(leaf) in seen:
                continue
            seen.add(id(leaf))
            if getattr(leaf.sharding, "memory_kind", None) not in (None, "device"):
                continue
            for shard in leaf.addressable_shards:
                if shard.device == device:
                    total += int(shard.data.nbytes)
    except Exception:
        return None
    return total


# --------------------------------------------------------------------------- measure


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")


def _error_text(exc: BaseException) -> str:
    """"<ExceptionType>: message"; a long message keeps its head and its tail (where a
    wrapped traceback, e.g. of a host callback, names the original exception)."""
    text = f"{type(exc).__name__}: {exc}"
    if len(text) > _MAX_ERROR_CHARS:
        keep = (_MAX_ERROR_CHARS - 20) // 2
        text = f"{text[:keep]} ...[truncated]... {text[-keep:]}"
    return text


def _failed(error: str, env, compile_s=_NAN, program_bytes=None, budget_bytes=None) -> Measurement:
    return Measurement(
        ok=False, error=error, samples=(), median_s=_NAN, iqr_s=_NAN, min_s=_NAN, ci_low_s=_NAN,
        ci_high_s=_NAN, ci_met=False, compile_s=compile_s, peak_bytes=None,
        program_bytes=dict(program_bytes or {}), budget_bytes=budget_bytes, within_budget=None, env=env,
    )


def _on_device(args: tuple) -> tuple:
    """NumPy arrays to the default device (once, not in every timed call); the rest unchanged."""
    return jax.tree_util.tree_map(lambda x: jax.device_put(x) if isinstance(x, np.ndarray) else x, args)


def _n_positional(compiled) -> Optional[int]:
    try:
        positional, _ = compiled.args_info
        return len(positional)
    except Exception:
        return None


def measure(
    fn: Callable[..., Any],
    args: tuple,
    *,
    warmup: int = 3,
    min_repeats: int = 10,
    max_repeats: int = 1000,
    rel_ci: float = 0.01,
    time_limit_s: float = 10.0,
    budget_bytes: Optional[int] = None,
) -> Measurement:
    """Time `fn(*args)` (see the module docstring for the protocol); never raises for a failing run.

    `fn` is a callable or a jitted function (anything with `.lower`); a plain callable is
    wrapped in `jax.jit`. The timed calls call the compiled executable directly. A jitted
    `fn` with static arguments cannot be called that way (the executable takes only the
    dynamic ones); then the timed calls go through `fn(*args)` itself, whose cache holds
    the executable after the first (always untimed) call. Prefer binding static arguments
    with `functools.partial`.
    """
    args = _check_arguments(fn, args, warmup, min_repeats, max_repeats, rel_ci, time_limit_s)
    if budget_bytes is not None:
        _check_int("budget_bytes", budget_bytes, 0)
        budget_bytes = int(budget_bytes)
    env = environment()
    try:
        args = _on_device(args)
        jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
        with without_persistent_cache():  # compile_s is XLA's compile, not a cache load
            t0 = time.perf_counter()
            compiled = jitted.lower(*args).compile()
            compile_s = time.perf_counter() - t0
    except Exception as exc:
        return _failed(_error_text(exc), env, budget_bytes=budget_bytes)
    program_bytes = _program_bytes(compiled)
    try:
        call, warmup = _callable(compiled, jitted, args, warmup)
        device = _program_device(compiled)
        before = _memory_stats(device)
        arg_device_bytes = _argument_device_bytes(args, device) if before else None
        samples, ci_met = _timed_calls(call, args, warmup, min_repeats, max_repeats, rel_ci, time_limit_s)
    except Exception as exc:
        return _failed(_error_text(exc), env, compile_s, program_bytes, budget_bytes)
    peak_bytes, within_budget = _peak_and_budget(before, _memory_stats(device), arg_device_bytes, budget_bytes)
    x = np.asarray(samples, dtype=float)
    q75, q25 = np.percentile(x, [75, 25])
    ci_low, ci_high = median_ci(x)
    return Measurement(
        ok=True, error="", samples=tuple(float(s) for s in samples), median_s=float(np.median(x)),
        iqr_s=float(q75 - q25), min_s=float(x.min()), ci_low_s=ci_low, ci_high_s=ci_high, ci_met=ci_met,
        compile_s=compile_s, peak_bytes=peak_bytes, program_bytes=program_bytes, budget_bytes=budget_bytes,
        within_budget=within_budget, env=env,
    )


def _check_arguments(fn, args, warmup, min_repeats, max_repeats, rel_ci, time_limit_s) -> tuple:
    """`args` as a tuple, after checking measure()'s arguments (TypeError / ValueError naming the argument)."""
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if isinstance(args, list):
        args = tuple(args)
    if not isinstance(args, tuple):
        raise TypeError(f"args must be a tuple of positional arguments, got {type(args).__name__}")
    _check_int("warmup", warmup, 0)
    _check_int("min_repeats", min_repeats, 1)
    _check_int("max_repeats", max_repeats, 1)
    if min_repeats > max_repeats:
        raise ValueError(f"min_repeats ({min_repeats}) must be <= max_repeats ({max_repeats})")
    _check_positive("rel_ci", rel_ci)
    _check_positive("time_limit_s", time_limit_s)
    return args


def _callable(compiled, jitted, args: tuple, warmup: int) -> tuple[Callable[..., Any], int]:
    """What the timed calls call, and the warm-up calls to make: the executable itself, or, for a function
    with static arguments, jit's own dispatch (and cache) after at least one warm-up call. ValueError for a
    function that donates its arguments (it cannot be called twice with the same ones)."""
    if any(getattr(info, "donated", False) for info in jax.tree_util.tree_leaves(compiled.args_info)):
        raise ValueError("fn donates some of its arguments, so it cannot be called repeatedly with the "
                         "same arguments: measure it jitted without donate_argnums/donate_argnames")
    if _n_positional(compiled) in (None, len(args)):
        return compiled, warmup
    return jitted, max(warmup, 1)


def _timed_calls(call: Callable[..., Any], args: tuple, warmup: int, min_repeats: int, max_repeats: int,
                 rel_ci: float, time_limit_s: float) -> tuple[list[float], bool]:
    """The seconds of each timed call, and whether the median's CI met `rel_ci`: steps 3 to 5 of the
    protocol, with garbage collection off (restored whatever happens)."""
    samples: list[float] = []
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        deadline = time.perf_counter() + time_limit_s
        for _ in range(warmup):
            out = call(*args)
            jax.block_until_ready(out)
            del out
            if time.perf_counter() >= deadline:
                break
        while True:
            t0 = time.perf_counter()
            out = call(*args)
            jax.block_until_ready(out)
            t1 = time.perf_counter()
            del out
            samples.append(t1 - t0)
            if len(samples) >= min_repeats and _ci_met(samples, rel_ci):
                return samples, True
            if len(samples) >= max_repeats or time.perf_counter() >= deadline:
                return samples, False
    finally:
        if gc_was_enabled:
            gc.enable()


def _peak_and_budget(before: dict, after: dict, arg_device_bytes: Optional[int],
                     budget_bytes: Optional[int]) -> tuple[Optional[int], Optional[bool]]:
    """`peak_bytes` and `within_budget` from the device's memory_stats before and after the run."""
    peak_before, peak_after = _int_stat(before, "peak_bytes_in_use"), _int_stat(after, "peak_bytes_in_use")
    in_use_before = _int_stat(before, "bytes_in_use")
    if peak_before is None or peak_after is None:
        return None, None
    exact = peak_after > peak_before
    peak_bytes = peak_after if exact else None
    if budget_bytes is None or in_use_before is None or arg_device_bytes is None:
        return peak_bytes, None
    others = max(in_use_before - arg_device_bytes, 0)  # live bytes of the process that are not the program's
    program_peak = peak_after - others  # exact if the run set the mark, else an upper bound
    if program_peak <= budget_bytes:
        return peak_bytes, True
    return peak_bytes, (False if exact else None)
