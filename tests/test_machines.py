"""Machines told apart: this machine's identity and id; two machines in one store, where a slowdown planted on
one machine is flagged and another machine's slower timings are not; compare and calibration refuse to mix
machines unless asked; runs stored without a machine id are an unknown machine of their own."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from harness.device import machine
from harness.results import store
from harness.runs import calibration
from harness.runs import history as regressions
from harness.cli.main import main

MANIFEST = {"kind": "nightly", "suite": "ci", "device_kind": "cpu", "profile": "cpu-local"}
FAST_BOX = {"machine_id": "aaaaaaaaaaaa", "machine": "Xeon, 2 cores, 8 GiB, no accelerator (vm)"}
SLOW_BOX = {"machine_id": "bbbbbbbbbbbb", "machine": "Xeon, 2 cores, 8 GiB, no accelerator (vm)"}


def test_this_machine_has_its_identity_and_a_stable_id():
    here = machine.this_machine()
    assert here.cpu_model and here.cpu_cores >= 1 and here.memory_bytes > 2 ** 28 and here.os and here.jax_version
    assert len(here.machine_id) == 12 and here.machine_id == machine.this_machine().machine_id
    row = here.row()
    assert row["machine_id"] == here.machine_id and row["cpu_model"] == here.cpu_model
    assert all(isinstance(v, (str, int)) for v in row.values())                 # storable as extra columns


@pytest.mark.parametrize("field, value", [("hostname", "other"), ("os_install_id", "0" * 16), ("cpu_cores", 64),
                                          ("accelerator", "NVIDIA H100"), ("memory_bytes", 2 ** 40)])
def test_another_machine_has_another_id(field, value):
    here = machine.this_machine()
    assert dataclasses.replace(here, **{field: value}).machine_id != here.machine_id


@pytest.mark.parametrize("field, value", [("jax_version", "9.9.9"), ("kernel", "7.0.0"),
                                          ("memory_bytes", "plus 1 MiB")])
def test_upgrades_keep_the_machine(field, value):
    here = machine.this_machine()
    value = here.memory_bytes + 2 ** 20 if value == "plus 1 MiB" else value
    assert dataclasses.replace(here, **{field: value}).machine_id == here.machine_id


def _samples(rng, level: float) -> list[float]:
    return list(level * (1 + rng.normal(0, 0.01, 30)))


def _night(root: str, run_id: str, level: float, rng, box: dict | None) -> None:
    store.start_run(MANIFEST | (box or {}), root, run_id=run_id)
    samples = _samples(rng, level)
    store.append("cells", [{"cell": 0, "workload": "w", "size": "ci", "policy": "xla-native", "budget": math.nan,
                            "status": "ok", "error": "", "simulated_s": 1.0, "median_s": float(np.median(samples)),
                            "samples": samples, **(box or {})}], run_id, root, key="cell-00000")


def _flagged(root: str, run_id: str) -> tuple[list[str], list[str]]:
    """The runs flagged in `run_id` and the runs of its history."""
    history = regressions.nightly_history(root, store.read_manifest(run_id, root))
    found = regressions.regressions(history)
    return list(found[found.run_id == run_id].run_id), sorted(history.run_id.unique())


def test_two_machines_in_one_store(tmp_path):
    root, rng = str(tmp_path), np.random.default_rng(0)
    for night in range(4):                                     # the committed runs: no machine id
        _night(root, f"2026010{night}-old", 1e-3, rng, None)
    for night in range(4):                                     # this machine's nights
        _night(root, f"2026020{night}-fast", 1e-3, rng, FAST_BOX)
    _night(root, "20260300-slow", 2.5e-3, rng, SLOW_BOX)       # a fresh clone on a slower machine
    flagged, history = _flagged(root, "20260300-slow")
    assert flagged == [] and history == ["20260300-slow"]      # its first night: nothing to compare with
    _night(root, "20260301-slow", 2.5e-3, rng, SLOW_BOX)
    assert _flagged(root, "20260301-slow") == ([], ["20260300-slow", "20260301-slow"])
    _night(root, "20260400-fast", 1.2e-3, rng, FAST_BOX)       # a planted 20% slowdown on the first machine
    flagged, history = _flagged(root, "20260400-fast")
    assert flagged == ["20260400-fast"] and all(r.endswith("-fast") for r in history) and len(history) == 5
    old = store.read_manifest("20260100-old", root)
    assert machine.machine_of(old) == machine.UNKNOWN and "unknown machine" in machine.machine_label(old)
    assert all(r.endswith("-old") for r in _flagged(root, "20260103-old")[1])


def test_compare_refuses_two_machines_unless_asked(tmp_path, capsys):
    root, rng = str(tmp_path), np.random.default_rng(1)
    _night(root, "a", 1e-3, rng, FAST_BOX)
    _night(root, "b", 2e-3, rng, SLOW_BOX)
    _night(root, "c", 1e-3, rng, None)
    for other in ("b", "c"):
        with pytest.raises(store.StoreError, match="different machines"):
            regressions.compare(root, "a", other)
    assert regressions.compare(root, "a", "b", across_machines=True).flag.tolist() == ["slower"]
    assert main(["compare", "a", "b", "--results", root]) == 2
    assert "--across-machines" in capsys.readouterr().err
    assert main(["compare", "a", "b", "--results", root, "--across-machines"]) == 0
    assert "1 slower" in capsys.readouterr().out


def test_calibration_refuses_runs_of_two_machines(tmp_path):
    root, rng = str(tmp_path), np.random.default_rng(2)
    _night(root, "a", 1e-3, rng, FAST_BOX)
    _night(root, "b", 2e-3, rng, SLOW_BOX)
    with pytest.raises(calibration.CalibrationError, match="different machines.*a on aaaaaaaaaaaa.*b on bbbb"):
        calibration.points_from_store(root, ["a", "b"])


def test_calibrate_command_refuses_kernel_runs_of_another_machine(tmp_path, capsys):
    root, rng = str(tmp_path), np.random.default_rng(3)
    _night(root, "a", 1e-3, rng, FAST_BOX)
    _night(root, "k", 1e-3, rng, SLOW_BOX)                    # kernel runs timed on another machine
    assert main(["calibrate", "--runs", "a", "--kernel-runs", "k", "--profile", "cpu-local", "--results", root]) == 2
    assert "different machines" in capsys.readouterr().err
    assert not (tmp_path / "calibration").exists()             # nothing written


def test_a_fit_records_the_machine_of_its_runs(tmp_path):
    root, rng = str(tmp_path), np.random.default_rng(4)
    _night(root, "a", 1e-3, rng, FAST_BOX | {"cpu_model": "Xeon", "cpu_cores": 2})
    _night(root, "old", 1e-3, rng, None)                      # stored before runs recorded their machine
    on = calibration.fitted_on_of(["a"], root)
    assert (on.cpu_key, on.machine_id, on.description) == ("xeon-2c", "aaaaaaaaaaaa", FAST_BOX["machine"])
    assert calibration.fitted_on_of(["old"], root) is None
    _night(root, "gpu", 1e-3, rng, FAST_BOX | {"cpu_model": "Xeon", "cpu_cores": 2, "accelerator": "NVIDIA H200"})
    assert calibration.fitted_on_of(["gpu"], root).key == "nvidia-h200"  # a GPU's fit is keyed by the GPU
