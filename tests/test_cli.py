"""The `mallocbench` command line, as a user runs it: its tables parsed and checked against figures computed
here from the registry and the instance file."""

import json
import os
import re
import subprocess
import sys

import pytest

import workloads
from harness.cli.main import main

BYTE_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import sys; from harness.cli import main; sys.exit(main())",
                           *args], capture_output=True, text=True, env=os.environ | {"COLUMNS": "200"})


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the rich tables in `text`, each a list of its stripped cells; a row whose first cell
    is empty continues the row above (a wrapped cell) and is joined to it."""
    rows: list[list[str]] = []
    for line in text.splitlines():
        if not line.startswith("│"):
            continue
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if rows and not cells[0] and len(cells) == len(rows[-1]):
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells)]
        else:
            rows.append(cells)
    return rows


def _bytes(text: str) -> int:
    """"32.0 KiB" as 32768."""
    number, unit = text.split()
    return round(float(number) * BYTE_UNITS[unit])


def test_unknown_workload_lists_the_valid_ones(capsys):
    assert main(["extract", "no-such-workload"]) == 2
    err = capsys.readouterr().err
    assert "unknown workload 'no-such-workload'" in err
    assert all(name in err for name in workloads.names("ci"))


def test_workloads_list_without_extraction():
    result = run_cli("workloads", "--no-extract")
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert [r[0] for r in rows] == workloads.names("ci")
    for name, family, sizes, flops, buffers, description in rows:
        assert family == workloads.get(name).family
        assert sizes.split(", ") == list(workloads.SIZES)
        assert flops == buffers == "-"  # not extracted
        assert description == " ".join(workloads.get(name).description.split())
    families = {r[1] for r in rows}
    assert f"{len(rows)} workloads from {len(families)} families" in result.stdout


def test_extract_then_show_instance(tmp_path):
    out = tmp_path / "mm.json"
    result = run_cli("extract", "matmul-chain", "-o", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["name"] == "matmul-chain/ci" and data["buffers"]
    said = re.search(r"(\d+) ops, (\d+) buffers", result.stdout)
    assert said and (int(said[1]), int(said[2])) == (len(data["ops"]), len(data["buffers"]))

    shown = run_cli("instance", str(out))
    assert shown.returncode == 0, shown.stderr
    rows = table_rows(shown.stdout)
    summary = {r[0]: r[1] for r in rows if len(r) == 2}
    assert summary["ops"] == str(len(data["ops"]))
    assert summary["buffers"] == f"{len(data['buffers'])} ({len(data['left_out'])} values left out)"
    histogram = [r for r in rows if len(r) == 3]
    # buffers by power-of-two size class, counted here from the file
    classes: dict[int, int] = {}
    for b in data["buffers"]:
        k = b["bytes"].bit_length() - 1
        classes[k] = classes.get(k, 0) + 1
    assert [(_bytes(r[0].split(" - ")[0]), int(r[1])) for r in histogram] == \
        [(1 << k, n) for k, n in sorted(classes.items())]
    assert max(len(r[2]) for r in histogram) == 40 and all(set(r[2]) == {"#"} for r in histogram)


def test_instance_of_a_malformed_file_names_the_field(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema_version": 999}))
    assert main(["instance", str(bad)]) == 2
    assert "schema_version" in capsys.readouterr().err


def test_instance_of_a_missing_file(tmp_path, capsys):
    assert main(["instance", str(tmp_path / "none.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["extract", "matmul-chain", "--size", "huge"],
                                  ["workloads", "--suite", "nightly-xl"]])
def test_bad_choice_is_refused_with_the_valid_ones(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err and all(repr(v) in err for v in (workloads.SIZES if "--size" in argv
                                                                      else workloads.SUITES))
