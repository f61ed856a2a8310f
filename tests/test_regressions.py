"""Regression detection over synthetic nightly histories with realistic noise, and `compare`."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from harness.runs import history as regressions
from harness.results import store
from harness.cli.main import main

MANIFEST = {"kind": "nightly", "suite": "ci", "device_kind": "cpu", "profile": "cpu-local"}


def _series(rng, n_runs: int, step_at=None, step=0.05, noise=0.01, drift=0.005, samples=30, base=1e-3):
    """Per run: raw samples around a level with run-to-run drift; the level steps up by `step` at `step_at`."""
    runs = []
    for i in range(n_runs):
        level = base * (1 + rng.normal(0, drift)) * (1 + step if step_at is not None and i >= step_at else 1)
        runs.append(level * (1 + rng.normal(0, noise, samples)))
    return runs


def _history(runs, simulated=None) -> pd.DataFrame:
    rows = [{"run_id": f"run{i:03d}", "started": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}", "workload": "w",
             "size": "ci", "policy": "xla-native", "budget": math.nan, "status": "ok",
             "simulated_s": simulated[i] if simulated else 1.0, "median_s": float(np.median(s)), "samples": list(s)}
            for i, s in enumerate(runs)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", range(20))
def test_a_planted_5_percent_slowdown_is_flagged_in_the_run_where_it_started(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(5, 15))
    found = regressions.regressions(_history(_series(rng, 20, step_at=k)))
    assert len(found) == 1, found
    row = found.iloc[0]
    assert row.kind == "measured" and row.run_id == f"run{k:03d}" and row.previous_run_id == f"run{k - 1:03d}"
    assert 1.03 < row.ratio < 1.07 and row.p_value < regressions.ALPHA
    assert math.isnan(row.budget) and row.policy == "xla-native"


def test_one_percent_noise_alone_flags_nothing_across_50_runs():
    for seed in range(60):                      # 60 histories of 50 runs: no false flag in any
        rng = np.random.default_rng(100 + seed)
        assert regressions.regressions(_history(_series(rng, 50, noise=0.01, drift=0.005))).empty, seed


def test_a_step_below_the_minimum_effect_is_not_flagged():
    for seed in range(30):
        rng = np.random.default_rng(700 + seed)
        assert regressions.regressions(_history(_series(rng, 20, step_at=10, step=0.01))).empty, seed


def test_a_speedup_is_not_a_regression():
    rng = np.random.default_rng(8)
    assert regressions.regressions(_history(_series(rng, 20, step_at=10, step=-0.10))).empty


def test_a_worse_simulated_time_is_flagged_in_its_run_and_equal_ones_are_not():
    rng = np.random.default_rng(9)
    runs = _series(rng, 6)
    found = regressions.regressions(_history(runs, simulated=[1.0, 1.0, 1.0, 1.2, 1.2, 1.2]))
    assert list(found.kind) == ["simulated"] and found.run_id[0] == "run003" and found.ratio[0] == pytest.approx(1.2)
    assert regressions.regressions(_history(runs, simulated=[1.0] * 6)).empty


def test_change_points_finds_the_steps_of_a_clean_series():
    assert regressions.change_points([0, 0, 0, 0, 1, 1, 1, 1, 3, 3, 3]) == [4, 8]
    assert regressions.change_points([0.0] * 10) == []


def _run(root, run_id, cells, **manifest):
    store.start_run(MANIFEST | manifest, root, run_id=run_id)
    for i, c in enumerate(cells):
        row = {"cell": i, "size": "ci", "budget": math.nan, "status": "ok", "error": "", "samples": [], **c}
        row.setdefault("median_s", float(np.median(row["samples"])) if row["samples"] else math.nan)
        store.append("cells", [row], run_id, root, key=f"cell-{i:05d}")


def test_nightly_history_keeps_same_suite_device_profile_and_skips_a_corrupt_run(tmp_path):
    root = str(tmp_path)
    cell = {"workload": "w", "policy": "xla-msa", "budget": 0.5, "simulated_s": 1.0}
    _run(root, "r1", [cell])
    _run(root, "r2", [cell], profile="h100-offload")
    _run(root, "r3", [cell])
    _run(root, "r4", [cell])
    (next((tmp_path / "cells" / "r3").glob("*.parquet"))).write_bytes(b"not parquet at all")
    with pytest.warns(UserWarning, match="r3"):
        history = regressions.nightly_history(root, store.read_manifest("r4", root))
    assert sorted(history.run_id.unique()) == ["r1", "r4"]


def test_compare_flags_cells_and_names_a_missing_run(tmp_path, capsys):
    root = str(tmp_path)
    rng = np.random.default_rng(3)
    same, slow = 1e-3 * (1 + rng.normal(0, 0.01, 40)), 1e-3 * (1 + rng.normal(0, 0.01, 40))
    _run(root, "a", [{"workload": "w", "policy": "xla-native", "simulated_s": 1.0, "samples": list(same)},
                     {"workload": "w", "policy": "xla-msa", "budget": 0.5, "simulated_s": 2.0},
                     {"workload": "old", "policy": "xla-msa", "budget": 0.5, "simulated_s": 2.0},
                     {"workload": "w", "policy": "cpsat", "budget": 0.5, "simulated_s": 1.5}])
    _run(root, "b", [{"workload": "w", "policy": "xla-native", "simulated_s": 1.0, "samples": list(slow * 1.06)},
                     {"workload": "w", "policy": "xla-msa", "budget": 0.5, "simulated_s": 2.5},
                     {"workload": "new", "policy": "all-fast", "simulated_s": 0.5},
                     {"workload": "w", "policy": "cpsat", "budget": 0.5, "simulated_s": math.nan,
                      "status": "failed", "error": "solve: RuntimeError: boom"}])
    diff = regressions.compare(root, "a", "b").set_index(["workload", "policy"])
    assert diff.loc[("w", "xla-native"), "flag"] == "slower"
    assert diff.loc[("w", "xla-native"), "ratio"] == pytest.approx(1.06, abs=0.01)
    assert diff.loc[("w", "xla-msa"), "flag"] == "simulated worse"
    assert diff.loc[("old", "xla-msa"), "flag"] == "only in A" and diff.loc[("new", "all-fast"), "flag"] == "only in B"
    assert diff.loc[("w", "cpsat"), "flag"] == "failed in B"
    assert regressions.compare(root, "a", "a").flag.isin(["", "only in A"]).all()
    assert main(["compare", "a", "b", "--results", root]) == 0
    out = capsys.readouterr().out
    assert "slower" in out and "simulated worse" in out and "1 slower" in out
    with pytest.raises(store.StoreError, match="nope"):
        regressions.compare(root, "a", "nope")
    assert main(["compare", "a", "nope", "--results", root]) == 2
    assert "nope" in capsys.readouterr().err
