"""The one cell pipeline: a grid of cells (workload x size x policy x budget), each run once and
stored as it finishes. `mallocbench nightly` and `mallocbench measure` both run it.

A cell extracts its workload's program (`harness.runs.programs`: cached on disk by the
hash of the compiled program, and in memory per process), maps it with its policy at its
budget, validates and simulates the mapping, realizes it and measures it on the local
device where the mapping is realizable (on a one-tier backend such as the CPU only
`xla-native`, the untouched program, is measured; the other cells say why not), and
writes one row to the store's "cells" table under the key `cell-<index>`. A keyed
part file is written at most once, so a resumed run skips the cells it holds and a
retried task (a Ray worker that died) never doubles a row. Cells are numbered in a
fixed order, so `run_cell` can run any one of them alone (an array job's task).

Executors: `run_local` runs the pending cells one after another; `run_ray` submits
each as a Ray task, the measuring ones asking for the device (one GPU or TPU) so
that two measurements never share an accelerator, the others for one CPU.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import traceback
import warnings
from typing import Any, Callable, Iterable, Optional

import jax

import workloads
from workloads.plugins import PluginError
from agent.registry import resolve as resolve_policies
from agent.registry import solve_detailed
from harness.device.machine import this_machine
from harness.device.realization import NATIVE, realize
from harness.device.timing import environment, measure
from harness.model.mapping import Mapping, capacity, check_budget, validate
from harness.model.profiles import Profile, default_profile, device_kind, load_profile, profile_names
from harness.model.simulator import simulate
from harness.results import artifacts, store
from harness.runs.programs import load_program
from harness.xla.instance import Instance

UNBUDGETED = (NATIVE, "all-fast")  # policies run once per program, without a budget
KINDS = ("nightly", "measure")  # the kinds of run made of cells


@dataclasses.dataclass(frozen=True)
class Cell:
    """One point of the grid: a workload at a size under a policy at a budget (None for the
    unbudgeted policies)."""

    index: int
    workload: str
    size: str
    policy: str
    budget: Optional[float]

    @property
    def key(self) -> str:
        """The store key of the cell's row."""
        return f"cell-{self.index:05d}"


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """What a run of cells covers; stored in its manifest, so that a resume or a single cell rebuilds it."""

    kind: str  # one of KINDS
    suite: str
    workloads: tuple[str, ...]
    policies: tuple[str, ...]
    budgets: tuple[float, ...]
    profile: str
    sizes: tuple[str, ...] = ("ci",)
    seed: int = 0
    solve_time_limit: float = 10.0
    measure_time_limit: float = 3.0

    def cells(self) -> tuple[Cell, ...]:
        """Every cell, numbered: per workload and size, the unbudgeted policies, then each budget's policies."""
        grid = []
        for name in self.workloads:
            for size in self.sizes:
                grid += [(name, size, p, None) for p in self.policies if p in UNBUDGETED]
                grid += [(name, size, p, b) for b in self.budgets for p in self.policies if p not in UNBUDGETED]
        return tuple(Cell(i, *c) for i, c in enumerate(grid))

    def meta(self) -> dict:
        """The manifest keys of this spec."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @staticmethod
    def from_manifest(manifest: dict) -> "RunSpec":
        """The spec a run's manifest holds; StoreError if the run is not made of cells. (Runs written
        before sizes were a list hold one `size`.)"""
        if manifest.get("kind") not in KINDS:
            raise store.StoreError(f"run {manifest.get('run_id')!r} is a {manifest.get('kind')!r} run, not a run "
                                   f"of cells ({', '.join(KINDS)})")
        fields = {f.name for f in dataclasses.fields(RunSpec)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in manifest.items() if k in fields}
        if "size" in manifest and "sizes" not in manifest:
            values["sizes"] = (manifest["size"],)
        return RunSpec(**values)


def plan(spec: RunSpec, root: str = store.DEFAULT_ROOT, executor: str = "local", label: Optional[str] = None,
         plugin_problems: Iterable[str] = ()) -> str:
    """Start a run of `spec` in the store (its manifest holds the spec, this machine's identity and the
    plugins left out, `plugin_problems`) and return its id; `label` (default: kind-suite) names it in the run
    id."""
    env = environment()
    meta = spec.meta() | {"n_cells": len(spec.cells()), "executor": executor, "backend": jax.default_backend(),
                          "plugin_problems": [str(p) for p in plugin_problems]}
    meta |= {k: env[k] for k in ("device_kind", "jax_version", "git_commit", "host")} | this_machine().row()
    return store.start_run(meta, root, run_id=store.new_run_id(label or f"{spec.kind}-{spec.suite}"))


def load_run(run_id: str, root: str = store.DEFAULT_ROOT) -> tuple[RunSpec, dict]:
    """The spec and manifest of a stored run of cells; StoreError naming the run when there is none."""
    manifest = store.read_manifest(run_id, root)
    return RunSpec.from_manifest(manifest), manifest


def make_spec(kind: str, suite: str, workload_names: Optional[Iterable[str]], policies: Iterable[str],
              budgets: Iterable[float], profile: Optional[str] = None, sizes: Iterable[str] = ("ci",),
              **options: Any) -> RunSpec:
    """A checked spec: unknown kinds, suites, workloads, sizes, policies or profiles and bad budgets
    raise ValueError naming the valid ones, plugins that cannot be loaded PluginError (`usable` leaves
    them out beforehand); a name given twice counts once. `workload_names` None: every workload of the
    suite; `profile` None: the local backend's. Workloads and policies may be `module:function` plugins."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of run {kind!r}; valid: {', '.join(KINDS)}")
    suite_names = workloads.names(suite)  # ValueError listing the suites
    names, chosen, _ = usable(workload_names or suite_names, policies, raise_problems=True)
    sizes = tuple(dict.fromkeys(sizes))
    bad = [s for s in sizes if s not in workloads.SIZES]
    if bad:
        raise ValueError(f"unknown size {bad[0]!r}; valid: {', '.join(workloads.SIZES)}")
    for what, items in (("workload", names), ("policy", chosen), ("size", sizes)):
        if not items:
            raise ValueError(f"no {what} given")
    budgets = tuple(dict.fromkeys(check_budget(float(b)) for b in budgets))
    profile = profile or default_profile(jax.default_backend())
    if profile not in profile_names():
        raise ValueError(f"unknown profile {profile!r}; valid: {', '.join(profile_names())}")
    return RunSpec(kind, suite, names, chosen, budgets, profile, sizes=sizes, **options)


def usable(workload_names: Iterable[str], policies: Iterable[str], raise_problems: bool = False
           ) -> tuple[tuple[str, ...], tuple[str, ...], list]:
    """The workloads and policies of a run that can be loaded, each once, and the plugins among them that
    cannot (`workloads.plugins.Problem`s: a run goes on without them; with `raise_problems` the first one
    raises PluginError instead). An unknown plain name raises UnknownWorkloadError or ValueError naming the
    valid ones."""
    names, bad_workloads = workloads.resolve(tuple(workload_names))
    chosen, bad_policies = resolve_policies(tuple(policies), extra=(NATIVE,))
    problems = [*bad_workloads, *bad_policies]
    if problems and raise_problems:
        raise PluginError(str(problems[0]))
    return tuple(names), tuple(chosen), problems


def pending(spec: RunSpec, run_id: str, root: str = store.DEFAULT_ROOT) -> list[Cell]:
    """The cells of the run that have no stored row yet."""
    done = store.keys("cells", run_id, root)
    return [c for c in spec.cells() if c.key not in done]


# --------------------------------------------------------------------------- one cell


class _Failed(Exception):
    """A cell's step failed; `stage` names it."""

    def __init__(self, stage: str, err: BaseException):
        super().__init__(f"{stage}: {type(err).__name__}: {err}")
        self.stage = stage
        self.detail = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}"


def _step(stage: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as err:  # recorded in the cell's row; the run goes on
        raise _Failed(stage, err) from err


def cell_mapping(instance: Instance, spec: RunSpec, profile: Profile, cell: Cell) -> tuple[Mapping, bool]:
    """The cell's mapping and whether it is proven optimal (cpsat only); xla-native is simulated all-fast."""
    if cell.policy == NATIVE:
        fast = solve_detailed(instance, profile, None, "all-fast").mapping
        return dataclasses.replace(fast, policy=NATIVE), False
    solution = solve_detailed(instance, profile, cell.budget, cell.policy, seed=spec.seed,
                              time_limit=spec.solve_time_limit)
    return solution.mapping, solution.optimal


def solve_cell(spec: RunSpec, cell: Cell, run_id: str, root: str = store.DEFAULT_ROOT) -> tuple[dict, Optional[Mapping]]:
    """The first half of a cell, on CPUs: extract, solve, validate, simulate. Its row so far and its mapping
    (None when a step failed: the row says which stage and why); never raises for a failing step."""
    profile = load_profile(spec.profile)
    row = _base_row(spec, cell) | {"status": "ok", "error": "", "stage": "", "optimal": False, "valid": False,
                                   "measure_note": ""}
    try:
        prog = _step("extract", lambda: load_program(cell.workload, cell.size, os.path.abspath(root)))
        row |= {"program_hash": prog.program_hash, "extraction_cached": prog.cached}
        row["instance_file"] = _artifact(run_id, root, f"instances/{cell.workload}@{cell.size}.json.gz",
                                         prog.instance.to_json())
        t0 = time.perf_counter()
        mapping, optimal = _step("solve", lambda: cell_mapping(prog.instance, spec, profile, cell))
        row |= {"solve_s": time.perf_counter() - t0, "optimal": optimal,
                "budget_bytes": capacity(prog.instance, profile, cell.budget) if cell.budget is not None else -1}
        _step("validate", lambda: validate(prog.instance, mapping, profile, cell.budget))
        row["valid"] = True
        row["mapping_file"] = _artifact(run_id, root, f"mappings/{cell.key}.json", mapping.to_json())
        row["simulated_s"] = _step("simulate", lambda: simulate(prog.instance, mapping, profile))
        return row, mapping
    except _Failed as failure:
        return row | {"status": "failed", "stage": failure.stage, "error": failure.detail}, None


def measure_cell(spec: RunSpec, cell: Cell, solved: tuple[dict, Optional[Mapping]],
                 root: str = store.DEFAULT_ROOT) -> dict:
    """The second half of a cell, on the device: realize the mapping and measure it where it is realizable
    (on a one-tier backend only xla-native, the untouched program, is). The cell's full row."""
    row, mapping = solved
    if mapping is None:
        return row
    try:
        prog = _step("extract", lambda: load_program(cell.workload, cell.size, os.path.abspath(root)))
        realized = _step("realize", lambda: realize(prog.fn, prog.args, prog.instance, mapping, program=prog.program))
    except _Failed as failure:
        return row | {"status": "failed", "stage": failure.stage, "error": failure.detail}
    report = realized.report
    row = row | {"realizable": report.realizable, "offloaded_values": len(report.offloaded_values),
                 "linked_share": report.linked_share}
    if not report.realizable and cell.policy != NATIVE:
        return row | {"measure_note": f"not measured: {report.reason}; only {NATIVE} (the untouched program) is"}
    measured = measure(realized.fn, prog.args, time_limit_s=spec.measure_time_limit).row() | this_machine().row()
    return row | measured | ({"stage": "measure"} if measured["status"] != "ok" else {})


def cell_row(spec: RunSpec, cell: Cell, run_id: str, root: str = store.DEFAULT_ROOT) -> dict:
    """Run one cell (extract, solve, validate, simulate, realize, measure) and return its row."""
    return measure_cell(spec, cell, solve_cell(spec, cell, run_id, root), root)


def _base_row(spec: RunSpec, cell: Cell) -> dict:
    """What every row of a cell holds, whatever became of it."""
    return {"cell": cell.index, "workload": cell.workload, "size": cell.size, "policy": cell.policy,
            "budget": math.nan if cell.budget is None else cell.budget, "suite": spec.suite, "profile": spec.profile,
            "family": workloads.get(cell.workload).family, "simulated_s": math.nan, "median_s": math.nan,
            "samples": []} | this_machine().row()


def _artifact(run_id: str, root: str, relative: str, text: str) -> str:
    """Write a run artifact (gzip for .gz) unless an earlier attempt did; its path relative to the store root."""
    path = store.run_dir(run_id, root) / relative
    return str(path.relative_to(root)) if path.exists() else artifacts.write_text(path, text, root)


def counts(run_id: str, root: str = store.DEFAULT_ROOT) -> dict:
    """The run's cells that are stored ok, stored failed, and not stored yet."""
    spec, _ = load_run(run_id, root)
    rows = store.read("cells", root, run_ids=[run_id])
    return {"cells_ok": int((rows.status == "ok").sum()), "cells_failed": int((rows.status == "failed").sum()),
            "cells_missing": len(pending(spec, run_id, root))}


def mark_fastest(rows: list[dict]) -> list[dict]:
    """`rows` (cells of one run), each with "selected": True for the fastest measured cell of its workload,
    size and budget (the unbudgeted cells form a group of their own), False for the others."""
    best: dict[tuple, tuple[float, int]] = {}
    for i, r in enumerate(rows):
        if r.get("status") == "ok" and math.isfinite(r.get("median_s", math.nan)):
            group = (r["workload"], r["size"], _budget_key(r.get("budget")))
            best[group] = min(best.get(group, (math.inf, -1)), (r["median_s"], i))
    chosen = {i for _, i in best.values()}
    return [r | {"selected": i in chosen} for i, r in enumerate(rows)]


def _budget_key(budget: Optional[float]) -> float:
    """A budget as a group key: NaN and None (no budget) as -1."""
    return -1.0 if budget is None or math.isnan(budget) else float(budget)


def run_cell(spec: RunSpec, cell: Cell, run_id: str, root: str = store.DEFAULT_ROOT) -> dict:
    """Run one cell unless its row is stored, and store its row (at most once); returns the row."""
    if cell.key in store.keys("cells", run_id, root):
        return {"cell": cell.index, "status": "done before", "skipped": True}
    return store_cell(cell_row(spec, cell, run_id, root), cell, run_id, root)


def store_cell(row: dict, cell: Cell, run_id: str, root: str = store.DEFAULT_ROOT) -> dict:
    """Write a cell's row under its key (at most once: a retry's second write is dropped); returns the row."""
    store.append("cells", [row], run_id, root, key=cell.key)
    return row


def is_measuring(cell: Cell, backend: str) -> bool:
    """Whether the cell measures on the device (every cell on an accelerator; only xla-native on the CPU)."""
    return cell.policy == NATIVE or backend != "cpu"




# --------------------------------------------------------------------------- executors


def run_local(spec: RunSpec, run_id: str, root: str = store.DEFAULT_ROOT,
              on_cell: Callable[[dict], None] = lambda row: None) -> None:
    """Run the run's pending cells one after another in this process."""
    for cell in pending(spec, run_id, root):
        on_cell(store_cell(cell_row(spec, cell, run_id, root), cell, run_id, root))


def _ray_solve(spec: RunSpec, cell: Cell, run_id: str, root: str) -> tuple[dict, Optional[Mapping]]:
    return solve_cell(spec, cell, run_id, root)


def _ray_measure(spec: RunSpec, cell: Cell, solved: tuple[dict, Optional[Mapping]], run_id: str, root: str) -> dict:
    return store_cell(measure_cell(spec, cell, solved, root), cell, run_id, root)


def ray_resources(cell: Cell, backend: str) -> dict:
    """The Ray task options of a cell's measuring half: the device for a cell measured on an accelerator,
    else one CPU (its solving half always asks for one CPU)."""
    if is_measuring(cell, backend) and device_kind(backend) == "gpu":
        return {"num_gpus": 1, "num_cpus": 1}
    if is_measuring(cell, backend) and backend == "tpu":
        return {"resources": {"TPU": 1}, "num_cpus": 1}
    return {"num_cpus": 1}


def run_ray(spec: RunSpec, run_id: str, root: str = store.DEFAULT_ROOT, address: Optional[str] = None,
            on_cell: Callable[[dict], None] = lambda row: None, task: Callable[..., dict] = _ray_measure,
            backend: Optional[str] = None) -> None:
    """Run the pending cells as Ray tasks (retried when a worker dies) on the cluster at `address` (None: the
    one this process is connected to, or a new local one): each cell's solving half on a CPU, then its
    measuring half, `task(spec, cell, solved, run_id, root)`, which stores the row, on the device."""
    import ray

    started = not ray.is_initialized()
    if started:
        with warnings.catch_warnings():  # Ray starts its processes by fork + exec: safe beside JAX's threads
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    backend = backend or jax.default_backend()
    root = os.path.abspath(root)
    solver = ray.remote(max_retries=3, num_cpus=1)(_ray_solve)
    measurer = ray.remote(max_retries=3)(task)
    try:
        refs = {measurer.options(**ray_resources(c, backend)).remote(
                    spec, c, solver.remote(spec, c, run_id, root), run_id, root): c
                for c in pending(spec, run_id, root)}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            cell = refs.pop(ready[0])
            try:
                on_cell(ray.get(ready[0]))
            except (ray.exceptions.RayError, OSError) as err:  # retries exhausted: the cell is recorded as failed
                row = _executor_failure(spec, cell, err)
                store.append("cells", [row], run_id, root, key=cell.key)
                on_cell(row)
    finally:
        if started:
            ray.shutdown()


def _executor_failure(spec: RunSpec, cell: Cell, err: BaseException) -> dict:
    return _base_row(spec, cell) | {"status": "failed", "stage": "executor", "error": f"{type(err).__name__}: {err}"}


EXECUTORS = ("local", "ray")
