"""The nightly on a local Ray cluster: the same cells and figures as the local executor; dead workers lose and
double nothing."""

from __future__ import annotations

import math
import os
import sys
import warnings
from pathlib import Path

import pytest

from harness.runs import cells, nightly
from harness.results import store

ray = pytest.importorskip("ray")

GRID = dict(workload_names=["matmul-chain", "mlp-train"], policies=["xla-native", "xla-msa", "all-fast"],
            budgets=[0.25, 0.5], profile="h100-offload")  # measured, budgeted and unbudgeted cells: 8 in all


@pytest.fixture(scope="module")
def cluster():
    with warnings.catch_warnings():  # fork + exec of Ray's processes beside JAX's threads
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        # two GPUs and two TPUs that are not there: only for tasks to ask for (none here touches one)
        ray.init(num_cpus=2, num_gpus=2, resources={"TPU": 2}, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


def _figures(root: str, run_id: str) -> dict:
    frame = store.read("cells", root, run_ids=[run_id])
    return {(r.cell, r.workload, r.policy, None if math.isnan(r.budget) else r.budget): (r.status, r.simulated_s)
            for r in frame.itertuples()}


def test_ray_and_local_executors_give_the_same_cells_and_simulated_figures(cluster, tmp_path):
    spec = nightly.make_spec("ci", **GRID)
    local = cells.plan(spec, str(tmp_path))
    cells.run_local(spec, local, str(tmp_path))
    on_ray = cells.plan(spec, str(tmp_path), executor="ray")
    rows = []
    cells.run_ray(spec, on_ray, str(tmp_path), on_cell=rows.append)
    assert len(rows) == len(spec.cells())
    assert _figures(str(tmp_path), on_ray) == _figures(str(tmp_path), local)
    assert len(_figures(str(tmp_path), on_ray)) == len(spec.cells())


def _dies_once(spec, cell, solved, run_id, root):
    """A cell task whose worker dies once, before storing cell 1's row and after storing cell 4's."""
    marker = Path(root) / f"died-{cell.index}"
    if cell.index == 1 and not marker.exists():
        marker.touch()
        os._exit(1)
    row = cells.store_cell(cells.measure_cell(spec, cell, solved, root), cell, run_id, root)
    if cell.index == 4 and not marker.exists():
        marker.touch()
        os._exit(1)
    return row


def test_a_worker_killed_mid_task_loses_and_doubles_nothing(cluster, tmp_path):
    root = str(tmp_path)
    spec = nightly.make_spec("ci", **GRID)
    run_id = cells.plan(spec, root, executor="ray")
    cells.run_ray(spec, run_id, root, task=_dies_once)
    assert (tmp_path / "died-1").exists() and (tmp_path / "died-4").exists()   # both workers did die
    frame = store.read("cells", root, run_ids=[run_id])
    assert sorted(frame.cell) == list(range(len(spec.cells())))                  # each cell exactly once
    assert (frame.status == "ok").all()


def _observes_its_resources(spec, cell, solved, run_id, root):
    """A measuring task that stores nothing and reports what Ray gave it."""
    granted = ray.get_runtime_context().get_assigned_resources()
    return {"policy": cell.policy, "resources": {k: v for k, v in granted.items() if v}}


@pytest.mark.parametrize("backend, device", [("cuda", {"GPU": 1.0}), ("tpu", {"TPU": 1.0}), ("cpu", {})])
def test_measuring_tasks_hold_the_device_they_measure_on(cluster, tmp_path, backend, device):
    """The rule: a cell measured on an accelerator (on an accelerator, every cell) holds one device, so that two
    measurements never share it, and a CPU; on the CPU (where only xla-native is measured) a task holds one
    CPU. The cluster declares two GPUs and two TPUs, so a task asking for more than one would show it."""
    spec = nightly.make_spec("ci", workload_names=["matmul-chain"], policies=["xla-native", "xla-msa"],
                             budgets=[0.5], profile="h100-offload")
    run_id = cells.plan(spec, str(tmp_path), executor="ray")
    rows = []
    cells.run_ray(spec, run_id, str(tmp_path), on_cell=rows.append, task=_observes_its_resources, backend=backend)
    assert sorted(r["policy"] for r in rows) == ["xla-msa", "xla-native"]
    assert all(r["resources"] == {"CPU": 1.0, **device} for r in rows), rows
