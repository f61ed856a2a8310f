"""Plugins: the example package of the README (examples/mallocbench-example), installed with pip into a
directory of its own, adds the workload gated-mlp and the policy densest-first through entry points; the broken
package beside the tests (tests/broken_plugin_pkg) adds an entry point that does not import and a policy of the
wrong signature, each named and left out; module:function references work without installing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.model.mapping import Mapping

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "mallocbench-example"
BROKEN = REPO / "tests" / "broken_plugin_pkg"
SOURCES = os.pathsep.join(map(str, (EXAMPLE, BROKEN)))  # the packages' modules, not installed


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The example and the broken package installed by pip (offline, no build isolation, from copies so that
    the build leaves nothing in the repository) into a fresh target directory."""
    target, sources = tmp_path_factory.mktemp("site"), tmp_path_factory.mktemp("sources")
    for package in (EXAMPLE, BROKEN):
        copy = shutil.copytree(package, sources / package.name)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--no-index", "--target", str(target), str(copy)], check=True, capture_output=True)
    assert (target / "mallocbench_example").is_dir() and (target / "mallocbench_broken").is_dir()
    return target


def mallocbench(args: list[str], cwd: Path, path: Path | str | None = None) -> subprocess.CompletedProcess:
    """`mallocbench ARGS` in a fresh process, with `path` (an install target or sources) ahead of the
    repository."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(p) for p in (path, REPO) if p))
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_installed_plugins_are_listed_and_the_broken_ones_named(installed, tmp_path):
    done = mallocbench(["workloads", "--no-extract"], tmp_path, installed)
    assert done.returncode == 0, done.stderr
    assert "gated-mlp" in done.stdout and "plugin" in done.stdout and "matmul-chain" in done.stdout
    assert "'broken-import'" in done.stderr and "ModuleNotFoundError" in done.stderr
    assert "'wrong-signature'" in done.stderr and "wrong signature" in done.stderr
    assert "Traceback" not in done.stderr


def test_solve_runs_the_plugin_workload_and_policy(installed, tmp_path):
    done = mallocbench(["solve", "--workload", "gated-mlp", "--policy", "xla-msa,densest-first", "--profile",
                        "tpu-v4i-cmem", "--budget", "0.5", "--map", "map.png"], tmp_path, installed)
    assert done.returncode == 0, done.stderr
    mine = Mapping.from_json((tmp_path / "gated-mlp-ci.densest-first.map.json").read_text())
    assert mine.policy == "densest-first" and mine.offsets and mine.budget == 0.5
    assert "policy densest-first" in done.stdout and "memory map of xla-msa beside densest-first" in done.stdout
    assert (tmp_path / "map.png").stat().st_size > 10_000
    assert "'wrong-signature'" in done.stderr                  # named, and the command went on


def test_references_work_without_installing(tmp_path):
    done = mallocbench(["solve", "--workload", "mallocbench_example:gated_mlp", "--policy",
                        "mallocbench_example:densest_first", "--profile", "h100-offload", "--budget", "0.25"],
                       tmp_path, SOURCES)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "mallocbench_example_gated_mlp-ci.mallocbench_example_densest_first.map.json").is_file()


@pytest.mark.parametrize("policy, error", [
    ("mallocbench_broken:overlapping", "overlap"),
    ("mallocbench_broken:not_a_mapping", "returned a dict, not a harness Mapping"),
    ("mallocbench_broken:wrong_signature", "wrong signature"),
    ("mallocbench_broken.nowhere:policy", "ModuleNotFoundError"),
    ("mallocbench_example", "unknown policy 'mallocbench_example'"),
])
def test_a_bad_policy_is_named_with_its_error(policy, error, tmp_path):
    done = mallocbench(["solve", "--workload", "matmul-chain", "--policy", policy, "--profile", "tpu-v4i-cmem",
                        "--budget", "0.5"], tmp_path, SOURCES)
    assert done.returncode == 2 and error in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not list(tmp_path.glob("*.map.json"))


def test_a_bad_workload_is_named_with_its_error(tmp_path):
    done = mallocbench(["solve", "--workload", "mallocbench_broken:no_arguments", "--policy", "xla-msa",
                        "--profile", "tpu-v4i-cmem", "--budget", "0.5"], tmp_path, SOURCES)
    assert done.returncode == 2 and "returned int, not (fn, args)" in done.stderr, done.stderr
    listed = mallocbench(["workloads", "--no-extract", "--workload", "mallocbench_example:gated_mlp", "--workload",
                          "nowhere:fn"], tmp_path, SOURCES)
    assert listed.returncode == 0 and "mallocbench_example:gated_mlp" in listed.stdout
    assert "'nowhere:fn'" in listed.stderr and "ModuleNotFoundError" in listed.stderr


def test_a_two_cell_nightly_runs_the_plugins_and_reports_them(installed, tmp_path):
    import json

    results = tmp_path / "results"
    done = mallocbench(["nightly", "--workloads", "gated-mlp", "--policies", "densest-first,xla-msa,nowhere:policy",
                        "--budgets", "0.5", "--profile", "tpu-v4i-cmem", "--results", str(results)], tmp_path,
                       installed)
    assert done.returncode == 0, done.stderr
    assert "'nowhere:policy'" in done.stderr and "'broken-import'" in done.stderr   # named, and left out
    (manifest_file,) = results.glob("runs/*/manifest.json")
    manifest = json.loads(manifest_file.read_text())
    assert manifest["policies"] == ["densest-first", "xla-msa"] and manifest["n_cells"] == 2
    assert any("wrong-signature" in p for p in manifest["plugin_problems"])
    assert "densest-first" in done.stdout and "Simulated 2 cells on tpu-v4i-cmem" in done.stdout
    page = (results / "reports" / manifest["run_id"] / "index.html").read_text()
    assert "densest-first" in page and "gated-mlp" in page and 'id="plugin-problems"' in page
    planned = mallocbench(["nightly", "--workloads", "gated-mlp", "--profile", "h100-offload", "--plan-only",
                           "--results", str(results)], tmp_path, installed)
    assert planned.returncode == 0, planned.stderr
    newest = max(results.glob("runs/*/manifest.json"), key=lambda p: json.loads(p.read_text())["started"])
    assert "densest-first" in json.loads(newest.read_text())["policies"]     # an installed policy runs by default
