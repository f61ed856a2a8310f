"""The hardware loop on the CPU: the sweep into the store, and its commands (select: test_selection.py)."""

import math

import numpy as np
import pytest

from harness import Mapping
from harness.results import store
from harness.cli.main import main
from harness.model.profiles import load_profile
from harness.runs.sweep import SweepSpec, read_text, run_sweep
from harness.xla.instance import Instance


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("store"))
    spec = SweepSpec(("matmul-chain", "mlp-train"), ("ci",), ("xla-native", "all-fast", "xla-msa"), (0.25, 0.5),
                     load_profile("h100-offload"), measure_time_limit=0.3)
    rows = []
    run_id = run_sweep(spec, root, "test", on_row=rows.append)
    return root, run_id, rows


def test_sweep_stores_every_cell_with_its_prediction_and_artifacts(swept):
    root, run_id, rows = swept
    frame = store.read("measurements", root, run_ids=[run_id])
    assert len(frame) == len(rows) == 2 * (2 + 2)  # 2 workloads x (2 unbudgeted + xla-msa at 2 budgets)
    assert set(frame.status) == {"ok"}
    assert (frame.median_s > 0).all() and (frame.predicted_s > 0).all()
    assert frame.device_kind.iloc[0] and frame.jax_version.iloc[0]
    predictions = store.read("predictions", root, run_ids=[run_id])
    assert len(predictions) == len(frame)
    assert store.read_manifest(run_id, root)["status"] == "finished"
    for rec in frame.itertuples():
        instance = Instance.from_json(read_text(root, rec.instance_file))
        mapping = Mapping.from_json(read_text(root, rec.mapping_file))
        assert mapping.n_buffers == len(instance.buffers)
    # one selected mapping per (workload, budget group), and its reward is its measured time
    chosen = frame[frame.selected]
    assert len(chosen) == 2 * 3
    assert np.allclose(chosen.reward_s, chosen.median_s)
    assert frame[~frame.selected].reward_s.isna().all()


def test_sweep_records_a_failing_policy_and_goes_on(tmp_path, monkeypatch):
    import harness.runs.sweep as sweep

    real_solve = sweep.solve

    def solve(instance, profile, budget, policy, **kw):
        if policy == "cpsat":
            raise RuntimeError("solver crashed")
        return real_solve(instance, profile, budget, policy, **kw)

    monkeypatch.setattr(sweep, "solve", solve)
    spec = SweepSpec(("matmul-chain",), ("ci",), ("xla-native", "cpsat", "xla-msa"), (0.5,),
                     load_profile("cpu-local"), measure_time_limit=0.2)
    rows = []
    run_id = run_sweep(spec, str(tmp_path), "fail", on_row=rows.append)
    by_policy = {r["policy"]: r for r in rows}
    assert by_policy["xla-native"]["status"] == by_policy["xla-msa"]["status"] == "ok"
    assert by_policy["cpsat"]["status"] == "failed" and "solver crashed" in by_policy["cpsat"]["error"]
    assert math.isnan(by_policy["cpsat"]["median_s"])
    assert len(store.read("measurements", str(tmp_path), run_ids=[run_id])) == 3


def test_results_command_lists_runs_and_shows_one(swept, capsys):
    root, run_id, _ = swept
    assert main(["results", "--results", root]) == 0
    assert run_id in capsys.readouterr().out
    assert main(["results", run_id, "--results", root]) == 0
    out = capsys.readouterr().out
    assert "matmul-chain" in out and "xla-msa" in out


def test_results_command_names_an_unknown_run(swept, capsys):
    root, _, _ = swept
    assert main(["results", "no-such-run", "--results", root]) == 2
    assert "no-such-run" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["measure", "--workloads", "nope"], "unknown workload 'nope'"),
    (["measure", "--policies", "fastest"], "unknown policy 'fastest'"),
    (["measure", "--budgets", "1.5"], "budget 1.5"),
    (["measure", "--budgets", "half"], "budget 'half'"),
    (["measure", "--sizes", "huge"], "unknown size 'huge'"),
])
def test_measure_command_names_bad_input(argv, message, tmp_path, capsys):
    assert main(argv + ["--results", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing stored


def test_measure_command_runs_and_stores(tmp_path, capsys):
    assert main(["measure", "--workloads", "matmul-chain", "--time-limit", "0.2", "--results", str(tmp_path)]) == 0
    assert "1 of 1 cells measured" in capsys.readouterr().out
    assert len(store.list_runs(str(tmp_path))) == 1
