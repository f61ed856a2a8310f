"""The nightly grid: numbering, bad input (of nightly and measure), exactly-once cells, resume after a kill, the
extraction cache, Ray."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cell_faults import fail_policy

from harness.device.machine import this_machine
from harness.runs import cells, nightly, programs
from harness.results import store
from harness.cli.main import main

SMALL = dict(workload_names=["matmul-chain", "alphatensor-strassen"], policies=["xla-native", "all-slow", "xla-msa",
             "first-fit", "all-fast"], budgets=[0.25, 0.75], profile="tpu-v4i-cmem")


def _cells(root, run_id):
    return store.read("cells", root, run_ids=[run_id])


def test_grid_numbers_each_cell_once_with_unbudgeted_policies_once_per_workload():
    spec = nightly.make_spec("ci", **SMALL)
    twice = nightly.make_spec("ci", workload_names=SMALL["workload_names"] * 2, policies=SMALL["policies"] * 2,
                              budgets=SMALL["budgets"] * 2, profile=SMALL["profile"])
    assert twice.cells() == spec.cells()                       # a name given twice is one cell
    grid = spec.cells()
    assert [c.index for c in grid] == list(range(len(grid)))
    assert len(grid) == 2 * (2 + 3 * 2)
    keys = {(c.workload, c.policy, c.budget) for c in grid}
    assert len(keys) == len(grid)
    assert {c.budget for c in grid if c.policy in ("xla-native", "all-fast")} == {None}
    assert spec.cells() == cells.RunSpec.from_manifest(spec.meta()).cells()
    old = {k: v for k, v in spec.meta().items() if k not in ("sizes", "kind")} | {"size": "ci", "kind": "nightly"}
    assert cells.RunSpec.from_manifest(old).cells() == grid      # a manifest written before sizes were a list


@pytest.mark.parametrize("kwargs, message", [
    ({"suite": "nightly-xl"}, "valid suites: ci, full"),
    ({"policies": ["xla-msa", "best"]}, "unknown policy 'best'"),
    ({"workload_names": ["gpt-9"]}, "unknown workload 'gpt-9'"),
    ({"profile": "a100"}, "unknown profile 'a100'; valid: "),
    ({"budgets": [0.5, 1.5]}, "budget must be a fraction of peak live bytes in (0, 1], got 1.5"),
])
def test_bad_grid_input_is_named_with_the_valid_choices(kwargs, message):
    with pytest.raises(ValueError) as err:
        nightly.make_spec(**kwargs)
    assert message in str(err.value)
    if "unknown" in message and "workload" not in message:
        assert "xla-msa" in str(err.value) or "tpu-v4i-cmem" in str(err.value)


def test_local_run_stores_every_cell_once_and_a_rerun_redoes_nothing(tmp_path):
    root = str(tmp_path)
    spec = nightly.make_spec("ci", **SMALL)
    run_id = cells.plan(spec, root)
    rows = []
    cells.run_local(spec, run_id, root, on_cell=rows.append)
    frame = _cells(root, run_id)
    assert sorted(frame.cell) == list(range(len(spec.cells())))
    assert (frame.status == "ok").all(), frame.error.tolist()
    assert frame.simulated_s.gt(0).all() and frame.valid.all()
    by = {(r.workload, r.policy, None if math.isnan(r.budget) else r.budget): r for r in frame.itertuples()}
    for w in SMALL["workload_names"]:   # the game's order: all-fast <= xla-msa <= all-slow
        for b in SMALL["budgets"]:
            assert by[w, "all-fast", None].simulated_s <= by[w, "xla-msa", b].simulated_s <= by[w, "all-slow", b].simulated_s
    native = frame[frame.policy == "xla-native"]
    assert native.median_s.gt(0).all() and native.samples.map(len).gt(0).all()
    others = frame[frame.policy != "xla-native"]          # the CPU has one memory tier
    assert others.median_s.isna().all() and others.measure_note.str.contains("one memory tier").all()
    assert cells.pending(spec, run_id, root) == []
    cells.run_local(spec, run_id, root, on_cell=rows.append)
    assert len(rows) == len(spec.cells()) and len(_cells(root, run_id)) == len(spec.cells())
    again = cells.run_cell(spec, spec.cells()[3], run_id, root)
    assert again.get("skipped") and len(_cells(root, run_id)) == len(spec.cells())
    summary = nightly.finish(run_id, root)
    assert summary["cells_ok"] == len(spec.cells()) and summary["cells_missing"] == 0
    # a TPU profile is not fitted to CPU times: the CPU's own profile is, on the untouched programs; two points
    # cannot fit its figures, so the fitted profile is scored as it is
    calibration = summary["calibration"]
    assert calibration["profile"] == "cpu-local-fitted" and calibration["n_points"] == 2
    assert calibration["not_fitted"].startswith("2 points cannot fit") and calibration["free"] == []
    assert calibration["mape"] == calibration["prior_mape"] and calibration["mape"] > 0
    manifest = store.read_manifest(run_id, root)
    assert manifest["status"] == "finished"
    here = this_machine()                            # the run and each of its rows say which machine they ran on
    assert manifest["machine_id"] == here.machine_id and manifest["cpu_model"] == here.cpu_model
    assert (frame.machine_id == here.machine_id).all() and (frame.cpu_cores == here.cpu_cores).all()


def test_a_failing_step_is_stored_with_its_stage_and_the_run_goes_on(tmp_path, monkeypatch):
    root = str(tmp_path)
    spec = nightly.make_spec("ci", workload_names=["matmul-chain"], policies=["xla-msa", "first-fit"], budgets=[0.5],
                             profile="tpu-v4i-cmem")
    run_id = cells.plan(spec, root)
    fail_policy(monkeypatch, "first-fit", "solver exploded")
    cells.run_local(spec, run_id, root)
    frame = _cells(root, run_id).set_index("policy")
    assert frame.loc["first-fit", "status"] == "failed" and frame.loc["first-fit", "stage"] == "solve"
    assert "solver exploded" in frame.loc["first-fit", "error"]
    assert frame.loc["xla-msa", "status"] == "ok"
    assert nightly.finish(run_id, root)["cells_failed"] == 1


def test_extraction_is_cached_by_the_hash_of_the_compiled_program(tmp_path):
    programs.load_program.cache_clear()
    first = programs.load_program("matmul-chain", "ci", str(tmp_path))
    programs.load_program.cache_clear()
    second = programs.load_program("matmul-chain", "ci", str(tmp_path))
    assert not first.cached and second.cached
    assert first.program_hash == second.program_hash
    assert second.instance.to_json() == first.instance.to_json()
    path = tmp_path / "cache" / "extractions" / f"{first.program_hash}.json.gz"
    path.write_bytes(b"garbage")                         # an unreadable cache entry is extracted again
    programs.load_program.cache_clear()
    third = programs.load_program("matmul-chain", "ci", str(tmp_path))
    assert not third.cached and third.instance.to_json() == first.instance.to_json()
    programs.load_program.cache_clear()


# A nightly that, once it has stored HELD cells, writes its run id to the file named by argv[1] and waits
# there to be killed: the kill lands after exactly HELD cells, however fast or slow the machine is.
HELD = 4
_HOLDING_NIGHTLY = f"""
import sys, threading
from harness.runs import cells
from harness.cli.main import main
real, stored, marker = cells.store_cell, [], sys.argv.pop(1)

def store_then_hold(row, cell, run_id, root):
    out = real(row, cell, run_id, root)
    stored.append(cell.key)
    if len(stored) == {HELD}:
        with open(marker + ".tmp", "w") as f:
            f.write(run_id)
        __import__("os").replace(marker + ".tmp", marker)
        threading.Event().wait()
    return out

cells.store_cell = store_then_hold
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_nightly_resumes_and_holds_every_cell_exactly_once(tmp_path):
    root = str(tmp_path / "results")
    marker = tmp_path / "held"
    grid = ["--workloads", "matmul-chain,mlp-train", "--policies", "xla-native,xla-msa,all-fast",  # 8 cells
            "--budgets", "0.25,0.5", "--profile", "h100-offload", "--results", root, "--no-report"]
    proc = subprocess.Popen([sys.executable, "-c", _HOLDING_NIGHTLY, str(marker), "nightly", *grid],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        while not marker.exists():  # the child holds once it has stored HELD cells: no race with its end
            assert proc.poll() is None, f"the nightly ended before holding: {proc.stdout.read().decode()[-2000:]}"
            time.sleep(0.1)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    run_id = marker.read_text()
    spec, manifest = cells.load_run(run_id, root)
    assert manifest["status"] == "running"
    assert len(store.keys("cells", run_id, root)) == HELD
    assert len(cells.pending(spec, run_id, root)) == len(spec.cells()) - HELD
    assert main(["nightly", "--resume", run_id, "--results", root, "--no-report"]) == 0  # in this process
    frame = _cells(root, run_id)
    assert sorted(frame.cell) == list(range(len(spec.cells())))          # every cell exactly once
    assert (frame.status == "ok").all()
    assert store.read_manifest(run_id, root)["status"] == "finished"


@pytest.mark.parametrize("argv, message", [
    (["nightly", "--resume", "20200101T000000Z-nightly-ci-000000"], "no manifest"),
    (["nightly", "--cell", "3"], "--cell needs --resume"),
    (["nightly", "--suite", "huge"], "valid suites: ci, full"),
    (["nightly", "--policies", "xla-msa,oracle"], "unknown policy 'oracle'"),
    (["nightly", "--profile", "a100"], "unknown profile 'a100'"),
    (["nightly", "--budgets", "0.5,half"], "budget 'half': not a number"),
    (["measure", "--workloads", "nope"], "unknown workload 'nope'"),
    (["measure", "--policies", "fastest"], "unknown policy 'fastest'"),
    (["measure", "--budgets", "1.5"], "budget must be a fraction of peak live bytes in (0, 1], got 1.5"),
    (["measure", "--budgets", "half"], "budget 'half'"),
    (["measure", "--sizes", "huge"], "unknown size 'huge'"),
])
def test_cli_bad_input_names_what_is_wrong_and_stores_nothing(tmp_path, capsys, argv, message):
    root = tmp_path / "results"
    assert main([*argv, "--results", str(root)]) == 2
    assert message in capsys.readouterr().err.replace("\n", "")
    assert not (root / "cells").exists() and not (root / "runs").exists()  # nothing stored


def test_cli_plan_then_one_cell_then_gather(tmp_path, capsys):
    root = str(tmp_path)
    grid = ["--workloads", "matmul-chain", "--policies", "xla-msa,all-fast", "--budgets", "0.5", "--profile",
            "tpu-v4i-cmem", "--results", root]
    assert main(["nightly", *grid, "--plan-only"]) == 0
    run_id = store.list_runs(root).run_id[0]
    assert main(["nightly", "--resume", run_id, "--cell", "1", "--results", root]) == 0
    assert list(_cells(root, run_id).cell) == [1]
    assert main(["nightly", "--resume", run_id, "--cell", "7", "--results", root]) == 2
    assert "has cells 0 to 1" in capsys.readouterr().err
    assert main(["nightly", "--resume", run_id, "--profile", "h100-offload", "--results", root]) == 2
    assert "keeps the grid of its manifest" in capsys.readouterr().err
    assert main(["nightly", "--resume", run_id, "--results", root, "--no-report"]) == 0
    assert sorted(_cells(root, run_id).cell) == [0, 1]


def test_the_nightly_reports_past_a_corrupt_earlier_run(tmp_path, capsys, monkeypatch):
    from harness.device import machine

    monkeypatch.setattr(machine.Machine, "machine_id", property(lambda self: "beefcafe0123"))  # reads as markup
    root = str(tmp_path)
    grid = ["--workloads", "matmul-chain", "--policies", "xla-native,xla-msa,all-fast", "--budgets", "0.5",
            "--profile", "tpu-v4i-cmem", "--results", root]
    assert main(["nightly", *grid]) == 0
    first = store.list_runs(root).run_id[0]
    next(Path(root, "cells", first).glob("part-*.parquet")).write_bytes(b"garbage")      # a corrupt part file
    store.start_run({"kind": "nightly"}, root, run_id="broken-run")
    Path(root, "runs", "broken-run", "manifest.json").write_text("{ not json")             # a corrupt manifest
    Path(root, "reports", "broken-run").mkdir(parents=True)
    Path(root, "reports", "broken-run", "index.html").write_text("<html></html>")
    capsys.readouterr()
    with pytest.warns(UserWarning, match="unreadable part file"):
        assert main(["nightly", *grid]) == 0
    out = capsys.readouterr().out
    second = [r for r in store.list_runs(root).run_id if r not in (first, "broken-run")][0]
    assert "headline" in out and f"reports/{second}/index.html" in out.replace("\n", "")
    assert "no accelerator" in out and "[beefcafe0123]" in out.replace("\n", "")  # the machine id is printed
    index = Path(root, "reports", "index.html").read_text()
    assert f"{second}/index.html" in index and "broken-run" in index and "not a readable JSON manifest" in index
    assert Path(root, "reports", second, "simulated-budget-0.5.csv").is_file()


@pytest.mark.parametrize("backend, device, profiles", [
    ("cpu", "cpu", ("tpu-v4i-cmem", "h100-offload")),         # one memory tier: the two-tier profiles, simulated
    ("gpu", "NVIDIA H100 80GB HBM3", ("h100-offload",)),
    ("cuda", "NVIDIA H200", ("h200-offload",)),
    ("tpu", "TPU v5 lite", ("tpu-v5e-offload",)),
])
def test_a_night_runs_the_profiles_of_its_machine(backend, device, profiles):
    assert nightly.default_profiles(backend, device) == profiles
