"""`mallocbench measure` on the CPU: a run of cells into the store, and its commands (select: test_selection.py)."""

import math

import pytest
from cell_faults import fail_policy

from harness import Mapping
from harness.results import artifacts, store
from harness.cli.main import main
from harness.runs import cells
from harness.xla.instance import Instance


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """A `mallocbench measure` run of two workloads at two sizes, on h100-offload's predictions."""
    root = str(tmp_path_factory.mktemp("store"))
    spec = cells.make_spec("measure", "ci", ("matmul-chain", "mlp-train"), ("xla-native", "all-fast", "xla-msa"),
                           (0.25, 0.5), "h100-offload", sizes=("ci", "small"), measure_time_limit=0.3)
    run_id = cells.plan(spec, root)
    rows = []
    cells.run_local(spec, run_id, root, on_cell=rows.append)
    return root, run_id, rows


def test_measure_stores_every_cell_with_its_simulated_time_and_artifacts(measured):
    root, run_id, rows = measured
    frame = store.read("cells", root, run_ids=[run_id])
    assert len(frame) == len(rows) == 2 * 2 * (2 + 2)  # 2 workloads x 2 sizes x (2 unbudgeted + xla-msa at 2 budgets)
    assert set(frame.status) == {"ok"} and set(frame["size"]) == {"ci", "small"}
    assert (frame.simulated_s > 0).all()
    measured_rows = frame[frame.median_s.notna()]
    assert set(measured_rows.policy) == {"xla-native"}  # CPU: one tier, only the untouched program runs
    for rec in frame.itertuples():
        instance = Instance.from_json(artifacts.read_text(root, rec.instance_file))
        mapping = Mapping.from_json(artifacts.read_text(root, rec.mapping_file))
        assert mapping.n_buffers == len(instance.buffers)
        assert instance.name == f"{rec.workload}/{rec.size}"


def test_mark_fastest_picks_the_fastest_measured_cell_of_each_group():
    rows = [
        {"workload": "w", "size": "ci", "budget": 0.5, "status": "ok", "median_s": 2.0},
        {"workload": "w", "size": "ci", "budget": 0.5, "status": "ok", "median_s": 1.0},
        {"workload": "w", "size": "ci", "budget": 0.5, "status": "failed", "median_s": 0.1},  # failed: never chosen
        {"workload": "w", "size": "ci", "budget": math.nan, "status": "ok", "median_s": 3.0},  # its own group
        {"workload": "w", "size": "small", "budget": 0.5, "status": "ok", "median_s": math.nan},  # not measured
    ]
    assert [r["selected"] for r in cells.mark_fastest(rows)] == [False, True, False, True, False]


def test_measure_records_a_failing_policy_and_goes_on(tmp_path, monkeypatch):
    fail_policy(monkeypatch, "cpsat", "solver crashed")
    spec = cells.make_spec("measure", "ci", ("matmul-chain",), ("xla-native", "cpsat", "xla-msa"), (0.5,),
                           "cpu-local", measure_time_limit=0.2)
    run_id = cells.plan(spec, str(tmp_path))
    rows = []
    cells.run_local(spec, run_id, str(tmp_path), on_cell=rows.append)
    by_policy = {r["policy"]: r for r in rows}
    assert by_policy["xla-native"]["status"] == by_policy["xla-msa"]["status"] == "ok"
    assert by_policy["cpsat"]["status"] == "failed" and "solver crashed" in by_policy["cpsat"]["error"]
    assert by_policy["cpsat"]["stage"] == "solve" and math.isnan(by_policy["cpsat"]["median_s"])
    assert len(store.read("cells", str(tmp_path), run_ids=[run_id])) == 3


def test_results_command_lists_runs_and_shows_one(measured, capsys):
    root, run_id, _ = measured
    assert main(["results", "--results", root]) == 0
    assert run_id in capsys.readouterr().out
    assert main(["results", run_id, "--results", root]) == 0
    out = capsys.readouterr().out
    assert "matmul-chain" in out and "xla-msa" in out


def test_results_command_names_an_unknown_run(measured, capsys):
    root, _, _ = measured
    assert main(["results", "no-such-run", "--results", root]) == 2
    assert "no-such-run" in capsys.readouterr().err




def test_measure_command_runs_and_stores(tmp_path, capsys):
    assert main(["measure", "--workloads", "matmul-chain", "--time-limit", "0.2", "--results", str(tmp_path)]) == 0
    assert "1 of 1 cells measured" in capsys.readouterr().out
    assert len(store.list_runs(str(tmp_path))) == 1
