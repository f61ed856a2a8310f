"""Tests of harness.measure: the median's confidence interval, the timing protocol, failures."""

import datetime
import gc
import itertools
import math
import re
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import binom

from harness.device import timing
from harness.device.timing import (
    ENV_KEYS, Measurement, _argument_device_bytes, _ci_met, _peak_and_budget, environment, measure, median_ci,
)

FAST = dict(warmup=1, time_limit_s=5.0)  # every measure() call here is bounded in time


@pytest.fixture(scope="module")
def matmul():
    a = jax.random.normal(jax.random.key(0), (128, 128), jnp.float32)
    return jax.jit(lambda x: x @ x), (a,)


def _no_device_memory_stats():
    return jax.devices()[0].memory_stats() is None


# --------------------------------------------------------------------------- median_ci


@pytest.mark.parametrize("n, lo_rank, hi_rank", [(6, 1, 6), (10, 2, 9), (50, 18, 33), (100, 40, 61)])
def test_median_ci_order_statistics_of_the_tables(n, lo_rank, hi_rank):
    samples = np.random.default_rng(n).permutation(np.arange(1, n + 1, dtype=float))
    low, high = median_ci(samples)
    assert (low, high) == (lo_rank, hi_rank)  # samples 1..n: the value is the rank
    assert low <= np.median(samples) <= high
    # the coverage is the binomial one, at least 95%
    assert 1 - 2 * binom.cdf(lo_rank - 1, n, 0.5) >= 0.95


def test_median_ci_too_few_samples_is_unbounded():
    assert median_ci([1.0, 2.0, 3.0, 4.0, 5.0]) == (-math.inf, math.inf)
    assert median_ci([3.0]) == (-math.inf, math.inf)
    assert median_ci([5.0, 1.0, 3.0, 2.0, 4.0, 6.0]) == (1.0, 6.0)


def test_median_ci_lower_confidence_is_narrower():
    samples = np.arange(100, dtype=float)
    low95, high95 = median_ci(samples)
    low80, high80 = median_ci(samples, confidence=0.80)
    assert low95 <= low80 <= high80 <= high95 and high80 - low80 < high95 - low95


def test_median_ci_coverage_by_simulation():
    """Log-normal samples (median 1): the interval covers 1 as often as the binomial says."""
    rng = np.random.default_rng(0)
    n, trials = 50, 4000
    exact = 1 - 2 * binom.cdf(17, n, 0.5)  # [x_(18), x_(33)]: 0.967
    draws = rng.lognormal(0.0, 1.0, size=(trials, n))
    covered = np.mean([low <= 1.0 <= high for low, high in map(median_ci, draws)])
    assert abs(covered - exact) < 4 * math.sqrt(exact * (1 - exact) / trials)
    assert covered >= 0.94


@pytest.mark.parametrize("bad, match", [([], "samples"), ([1.0, float("nan")], "samples")])
def test_median_ci_rejects_bad_samples(bad, match):
    with pytest.raises(ValueError, match=match):
        median_ci(bad)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.5, -0.1])
def test_median_ci_rejects_bad_confidence(confidence):
    with pytest.raises(ValueError, match="confidence"):
        median_ci([1.0] * 10, confidence)


# --------------------------------------------------------------------------- measure: ok runs


class _ProgramClock:
    """A stand-in for timing's `time` module whose perf_counter() only the measured program moves on."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def _clocked(monkeypatch, durations):
    """A program whose calls take `durations` (an iterable of seconds, one per call) on a clock that only it
    moves: timing's perf_counter reads that clock, so how many calls measure() makes is deterministic."""
    clock, durations = _ProgramClock(), iter(durations)
    monkeypatch.setattr(timing, "time", clock)

    def host(x):
        clock.now += next(durations)
        return x

    def fn(x):
        return jax.pure_callback(host, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    return fn


def test_measure_stops_when_the_ci_goal_is_met(monkeypatch):
    durations = 1e-3 * (1 + 0.3 * np.random.default_rng(0).random(1000))  # +-15% around 1.15 ms
    m = measure(_clocked(monkeypatch, durations), (jnp.ones(3),), warmup=2, min_repeats=10, max_repeats=1000,
                rel_ci=0.05, time_limit_s=10.0)
    assert m.ok and m.error == ""
    assert m.ci_met
    n = len(m.samples)
    assert 10 <= n < 1000
    assert m.samples == pytest.approx(durations[2:2 + n], rel=1e-9)  # after the two warm-up calls
    # it stopped at the first sample count (from min_repeats on) at which the goal was met
    assert _ci_met(m.samples, 0.05)
    assert not any(_ci_met(m.samples[:k], 0.05) for k in range(10, n))
    # consistent statistics
    x = np.array(m.samples)
    assert m.median_s == pytest.approx(np.median(x))
    assert m.min_s == x.min() <= m.ci_low_s <= m.median_s <= m.ci_high_s <= x.max()
    assert m.median_s - m.ci_low_s <= 0.05 * m.median_s and m.ci_high_s - m.median_s <= 0.05 * m.median_s
    assert m.iqr_s == pytest.approx(np.percentile(x, 75) - np.percentile(x, 25)) and m.iqr_s >= 0
    assert (m.ci_low_s, m.ci_high_s) == median_ci(x)


def test_measure_takes_min_repeats_when_the_goal_is_met_at_once(matmul):
    fn, args = matmul
    m = measure(fn, args, min_repeats=12, rel_ci=100.0, **FAST)
    assert m.ok and m.ci_met and len(m.samples) == 12
    assert np.all(np.array(m.samples) > 0) and m.compile_s > 0
    assert m.program_bytes["argument_size_in_bytes"] == args[0].nbytes
    assert m.program_bytes["output_size_in_bytes"] == args[0].nbytes


def test_measure_stops_at_max_repeats(matmul):
    fn, args = matmul
    m = measure(fn, args, min_repeats=5, max_repeats=15, rel_ci=1e-12, **FAST)
    assert m.ok and not m.ci_met and len(m.samples) == 15


def test_time_limit_stops_the_repeats(monkeypatch):
    fn = _clocked(monkeypatch, itertools.repeat(0.125))  # every call takes exactly 1/8 s on this clock
    m = measure(fn, (jnp.ones(3),), warmup=2, min_repeats=10**6, max_repeats=10**6, rel_ci=1e-12,
                time_limit_s=1.0)
    assert m.ok and not m.ci_met
    # The limit counts from the end of compilation, warm-up included: 2 warm-up calls (1/4 s), then timed
    # calls until the clock reaches 1 s, checked between calls: 6 of them.
    assert m.samples == (0.125,) * 6


def _sleeper(seconds, record=None):
    def host(x):
        if record is not None:
            record.append(gc.isenabled())
        time.sleep(seconds)
        return x

    def fn(x):
        return jax.pure_callback(host, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    return fn


def test_time_limit_shorter_than_a_call_gives_one_sample():
    m = measure(_sleeper(0.05), (jnp.ones(3),), warmup=3, time_limit_s=0.01)
    assert m.ok and len(m.samples) == 1 and not m.ci_met
    assert m.samples[0] >= 0.05
    assert (m.ci_low_s, m.ci_high_s) == (-math.inf, math.inf)


def test_plain_callable_numpy_and_list_arguments():
    m = measure(lambda x, y: jnp.tanh(x) + y, [np.ones((8, 8), np.float32), np.float32(2.0)], **FAST)
    assert m.ok, m.error


def test_jitted_function_with_static_arguments():
    fn = jax.jit(lambda x, n: x * n, static_argnums=1)
    m = measure(fn, (jnp.ones(16), 3), **FAST)
    assert m.ok, m.error


def test_gc_off_while_timing_and_restored_afterwards():
    seen = []
    assert gc.isenabled()
    m = measure(_sleeper(0.0, seen), (jnp.ones(3),), warmup=2, min_repeats=5, max_repeats=5, **{"time_limit_s": 5.0})
    assert m.ok, m.error
    assert len(seen) == 7 and not any(seen)  # 2 warm-up + 5 timed calls, all with gc off
    assert gc.isenabled()
    # a caller that had switched gc off keeps it off
    gc.disable()
    try:
        assert measure(_sleeper(0.0), (jnp.ones(3),), warmup=0, min_repeats=1, max_repeats=1).ok
        assert not gc.isenabled()
    finally:
        gc.enable()


# --------------------------------------------------------------------------- measure: failed runs


def _assert_failed(m: Measurement, pattern: str):
    assert isinstance(m, Measurement)
    assert not m.ok
    assert re.search(pattern, m.error), m.error
    assert m.samples == () and not m.ci_met
    for t in (m.median_s, m.iqr_s, m.min_s, m.ci_low_s, m.ci_high_s):
        assert math.isnan(t)
    assert m.peak_bytes is None and m.within_budget is None
    assert set(m.env) == set(ENV_KEYS)
    row = m.row()
    assert row["status"] == "failed" and row["error"] == m.error and row["n_samples"] == 0


def test_exception_while_tracing_is_a_failed_measurement():
    def fn(x):
        raise ValueError("boom at trace time")

    m = measure(fn, (jnp.ones(3),), **FAST)
    _assert_failed(m, r"^ValueError: boom at trace time$")
    assert math.isnan(m.compile_s)
    assert gc.isenabled()


def test_compile_error_of_mismatched_shapes_is_a_failed_measurement():
    m = measure(lambda a, b: a @ b, (jnp.ones((3, 4)), jnp.ones((5, 6))), **FAST)
    _assert_failed(m, r"^TypeError: dot_general requires contracting dimensions")


def test_exception_while_running_is_a_failed_measurement():
    def host(x):
        raise RuntimeError("boom at run time")

    def fn(x):
        return jax.pure_callback(host, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    m = measure(fn, (jnp.ones(3),), **FAST)
    _assert_failed(m, r"(?s)^\w+: .*boom at run time")
    assert m.compile_s > 0  # it compiled: the compile time is kept
    assert gc.isenabled()


def test_donated_arguments_are_a_failed_measurement():
    fn = jax.jit(lambda x: x + 1, donate_argnums=0)
    _assert_failed(measure(fn, (jnp.ones(3),), **FAST), r"^ValueError: fn donates")


# --------------------------------------------------------------------------- argument checks


@pytest.mark.parametrize("kwargs, name", [
    (dict(rel_ci=0.0), "rel_ci"),
    (dict(rel_ci=-0.01), "rel_ci"),
    (dict(rel_ci=float("nan")), "rel_ci"),
    (dict(rel_ci="1%"), "rel_ci"),
    (dict(min_repeats=20, max_repeats=10), "min_repeats"),
    (dict(min_repeats=0), "min_repeats"),
    (dict(max_repeats=0), "max_repeats"),
    (dict(warmup=-1), "warmup"),
    (dict(warmup=1.5), "warmup"),
    (dict(warmup=True), "warmup"),
    (dict(time_limit_s=0), "time_limit_s"),
    (dict(time_limit_s=float("inf")), "time_limit_s"),
    (dict(budget_bytes=-1), "budget_bytes"),
    (dict(budget_bytes=1.5e9), "budget_bytes"),
])
def test_bad_arguments_raise_naming_the_argument(matmul, kwargs, name):
    fn, args = matmul
    with pytest.raises((ValueError, TypeError), match=name):
        measure(fn, args, **kwargs)


def test_bad_fn_or_args_raise(matmul):
    fn, args = matmul
    with pytest.raises(TypeError, match="fn"):
        measure(3, args)
    with pytest.raises(TypeError, match="args"):
        measure(fn, args[0])


# --------------------------------------------------------------------------- environment, row, memory


def test_environment_keys_and_values(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    env = environment()
    assert tuple(env) == ENV_KEYS
    assert all(isinstance(v, str) for v in env.values())
    assert env["xla_flags"] == "--xla_cpu_enable_fast_math=false"
    assert env["jax_version"] == jax.__version__
    assert env["jaxlib_version"]
    assert env["platform"] == jax.devices()[0].platform
    assert env["device_kind"] == jax.devices()[0].device_kind
    assert env["host"]
    assert re.fullmatch(r"([0-9a-f]{40}(-dirty)?)?", env["git_commit"])
    when = datetime.datetime.fromisoformat(env["time"])
    assert when.utcoffset() == datetime.timedelta(0)
    assert abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()) < 60


def test_row_is_flat_with_every_env_key(matmul):
    fn, args = matmul
    m = measure(fn, args, min_repeats=10, max_repeats=10, **FAST)
    row = m.row()
    expected = {"status", "error", "median_s", "iqr_s", "min_s", "ci_low_s", "ci_high_s", "ci_met", "samples",
                "n_samples", "compile_s", "peak_bytes", "budget_bytes", "within_budget", *ENV_KEYS}
    assert set(row) == expected
    assert row["status"] == "ok" and row["n_samples"] == 10 and row["samples"] == list(m.samples)
    assert all(not isinstance(v, (dict, tuple)) for v in row.values())


def test_memory_figures_on_this_backend(matmul):
    fn, args = matmul
    m = measure(fn, args, min_repeats=5, max_repeats=5, budget_bytes=10**9, **FAST)
    assert m.ok and m.budget_bytes == 10**9
    assert {"argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
            "alias_size_in_bytes"} <= set(m.program_bytes)
    if _no_device_memory_stats():  # the CPU backend reports nothing
        assert m.peak_bytes is None and m.within_budget is None
    else:
        assert m.peak_bytes is None or m.peak_bytes >= args[0].nbytes
        assert m.within_budget in (True, None)  # 1 GB is plenty for 128 KiB
    assert measure(fn, args, min_repeats=5, max_repeats=5, **FAST).within_budget is None  # no budget, no verdict


def test_argument_device_bytes_counts_each_array_once(matmul):
    _, (a,) = matmul
    device = jax.devices()[0]
    assert _argument_device_bytes((a, a, {"b": jnp.ones(4, jnp.float32)}, 3), device) == a.nbytes + 16


@pytest.mark.parametrize("before, after, args_bytes, budget, expected", [
    # the run raised the high-water mark: exact. Program = 1500 - (600 - 100) = 1000
    ({"peak_bytes_in_use": 1000, "bytes_in_use": 600}, {"peak_bytes_in_use": 1500}, 100, 1000, (1500, True)),
    ({"peak_bytes_in_use": 1000, "bytes_in_use": 600}, {"peak_bytes_in_use": 1500}, 100, 999, (1500, False)),
    ({"peak_bytes_in_use": 1000, "bytes_in_use": 600}, {"peak_bytes_in_use": 1500}, 100, None, (1500, None)),
    # an earlier mark hides the run's peak: bound 1000 - 500 = 500
    ({"peak_bytes_in_use": 1000, "bytes_in_use": 600}, {"peak_bytes_in_use": 1000}, 100, 600, (None, True)),
    ({"peak_bytes_in_use": 1000, "bytes_in_use": 600}, {"peak_bytes_in_use": 1000}, 100, 400, (None, None)),
    # the device reports nothing, or no bytes_in_use
    ({}, {}, 100, 1000, (None, None)),
    ({"peak_bytes_in_use": 1000}, {"peak_bytes_in_use": 1500}, 100, 10**9, (1500, None)),
])
def test_peak_and_budget_from_memory_stats(before, after, args_bytes, budget, expected):
    assert _peak_and_budget(before, after, args_bytes, budget) == expected
