"""The nightly run: every cell of a suite's grid, then calibration, history and the report.

`make_spec` checks and completes what a night covers (defaults: every workload of the
suite, `default_policies()`, budgets 0.25/0.5/0.75, the local backend's profile); the
cells run through `harness.runs.cells`; `finish` calibrates the profile on the measured
cells and closes the run.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from agent.muzero.policy import SHIPPED
from harness.device.realization import NATIVE
from harness.model.profiles import device_kind, load_profile
from harness.results import artifacts, store
from harness.runs import cells
from harness.runs.calibration import CalibrationError, calibrate, points_from_store, report_json

DEFAULT_BUDGETS = (0.25, 0.5, 0.75)
KIND = "nightly"


def default_policies() -> tuple[str, ...]:
    """all-slow, xla-msa, xla-native, cpsat, mallocmuzero (where its shipped checkpoint is present), all-fast."""
    agent = ("mallocmuzero",) if (SHIPPED / "config.json").is_file() else ()
    return ("all-slow", "xla-msa", NATIVE, "cpsat", *agent, "all-fast")


def make_spec(suite: str = "ci", workload_names: Optional[Iterable[str]] = None,
              policies: Optional[Iterable[str]] = None, budgets: Optional[Iterable[float]] = None,
              profile: Optional[str] = None, **options: Any) -> cells.RunSpec:
    """A checked nightly spec (`cells.make_spec`) at the suite's own size. Defaults: every workload of the
    suite, `default_policies()`, 0.25/0.5/0.75 and the profile of the local backend."""
    return cells.make_spec("nightly", suite, workload_names, policies or default_policies(),
                           budgets or DEFAULT_BUDGETS, profile, sizes=(suite,), **options)


def calibrate_run(run_id: str, root: str = store.DEFAULT_ROOT) -> Optional[dict]:
    """Fit the run's profile to its measured cells and write runs/<run>/calibration.json; the report, or a
    dict whose "skipped" says why not: too few measured points, or a profile of another kind of device than
    the one measured (a TPU profile is not fitted to CPU timings)."""
    spec, manifest = cells.load_run(run_id, root)
    profile = load_profile(spec.profile)
    measured_on = device_kind(manifest.get("backend", ""))
    if profile.backend != measured_on:
        return {"skipped": f"profile {profile.name} describes a {profile.backend}, the cells were measured on a "
                           f"{measured_on}: nothing to fit it to"}
    points, run_ids = points_from_store(root, [run_id])
    if len({p.workload for p in points}) < 2:
        return {"skipped": f"{len(points)} measured cells: calibration needs measurements of two workloads"}
    try:
        report = calibrate(points, profile, run_ids).report
    except CalibrationError as err:
        return {"skipped": str(err)}
    artifacts.write_bytes(store.run_dir(run_id, root) / "calibration.json", report_json(report))
    return report


def finish(run_id: str, root: str = store.DEFAULT_ROOT) -> dict:
    """Close a run whose cells are all stored: calibrate, mark the manifest finished with the cell counts
    (or "incomplete" if cells are missing); returns the counts and the calibration figures."""
    counts = cells.counts(run_id, root)
    missing = counts["cells_missing"]
    calibration = calibrate_run(run_id, root) if not missing else None
    if calibration and "skipped" not in calibration:
        counts |= {"calibration_mape": calibration["mape"], "calibration_kendall_tau": calibration["kendall_tau"]}
    store.finish_run(run_id, root, status="incomplete" if missing else "finished", **counts)
    return counts | {"calibration": calibration}
