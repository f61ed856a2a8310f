"""A store with two real small nightly runs, shared by the report's and the notebook's tests (built once per
pytest session)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cell_faults import fail_policy

from harness.runs import cells, nightly

GRID = dict(workload_names=["matmul-chain", "alphatensor-strassen"],
            policies=["xla-native", "all-slow", "xla-msa", "cpsat", "first-fit", "all-fast"], budgets=[0.25, 0.5],
            profile="tpu-v4i-cmem")
_BUILT: dict[Path, tuple[str, str, str]] = {}


def nightly_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """(root, first, second): two nightly runs of GRID in one store; first-fit fails on matmul-chain in the
    second. Tests that change the store work on a copy."""
    base = tmp_path_factory.getbasetemp()
    if base not in _BUILT:
        _BUILT[base] = _build(str(tmp_path_factory.mktemp("results")))
    return _BUILT[base]


def _build(root: str) -> tuple[str, str, str]:
    spec = nightly.make_spec("ci", **GRID)
    first = cells.plan(spec, root)
    cells.run_local(spec, first, root)
    nightly.finish(first, root)
    with pytest.MonkeyPatch.context() as patch:
        fail_policy(patch, "first-fit", "first-fit exploded", workload="matmul-chain")
        second = cells.plan(spec, root)
        cells.run_local(spec, second, root)
    nightly.finish(second, root)
    return root, first, second
