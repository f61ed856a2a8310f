"""The one-command GPU check: its plan per device, and its dry run's export check on the CPU."""

import pytest

from harness.cli.main import main
from harness.runs.device_check import DeviceCheckError, export_check, plan


def test_plan_names_the_profile_and_folder_of_the_device():
    h200 = plan("NVIDIA H200", "res")
    assert h200.profile == "h200-offload" and str(h200.results) == "res/device/NVIDIA-H200"
    h100 = plan("NVIDIA H100 80GB HBM3")
    assert h100.profile == "h100-offload"
    assert [c[0] for c in h100.commands] == ["nightly", "optimes", "calibrate"]
    assert "xla-native,xla-msa,cpsat,mallocmuzero" in h100.commands[0]
    with pytest.raises(DeviceCheckError, match="H100 or H200"):
        plan("cpu")


def test_dry_run_checks_the_export_of_every_mapping(capsys):
    rows = export_check("h100-offload", ["mlp-train", "lstm-scan"], ["xla-msa", "cpsat"])
    assert [(r["workload"], r["policy"]) for r in rows] == [
        ("mlp-train", "xla-msa"), ("mlp-train", "cpsat"), ("lstm-scan", "xla-msa"), ("lstm-scan", "cpsat")]
    assert all(r["offloaded_values"] <= r["slow_buffers"] for r in rows)
    assert main(["device-check", "--dry-run", "--workloads", "mlp-train"]) == 0
    out = capsys.readouterr().out
    assert "h100-offload" in out and "mallocbench optimes" in out and "export check: 3 realized mappings" in out
