"""The README stands alone and its commands run as written: no path outside the repository, no issue numbers,
every `mallocbench` command parses, every path it names exists, every make target is in the Makefile, and the
quick start runs for real and makes what it says."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli.main import build_parser

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = [README, REPO / "docs" / "design.md"]
CLI = (".venv/bin/mallocbench", "mallocbench")


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def _commands(block: str) -> list[list[str]]:
    """The command lines of a shell block, continuation lines joined and comments dropped, as argv lists."""
    lines = block.replace("\\\n", " ").splitlines()
    return [shlex.split(line, comments=True) for line in lines if line.strip() and not line.startswith("#")]


def _readme_commands() -> list[list[str]]:
    return [argv for block in _blocks(README.read_text(), "sh") for argv in _commands(block) if argv]


def _without_env(argv: list[str]) -> tuple[dict, list[str]]:
    """Leading VAR=value words apart from the command."""
    env = {}
    while argv and re.fullmatch(r"[A-Z_]+=\S*", argv[0]):
        key, _, value = argv[0].partition("=")
        env[key], argv = value, argv[1:]
    return env, argv


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_docs_stand_alone(doc):
    text = doc.read_text()
    assert "../" not in text and "/work/" not in text and "shared/" not in text
    assert not re.search(r"\bissues? #?\d+|\(issue|#\d{1,3}\b", text, re.I), re.findall(r".{30}issue.{30}", text)
    for link in re.findall(r"\]\(([^)#]+)\)", text):          # relative links point into the repository
        if "://" not in link:
            assert (doc.parent / link).exists(), link


def test_exactly_two_set_up_commands():
    setup = README.read_text().split("## Set-up: two commands")[1].split("\n## ")[0]
    assert [argv[:2] for argv in _commands(_blocks(setup, "sh")[0])] == [["make", "nightly"], ["make", "test"]]


def test_every_command_parses_and_names_what_exists():
    parser, targets = build_parser(), set(re.findall(r"^([a-z]+):", (REPO / "Makefile").read_text(), re.M))
    seen = set()
    for argv in _readme_commands():
        env, argv = _without_env(argv)
        for value in env.values():
            assert (REPO / value).exists(), value
        if argv[0] in CLI:
            parser.parse_args(argv[1:])                        # SystemExit (a failed test) if it does not parse
            seen.add(argv[1])
        elif argv[0] == "make":
            assert argv[1] in targets
        elif argv[0] == ".venv/bin/pip":
            assert (REPO / argv[-1]).is_dir(), argv
        elif argv[0].startswith("scripts/"):
            assert (REPO / argv[0]).is_file(), argv             # the project's own scripts
        else:
            assert argv[0] in ("ray", "sbatch"), argv           # other tools, shown as they are used
    assert {"solve", "nightly", "compare", "report", "measure", "workloads"} <= seen


def test_the_quick_start_runs_as_written(tmp_path):
    quick = README.read_text().split("## Quick start")[1].split("\n## ")[0]
    commands = _commands(_blocks(quick, "sh")[0])
    assert len(commands) == 1 and commands[0][0] == ".venv/bin/mallocbench"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "harness.cli", *commands[0][1:]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    for policy in ("xla-msa", "cpsat"):
        assert f"policy {policy}" in done.stdout and (tmp_path / f"matmul-chain-ci.{policy}.map.json").is_file()
    assert (tmp_path / "matmul-chain.png").stat().st_size > 10_000
    assert "memory map of xla-msa beside cpsat: matmul-chain.png" in done.stdout
