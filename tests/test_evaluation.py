"""The eval summary's figures on hand-made rows, against hand-derived values."""

import math

import pytest

from agent.evaluation import BOUND, summarize


def _rows(instance, times, optimal=False, seconds=1.0):
    return [{"instance": instance, "split": "held-out", "policy": p, "simulated_seconds": t,
             "optimal": optimal if p == "cpsat" else None, "seconds": None if p == BOUND else seconds}
            for p, t in times.items()]


def test_summary_of_two_instances():
    # a: xla 10, agent 9, cpsat 9.5 (proven), bound 9.5; b: xla 4, agent 5, cpsat 3, bound 2.
    rows = _rows("a", {"mallocmuzero": 9.0, "mallocmuzero-greedy": 12.0, "xla-msa": 10.0, "cpsat": 9.5,
                       BOUND: 9.5}, optimal=True)
    rows += _rows("b", {"mallocmuzero": 5.0, "mallocmuzero-greedy": 4.0, "xla-msa": 4.0, "cpsat": 3.0, BOUND: 2.0},
                  seconds=3.0)
    s = summarize(rows)
    assert s["n_instances"] == 2 and s["n_optimal"] == 1
    assert s["geomean_speedup_vs_xla_msa"] == pytest.approx(math.sqrt(10 / 9 * 4 / 5))
    assert s["share_no_worse_than_xla_msa"] == 0.5
    assert s["share_of_room_captured"] == pytest.approx((1.0 - 1.0) / (0.5 + 1.0))
    assert s["share_of_bound_room_captured"] == pytest.approx(0.0 / (0.5 + 2.0))
    assert s["mean_gap_to_optimum"] == pytest.approx(9.0 / 9.5 - 1.0)
    assert s["seconds_per_instance_mallocmuzero"] == pytest.approx(2.0)
    assert s["geomean_speedup_greedy_vs_xla_msa"] == pytest.approx(math.sqrt(10 / 12))
    assert s["share_of_room_captured_greedy"] == pytest.approx(-2.0 / 1.5)
    assert s["geomean_speedup_bound_vs_xla_msa"] == pytest.approx(math.sqrt(10 / 9.5 * 2))
    assert "geomean_speedup_fortified_vs_xla_msa" not in s  # absent from the rows


def test_room_is_none_where_xla_msa_is_best():
    rows = _rows("a", {"mallocmuzero": 10.0, "xla-msa": 10.0, "cpsat": 10.0, BOUND: 10.0}, optimal=True)
    s = summarize(rows)
    assert s["share_of_room_captured"] is None and s["share_of_bound_room_captured"] is None
    assert s["share_no_worse_than_xla_msa"] == 1.0
