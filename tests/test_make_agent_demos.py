"""scripts/make_agent_demos.py: one game end to end, and a name outside the training split refused."""

import runpy
from pathlib import Path

import pytest

from agent.data import demos as D
from harness.model.profiles import load_profile

SCRIPT = runpy.run_path(str(Path(__file__).resolve().parents[1] / "scripts" / "make_agent_demos.py"),
                        run_name="make_agent_demos")


def test_one_game_is_made_and_loads(tmp_path, capsys):
    argv = ["--limit", "2", "--only", "mha-fwd-bwd@ci", "--profiles", "tpu-v4i-cmem", "--budgets", "0.5",
            "--out", str(tmp_path)]
    assert SCRIPT["main"](argv) == 0
    assert "tpu-v4i-cmem@0.5.json.gz" in capsys.readouterr().out
    (demo,) = D.load(load_profile("tpu-v4i-cmem"), 0.5, tmp_path).demos
    assert demo.instance == "mha-fwd-bwd@ci" and demo.time_limit_seconds == 2.0
    assert demo.bound_seconds <= demo.demo_seconds <= demo.xla_msa_seconds
    assert (demo.source == "cpsat-optimal") == (demo.optimal and demo.demo_seconds < demo.xla_msa_seconds)


def test_a_name_outside_the_training_split_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        SCRIPT["main"](["--only", "vit-encoder@ci", "--out", str(tmp_path)])
    assert "--only: not training instances: vit-encoder@ci" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
