"""The nightly run: a grid of cells (workload x policy x budget), each run once and stored as it finishes.

A cell extracts its workload's program (cached on disk by the hash of the compiled
program, and in memory per process), maps it with its policy at its budget,
validates and simulates the mapping, realizes it and measures it on the local
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
import functools
import gzip
import hashlib
import math
import os
import re
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import jax

import workloads
from agent.registry import policies as known_policies
from agent.registry import solve
from harness.results import store
from harness.xla.instance import SCHEMA_VERSION as INSTANCE_SCHEMA, Instance
from harness.xla.link import jit, trace
from harness.model.mapping import Mapping, capacity, validate
from harness.device.timing import measure
from harness.model.profiles import Profile, default_profile, load_profile, profile_names
from harness.device.realization import NATIVE, realize
from harness.xla.extraction import from_compiled
from harness.model.simulator import simulate
from harness.runs.sweep import UNBUDGETED, write_text

DEFAULT_BUDGETS = (0.25, 0.5, 0.75)
KIND = "nightly"


def default_policies() -> tuple[str, ...]:
    """all-slow, xla-msa, xla-native, cpsat, mallocmuzero (where its shipped checkpoint is present), all-fast."""
    from agent.muzero.policy import SHIPPED

    agent = ("mallocmuzero",) if (SHIPPED / "config.json").is_file() else ()
    return ("all-slow", "xla-msa", NATIVE, "cpsat", *agent, "all-fast")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One point of the grid: a workload under a policy at a budget (None for the unbudgeted policies)."""

    index: int
    workload: str
    policy: str
    budget: Optional[float]

    @property
    def key(self) -> str:
        """The store key of the cell's row."""
        return f"cell-{self.index:05d}"


@dataclasses.dataclass(frozen=True)
class NightlySpec:
    """What a nightly run covers; stored in its manifest, so that a resume or a single cell rebuilds it."""

    suite: str
    workloads: tuple[str, ...]
    policies: tuple[str, ...]
    budgets: tuple[float, ...]
    profile: str
    size: str = "ci"
    seed: int = 0
    solve_time_limit: float = 10.0
    measure_time_limit: float = 3.0

    def cells(self) -> tuple[Cell, ...]:
        """Every cell, numbered: per workload, the unbudgeted policies, then each budget's policies."""
        grid = []
        for name in self.workloads:
            grid += [(name, p, None) for p in self.policies if p in UNBUDGETED]
            grid += [(name, p, b) for b in self.budgets for p in self.policies if p not in UNBUDGETED]
        return tuple(Cell(i, *c) for i, c in enumerate(grid))

    def meta(self) -> dict:
        """The manifest keys of this spec."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @staticmethod
    def from_manifest(manifest: dict) -> "NightlySpec":
        """The spec a nightly run's manifest holds; StoreError if the run is not a nightly run."""
        if manifest.get("kind") != KIND:
            raise store.StoreError(f"run {manifest.get('run_id')!r} is a {manifest.get('kind')!r} run, not a "
                                   f"nightly run")
        fields = {f.name for f in dataclasses.fields(NightlySpec)}
        return NightlySpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in manifest.items() if k in fields})


def make_spec(suite: str = "ci", workload_names: Optional[Iterable[str]] = None,
              policies: Optional[Iterable[str]] = None, budgets: Optional[Iterable[float]] = None,
              profile: Optional[str] = None, **options: Any) -> NightlySpec:
    """A checked spec; unknown suites, workloads, policies or profiles and bad budgets raise ValueError
    naming the valid ones. Defaults: every workload of the suite, `default_policies()`, 0.25/0.5/0.75 and
    the profile of the local backend."""
    suite_names = workloads.names(suite)  # ValueError listing the suites
    names = tuple(dict.fromkeys(workload_names)) if workload_names else tuple(suite_names)  # each once
    valid_policies = [NATIVE] + known_policies()
    chosen = tuple(dict.fromkeys(policies)) if policies else default_policies()
    for what, items, valid in (("workload", names, suite_names), ("policy", chosen, valid_policies)):
        bad = [x for x in items if x not in valid]
        if bad:
            raise ValueError(f"unknown {what} {bad[0]!r}; valid: {', '.join(valid)}")
    budgets = tuple(dict.fromkeys(float(b) for b in budgets)) if budgets else DEFAULT_BUDGETS
    for b in budgets:
        if not 0 < b <= 1:
            raise ValueError(f"budget {b}: must be in (0, 1], a fraction of peak live bytes")
    profile = profile or default_profile(jax.default_backend())
    if profile not in profile_names():
        raise ValueError(f"unknown profile {profile!r}; valid: {', '.join(profile_names())}")
    return NightlySpec(suite, names, chosen, budgets, profile, size=suite, **options)


def plan(spec: NightlySpec, root: str = store.DEFAULT_ROOT, executor: str = "local") -> str:
    """Start a nightly run of `spec` in the store (its manifest holds the spec) and return its id."""
    from harness.device.timing import environment

    env = environment()
    meta = spec.meta() | {"kind": KIND, "n_cells": len(spec.cells()), "executor": executor,
                          "backend": jax.default_backend()}
    meta |= {k: env[k] for k in ("device_kind", "jax_version", "git_commit", "host")}
    return store.start_run(meta, root, run_id=store.new_run_id(f"{KIND}-{spec.suite}"))


def load_run(run_id: str, root: str = store.DEFAULT_ROOT) -> tuple[NightlySpec, dict]:
    """The spec and manifest of a stored nightly run; StoreError naming the run when there is none."""
    manifest = store.read_manifest(run_id, root)
    return NightlySpec.from_manifest(manifest), manifest


def pending(spec: NightlySpec, run_id: str, root: str = store.DEFAULT_ROOT) -> list[Cell]:
    """The cells of the run that have no stored row yet."""
    done = store.keys("cells", run_id, root)
    return [c for c in spec.cells() if c.key not in done]


# --------------------------------------------------------------------------- programs (cached extraction)


@dataclasses.dataclass(frozen=True)
class Program:
    """A workload's function, arguments, scoped program and instance, with the hash of its compiled program."""

    fn: Callable[..., Any]
    args: tuple
    program: Any
    instance: Instance
    program_hash: str
    cached: bool


_LOCATION_TABLES = re.compile(r"^(?:FileNames|FunctionNames|FileLocations|StackFrames)\n(?:.+\n)*", re.M)
_SOURCE_INFO = re.compile(r' (?:stack_frame_id=\d+|source_(?:file="[^"]*"|(?:end_)?(?:line|column)=\d+))')


def program_hash(compiled_text: str, name: str) -> str:
    """The hash of a compiled program's HLO text without its Python source locations (which name the caller's
    lines, not the program), salted with the JAX version, backend, instance schema and workload name."""
    text = _SOURCE_INFO.sub("", _LOCATION_TABLES.sub("", compiled_text))
    salt = f"{jax.__version__}|{jax.default_backend()}|{INSTANCE_SCHEMA}|{name}\n"
    return hashlib.sha256((salt + text).encode()).hexdigest()[:32]


def _cache_path(root: str, program_hash: str) -> Path:
    return Path(root) / "cache" / "extractions" / f"{program_hash}.json.gz"


@functools.lru_cache(maxsize=8)
def load_program(name: str, size: str, root: str) -> Program:
    """Build, trace and compile a workload; its instance comes from the extraction cache when the
    compiled program (with the JAX version, backend and instance schema) hashes to a cached one."""
    fn, args = workloads.get(name).build(size)
    program = trace(fn, args)
    compiled = jit(program).lower(*args).compile()
    key = program_hash(compiled.as_text(), f"{name}/{size}")
    path = _cache_path(root, key)
    try:
        instance = Instance.from_json(gzip.decompress(path.read_bytes()).decode())
        return Program(fn, args, program, instance, key, cached=True)
    except (OSError, EOFError, ValueError):  # missing or unreadable: extract again and rewrite it
        instance = from_compiled(compiled, f"{name}/{size}")
        store.write_bytes(path, gzip.compress(instance.to_json().encode(), mtime=0))
        return Program(fn, args, program, instance, key, cached=False)


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


def _mapping(instance: Instance, spec: NightlySpec, profile: Profile, cell: Cell) -> tuple[Mapping, bool]:
    """The cell's mapping and whether it is proven optimal (cpsat only); xla-native is simulated all-fast."""
    if cell.policy == NATIVE:
        return dataclasses.replace(solve(instance, profile, None, "all-fast"), policy=NATIVE), False
    if cell.policy == "cpsat":
        from agent.heuristics.cpsat import solve_cpsat

        hint = solve(instance, profile, cell.budget, "xla-msa")
        result = solve_cpsat(instance, profile, cell.budget, time_limit=spec.solve_time_limit, hint=hint,
                             seed=spec.seed)
        return result.mapping, bool(result.optimal)
    return solve(instance, profile, cell.budget, cell.policy, seed=spec.seed, time_limit=spec.solve_time_limit), False


def solve_cell(spec: NightlySpec, cell: Cell, run_id: str, root: str = store.DEFAULT_ROOT) -> tuple[dict, Optional[Mapping]]:
    """The first half of a cell, on CPUs: extract, solve, validate, simulate. Its row so far and its mapping
    (None when a step failed: the row says which stage and why); never raises for a failing step."""
    profile = load_profile(spec.profile)
    row = _base_row(spec, cell) | {"status": "ok", "error": "", "stage": "", "optimal": False, "valid": False,
                                   "measure_note": ""}
    try:
        prog = _step("extract", lambda: load_program(cell.workload, spec.size, os.path.abspath(root)))
        row |= {"program_hash": prog.program_hash, "extraction_cached": prog.cached}
        row["instance_file"] = _artifact(run_id, root, f"instances/{cell.workload}@{spec.size}.json.gz",
                                         prog.instance.to_json())
        t0 = time.perf_counter()
        mapping, optimal = _step("solve", lambda: _mapping(prog.instance, spec, profile, cell))
        row |= {"solve_s": time.perf_counter() - t0, "optimal": optimal,
                "budget_bytes": capacity(prog.instance, profile, cell.budget) if cell.budget is not None else -1}
        _step("validate", lambda: validate(prog.instance, mapping, profile, cell.budget))
        row["valid"] = True
        row["mapping_file"] = _artifact(run_id, root, f"mappings/{cell.key}.json", mapping.to_json())
        row["simulated_s"] = _step("simulate", lambda: simulate(prog.instance, mapping, profile))
        return row, mapping
    except _Failed as failure:
        return row | {"status": "failed", "stage": failure.stage, "error": failure.detail}, None


def measure_cell(spec: NightlySpec, cell: Cell, solved: tuple[dict, Optional[Mapping]],
                 root: str = store.DEFAULT_ROOT) -> dict:
    """The second half of a cell, on the device: realize the mapping and measure it where it is realizable
    (on a one-tier backend only xla-native, the untouched program, is). The cell's full row."""
    row, mapping = solved
    if mapping is None:
        return row
    try:
        prog = _step("extract", lambda: load_program(cell.workload, spec.size, os.path.abspath(root)))
        realized = _step("realize", lambda: realize(prog.fn, prog.args, prog.instance, mapping, program=prog.program))
    except _Failed as failure:
        return row | {"status": "failed", "stage": failure.stage, "error": failure.detail}
    report = realized.report
    row = row | {"realizable": report.realizable, "offloaded_values": len(report.offloaded_values),
                 "linked_share": report.linked_share}
    if not report.realizable and cell.policy != NATIVE:
        return row | {"measure_note": f"not measured: {report.reason}; only {NATIVE} (the untouched program) is"}
    measured = measure(realized.fn, prog.args, time_limit_s=spec.measure_time_limit).row()
    return row | measured | ({"stage": "measure"} if measured["status"] != "ok" else {})


def cell_row(spec: NightlySpec, cell: Cell, run_id: str, root: str = store.DEFAULT_ROOT) -> dict:
    """Run one cell (extract, solve, validate, simulate, realize, measure) and return its row."""
    return measure_cell(spec, cell, solve_cell(spec, cell, run_id, root), root)


def _base_row(spec: NightlySpec, cell: Cell) -> dict:
    """What every row of a cell holds, whatever became of it."""
    return {"cell": cell.index, "workload": cell.workload, "size": spec.size, "policy": cell.policy,
            "budget": math.nan if cell.budget is None else cell.budget, "suite": spec.suite, "profile": spec.profile,
            "family": workloads.get(cell.workload).family, "simulated_s": math.nan, "median_s": math.nan,
            "samples": []}


def _artifact(run_id: str, root: str, relative: str, text: str) -> str:
    """Write a run artifact (gzip for .gz) unless an earlier attempt did; its path relative to the store root."""
    path = store.run_dir(run_id, root) / relative
    return str(path.relative_to(root)) if path.exists() else write_text(path, text, root)


def run_cell(spec: NightlySpec, cell: Cell, run_id: str, root: str = store.DEFAULT_ROOT) -> dict:
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


def _device(backend: str) -> str:
    """A JAX backend as the kind of device a profile names ("cpu", "gpu" or "tpu")."""
    return "gpu" if backend in ("gpu", "cuda", "rocm") else backend


# --------------------------------------------------------------------------- executors


def run_local(spec: NightlySpec, run_id: str, root: str = store.DEFAULT_ROOT,
              on_cell: Callable[[dict], None] = lambda row: None) -> None:
    """Run the run's pending cells one after another in this process."""
    for cell in pending(spec, run_id, root):
        on_cell(store_cell(cell_row(spec, cell, run_id, root), cell, run_id, root))


def _ray_solve(spec: NightlySpec, cell: Cell, run_id: str, root: str) -> tuple[dict, Optional[Mapping]]:
    return solve_cell(spec, cell, run_id, root)


def _ray_measure(spec: NightlySpec, cell: Cell, solved: tuple[dict, Optional[Mapping]], run_id: str, root: str) -> dict:
    return store_cell(measure_cell(spec, cell, solved, root), cell, run_id, root)


def ray_resources(cell: Cell, backend: str) -> dict:
    """The Ray task options of a cell's measuring half: the device for a cell measured on an accelerator,
    else one CPU (its solving half always asks for one CPU)."""
    if is_measuring(cell, backend) and _device(backend) == "gpu":
        return {"num_gpus": 1, "num_cpus": 1}
    if is_measuring(cell, backend) and backend == "tpu":
        return {"resources": {"TPU": 1}, "num_cpus": 1}
    return {"num_cpus": 1}


def run_ray(spec: NightlySpec, run_id: str, root: str = store.DEFAULT_ROOT, address: Optional[str] = None,
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


def _executor_failure(spec: NightlySpec, cell: Cell, err: BaseException) -> dict:
    return _base_row(spec, cell) | {"status": "failed", "stage": "executor", "error": f"{type(err).__name__}: {err}"}


EXECUTORS = ("local", "ray")


# --------------------------------------------------------------------------- after the cells


def calibrate_run(run_id: str, root: str = store.DEFAULT_ROOT) -> Optional[dict]:
    """Fit the run's profile to its measured cells and write runs/<run>/calibration.json; the report, or a
    dict whose "skipped" says why not: too few measured points, or a profile of another kind of device than
    the one measured (a TPU profile is not fitted to CPU timings)."""
    from harness.runs.calibration import CalibrationError, calibrate, points_from_store, report_json

    spec, manifest = load_run(run_id, root)
    profile = load_profile(spec.profile)
    measured_on = _device(manifest.get("backend"))
    if profile.backend != measured_on:
        return {"skipped": f"profile {profile.name} describes a {profile.backend}, the cells were measured on a "
                           f"{measured_on}: nothing to fit it to"}
    points, run_ids = points_from_store(root, [run_id], table="cells")
    if len({p.workload for p in points}) < 2:
        return {"skipped": f"{len(points)} measured cells: calibration needs measurements of two workloads"}
    try:
        report = calibrate(points, profile, run_ids).report
    except CalibrationError as err:
        return {"skipped": str(err)}
    store.write_bytes(store.run_dir(run_id, root) / "calibration.json", report_json(report))
    return report


def finish(run_id: str, root: str = store.DEFAULT_ROOT) -> dict:
    """Close a run whose cells are all stored: calibrate, mark the manifest finished with the cell counts
    (or "incomplete" if cells are missing); returns the counts and the calibration figures."""
    spec, _ = load_run(run_id, root)
    cells = store.read("cells", root, run_ids=[run_id])
    missing = len(pending(spec, run_id, root))
    counts = {"cells_ok": int((cells.status == "ok").sum()), "cells_failed": int((cells.status == "failed").sum()),
              "cells_missing": missing}
    calibration = calibrate_run(run_id, root) if not missing else None
    if calibration and "skipped" not in calibration:
        counts |= {"calibration_mape": calibration["mape"], "calibration_kendall_tau": calibration["kendall_tau"]}
    store.finish_run(run_id, root, status="incomplete" if missing else "finished", **counts)
    return counts | {"calibration": calibration}
