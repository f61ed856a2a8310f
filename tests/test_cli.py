"""The `mallocbench` command line, as a user runs it."""

import json
import os
import subprocess
import sys

import pytest

import workloads
from harness.cli.main import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli.main", *args], capture_output=True, text=True,
                          env=os.environ | {"COLUMNS": "200"})


def test_unknown_workload_lists_the_valid_ones(capsys):
    assert main(["extract", "no-such-workload"]) == 2
    err = capsys.readouterr().err
    assert "unknown workload 'no-such-workload'" in err
    assert workloads.names("ci")[0] in err


def test_workloads_list_without_extraction():
    result = run_cli("workloads", "--no-extract")
    assert result.returncode == 0, result.stderr
    for name in workloads.names("ci"):
        assert name in result.stdout
    assert "families" in result.stdout


def test_extract_then_show_instance(tmp_path):
    out = tmp_path / "mm.json"
    result = run_cli("extract", "matmul-chain", "-o", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["name"] == "matmul-chain/ci" and data["buffers"]
    shown = run_cli("instance", str(out))
    assert shown.returncode == 0, shown.stderr
    assert "peak live bytes" in shown.stdout and "buffer sizes" in shown.stdout
    assert str(len(data["ops"])) in shown.stdout


def test_instance_of_a_malformed_file_names_the_field(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema_version": 999}))
    assert main(["instance", str(bad)]) == 2
    assert "schema_version" in capsys.readouterr().err


def test_instance_of_a_missing_file(tmp_path, capsys):
    assert main(["instance", str(tmp_path / "none.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_bad_size_is_refused():
    result = run_cli("extract", "matmul-chain", "--size", "huge")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


@pytest.mark.parametrize("suite", ["nightly-xl"])
def test_unknown_suite_is_refused(suite):
    with pytest.raises(ValueError, match="valid suites"):
        workloads.names(suite)
