"""A fault to plant in a run of cells: a policy whose solve step raises."""

from __future__ import annotations

from typing import Optional

import pytest

from harness.runs import cells


def fail_policy(patch: pytest.MonkeyPatch, policy: str, message: str, workload: Optional[str] = None) -> None:
    """Through `patch`, make the cells of `policy` (of `workload` only, when given) raise RuntimeError(message)
    where the cell pipeline solves them; every other cell runs as before."""
    real = cells.cell_mapping

    def cell_mapping(instance, spec, profile, cell):
        if cell.policy == policy and workload in (None, cell.workload):
            raise RuntimeError(message)
        return real(instance, spec, profile, cell)

    patch.setattr(cells, "cell_mapping", cell_mapping)
