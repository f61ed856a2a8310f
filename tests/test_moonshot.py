"""scripts/moonshot.py: the agent under a deadline against CP-SAT on one small held-out instance."""

import csv
import runpy
from pathlib import Path

SCRIPT = runpy.run_path(str(Path(__file__).resolve().parents[1] / "scripts" / "moonshot.py"), run_name="moonshot")


def test_one_instance(tmp_path, capsys):
    argv = ["--profile", "h100-offload", "--names", "synthetic-training-1000-40", "--seconds", "0.5",
            "--cpsat-time-limit", "1", "--out", str(tmp_path)]
    assert SCRIPT["main"](argv) == 0
    (row,) = list(csv.DictReader(open(tmp_path / "moonshot-h100-offload-0.5.csv")))
    assert row["instance"] == "synthetic-training-1000-40" and row["cpsat_optimal"] == "False"  # offload: a surrogate
    assert float(row["cpsat_seconds"]) <= float(row["xla_msa_seconds"])
    assert 1 <= int(row["decisions_searched"]) <= int(row["decisions"])
    assert (row["agent_wins"] == "True") == (float(row["agent_seconds"]) < float(row["cpsat_seconds"]) * (1 - 1e-6))
    assert "1 of 1 instances not proven optimal by CP-SAT" in capsys.readouterr().out
