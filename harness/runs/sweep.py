"""The hardware loop over a suite: extract, solve, realize, measure, predict, store.

For each workload and size, the scoped program is extracted once; each policy
makes a mapping at each budget; `select` measures the budget's candidates on the
local device and marks the fastest (its measured time is the mapping's reward);
the simulator's prediction is stored beside every measurement. Instances and
mappings are written into the run's folder, so calibration can re-simulate any
row later. A workload or policy that fails is stored as failed and the sweep
goes on.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import time
import traceback
from pathlib import Path
from typing import Callable, Optional, Sequence

import jax

import workloads
from agent.registry import solve
from harness.results import store
from harness.xla.instance import Instance
from harness.model.mapping import Mapping, capacity, validate
from harness.device.timing import environment
from harness.model.profiles import Profile
from harness.device.realization import NATIVE, extract_linked
from harness.device.selection import select
from harness.model.simulator import simulate

UNBUDGETED = (NATIVE, "all-fast")  # policies measured once per program, without a budget


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """What one sweep measures."""

    workloads: tuple[str, ...]
    sizes: tuple[str, ...]
    policies: tuple[str, ...]
    budgets: tuple[float, ...]
    profile: Profile
    seed: int = 0
    solve_time_limit: float = 30.0
    measure_time_limit: float = 5.0


def run_sweep(spec: SweepSpec, root: str = store.DEFAULT_ROOT, label: str = "sweep",
              on_row: Callable[[dict], None] = lambda row: None) -> str:
    """Measure every (workload, size, policy, budget) cell of `spec`; returns the run id."""
    env = environment()
    run_id = store.start_run({
        "kind": "sweep", "workloads": list(spec.workloads), "sizes": list(spec.sizes),
        "policies": list(spec.policies), "budgets": list(spec.budgets), "profile": spec.profile.name,
        "backend": jax.default_backend(), **{k: env[k] for k in ("device_kind", "jax_version", "git_commit", "host")},
    }, root, run_id=store.new_run_id(label))
    n_rows = 0
    try:
        for name in spec.workloads:
            for size in spec.sizes:
                for row in _program_rows(spec, name, size, run_id, root):
                    store.append("measurements", [row], run_id, root)
                    if "predicted_s" in row:
                        store.append("predictions", [_prediction(row)], run_id, root)
                    n_rows += 1
                    on_row(row)
    except BaseException:
        store.finish_run(run_id, root, status="interrupted", rows=n_rows)
        raise
    store.finish_run(run_id, root, rows=n_rows)
    return run_id


def _prediction(row: dict) -> dict:
    keys = ("workload", "size", "policy", "budget", "profile", "predicted_s")
    return {k: row[k] for k in keys}


def _program_rows(spec: SweepSpec, name: str, size: str, run_id: str, root: str):
    """The rows of one program, a group (the unbudgeted policies, then each budget) at a time."""
    base = {"workload": name, "size": size, "profile": spec.profile.name}
    try:
        fn, args = workloads.get(name).build(size)
        instance, program, _ = extract_linked(fn, args, f"{name}/{size}")
    except Exception as err:  # a workload that does not build or compile is recorded, the rest goes on
        for policy in spec.policies:
            yield _failed(base, policy, None, f"extract: {_error(err)}")
        return
    instance_file = write_text(Path(store.run_dir(run_id, root)) / "instances" / f"{name}@{size}.json.gz",
                           instance.to_json(), root)
    groups = [(None, [p for p in spec.policies if p in UNBUDGETED])]
    groups += [(b, [p for p in spec.policies if p not in UNBUDGETED]) for b in spec.budgets]
    for budget, policies in groups:
        mappings, rows = {}, {}
        for policy in policies:
            try:
                t0 = time.perf_counter()
                mapping = _mapping(instance, spec, policy, budget)
                solve_s = time.perf_counter() - t0
            except Exception as err:  # e.g. a solver that cannot run: record it, measure the others
                yield _failed(base, policy, budget, f"solve: {_error(err)}")
                continue
            tag = f"{name}@{size}@{policy}@{budget if budget is not None else 'none'}"
            mapping_file = write_text(Path(store.run_dir(run_id, root)) / "mappings" / f"{tag}.json", mapping.to_json(), root)
            mappings[policy] = mapping
            rows[policy] = base | {
                "policy": policy, "budget": math.nan if budget is None else float(budget),
                "budget_bytes": capacity(instance, spec.profile, budget) if budget is not None else -1,
                "predicted_s": simulate(instance, mapping, spec.profile), "solve_s": solve_s,
                "instance_file": instance_file, "mapping_file": mapping_file,
            }
        if not mappings:
            continue
        chosen = select(fn, args, instance, mappings, program=program, time_limit_s=spec.measure_time_limit)
        for policy, row in rows.items():
            m, report = chosen.measurements[policy], chosen.reports[policy]
            yield row | m.row() | {
                "realizable": report.realizable, "realize_note": report.reason,
                "offloaded_values": len(report.offloaded_values), "unlinked_bytes": report.unlinked_bytes,
                "linked_share": report.linked_share, "selected": policy == chosen.best,
                "reward_s": chosen.reward_s if policy == chosen.best else math.nan,
            }


def _mapping(instance: Instance, spec: SweepSpec, policy: str, budget: Optional[float]) -> Mapping:
    """The validated mapping of `policy`; `xla-native` is simulated as everything in fast memory."""
    if policy == NATIVE:
        fast = solve(instance, spec.profile, None, "all-fast")
        return dataclasses.replace(fast, policy=NATIVE)
    mapping = solve(instance, spec.profile, budget, policy, seed=spec.seed, time_limit=spec.solve_time_limit)
    validate(instance, mapping, spec.profile, budget)
    return mapping


def _failed(base: dict, policy: str, budget: Optional[float], error: str) -> dict:
    return base | {"policy": policy, "budget": math.nan if budget is None else float(budget),
                   "status": "failed", "error": error, "median_s": math.nan, "samples": []}


def _error(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=2)}"


def write_text(path: Path, text: str, root: str) -> str:
    """Write a run artifact atomically (gzip for .gz); returns its path relative to the store root."""
    data = text.encode()
    store.write_bytes(path, gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return str(path.relative_to(root))


def read_text(root: str, relative: str) -> str:
    """Text of a run artifact written by the sweep (gunzipped for .gz)."""
    path = Path(root) / relative
    data = path.read_bytes()
    return (gzip.decompress(data) if path.suffix == ".gz" else data).decode()


def parse_list(text: str, what: str, valid: Optional[Sequence[str]] = None) -> tuple[str, ...]:
    """A comma-separated CLI list; unknown items are named with the valid ones."""
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    if not items:
        raise ValueError(f"{what}: empty list")
    if valid is not None:
        bad = [t for t in items if t not in valid]
        if bad:
            raise ValueError(f"unknown {what} {bad[0]!r}; valid: {', '.join(valid)}")
    return items

