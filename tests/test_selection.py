"""Hardware decides: select realizes each candidate mapping, measures it and keeps the fastest, never a failed one."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from harness.device import selection, timing
from harness.device.realization import extract_linked
from harness.device.selection import select
from harness.model.mapping import Mapping


def _program(x):
    for _ in range(3):
        x = jnp.tanh(x @ x)
    return x


ARGS = (np.full((16, 16), 0.01, np.float32),)


@pytest.fixture(scope="module")
def extracted():
    instance, program, _ = extract_linked(_program, ARGS, "program")
    return instance, program


def _candidates(instance, n: int) -> dict[str, Mapping]:
    """`n` valid mappings of `instance`, keyed "a", "b", ...: the first i buffers fast in the i-th."""
    ids = [b.id for b in instance.buffers]
    return {chr(ord("a") + i): Mapping({b: 0 for b in ids[:i]}, len(ids), instance.name, f"first-{i}")
            for i in range(n)}


def _measurement(median_s: float, ok: bool = True) -> timing.Measurement:
    failed = timing._failed("RuntimeError: the run failed", {})
    return dataclasses.replace(failed, ok=ok, error="" if ok else failed.error, samples=(median_s,) if ok else (),
                               median_s=median_s)


def _select_with_times(monkeypatch, extracted, times: list[timing.Measurement], **options):
    """select over len(times) candidates, whose measurements (in the order select measures them) are `times`;
    also returns what each measure call was given."""
    instance, program = extracted
    given = []

    def measure(fn, args, **measure_options):
        given.append((fn, args, measure_options))
        return times[len(given) - 1]

    monkeypatch.setattr(selection, "measure", measure)
    return select(_program, ARGS, instance, _candidates(instance, len(times)), program=program, **options), given


@pytest.mark.parametrize("medians, best", [
    ((2.0, 1.0, 3.0), "b"),  # the fastest in the middle
    ((1.0, 2.0, 3.0), "a"),  # first
    ((3.0, 2.0, 1.0), "c"),  # last
])
def test_select_keeps_the_fastest_measured(monkeypatch, extracted, medians, best):
    chosen, given = _select_with_times(monkeypatch, extracted, [_measurement(m) for m in medians], time_limit_s=0.5)
    assert chosen.best == best and chosen.reward_s == min(medians)
    assert {k: m.median_s for k, m in chosen.measurements.items()} == dict(zip("abc", medians))
    assert len(given) == 3 and all(args == ARGS and options == {"time_limit_s": 0.5} for _, args, options in given)
    assert all(not r.realizable for r in chosen.reports.values())  # CPU: one tier, the program runs untouched


@pytest.mark.parametrize("failed_median", [float("nan"), 0.5])
def test_select_never_keeps_a_failed_candidate(monkeypatch, extracted, failed_median):
    times = [_measurement(failed_median, ok=False), _measurement(2.0), _measurement(1.5)]
    chosen, _ = _select_with_times(monkeypatch, extracted, times)
    assert chosen.best == "c" and chosen.reward_s == 1.5
    assert not chosen.measurements["a"].ok


def test_every_candidate_failing_selects_none(monkeypatch, extracted):
    chosen, _ = _select_with_times(monkeypatch, extracted, [_measurement(float("nan"), ok=False)] * 2)
    assert chosen.best is None and np.isnan(chosen.reward_s)


def test_select_measures_for_real_on_this_machine(extracted):
    instance, program = extracted
    chosen = select(_program, ARGS, instance, _candidates(instance, 2), program=program, warmup=0, min_repeats=1,
                    max_repeats=3, time_limit_s=0.5)
    assert chosen.best in ("a", "b") and all(m.ok for m in chosen.measurements.values())
    assert chosen.reward_s == min(m.median_s for m in chosen.measurements.values())


def test_a_mapping_of_another_program_is_refused(extracted):
    instance, program = extracted
    wrong = Mapping({}, len(instance.buffers) + 3, "other", "broken")
    with pytest.raises(ValueError, match="another program"):
        select(_program, ARGS, instance, {"a": _candidates(instance, 1)["a"], "b": wrong}, program=program)


def test_select_needs_candidates(extracted):
    instance, program = extracted
    with pytest.raises(ValueError, match="at least one"):
        select(_program, ARGS, instance, {}, program=program)
