"""The nightly run: every cell of a suite's grid, then calibration, history and the report.

`make_spec` checks and completes what a night covers (defaults: every workload of the
suite, `default_policies()`, budgets 0.25/0.5/0.75, the local backend's profile); the
cells run through `harness.runs.cells`; `finish` calibrates a profile on the measured
cells and closes the run. A night is one run per profile (`default_profiles`: on a
machine without an accelerator, the two-tier profiles, every policy simulated and the
untouched programs measured; on a GPU or TPU, the profile of that device, every mapping
measured): a run is the unit the history compares night after night on one machine.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from agent.muzero.policy import SHIPPED
from agent.registry import plugins
from harness.device.realization import NATIVE
from harness.model.profiles import default_profile, device_kind, load_profile
from harness.results import artifacts, store
from harness.runs import cells
from harness.runs.calibration import CalibrationError, calibrate, points_from_store, report_json

DEFAULT_BUDGETS = (0.25, 0.5, 0.75)
KIND = "nightly"
TWO_TIER = ("tpu-v4i-cmem", "h100-offload")  # the paper's CMEM scratchpad and a GPU's HBM with host memory
_GPU_PROFILES = {"h100": "h100-offload", "h200": "h200-offload"}  # device kind (lower case) -> profile


def default_policies() -> tuple[str, ...]:
    """all-slow, xla-msa, xla-native, cpsat, mallocmuzero (where its shipped checkpoint is present), the
    installed plugin policies, all-fast."""
    agent = ("mallocmuzero",) if (SHIPPED / "config.json").is_file() else ()
    return ("all-slow", "xla-msa", NATIVE, "cpsat", *agent, *plugins(), "all-fast")


def default_profiles(backend: str, device: str = "") -> tuple[str, ...]:
    """The profiles of a night on a machine of JAX backend `backend` whose first device is of kind `device`:
    with no accelerator (the CPU has one memory tier) the two-tier profiles `TWO_TIER`, simulated; on a
    GPU the offload profile of its model (H100, H200; else the GPU default); on a TPU the TPU default."""
    kind = device_kind(backend)
    if kind == "cpu":
        return TWO_TIER
    if kind == "gpu":
        return next((p for key, p in _GPU_PROFILES.items() if key in device.lower()), default_profile(backend)),
    return default_profile(backend),


def make_spec(suite: str = "ci", workload_names: Optional[Iterable[str]] = None,
              policies: Optional[Iterable[str]] = None, budgets: Optional[Iterable[float]] = None,
              profile: Optional[str] = None, **options: Any) -> cells.RunSpec:
    """A checked nightly spec (`cells.make_spec`) at the suite's own size. Defaults: every workload of the
    suite, `default_policies()`, 0.25/0.5/0.75 and the profile of the local backend."""
    return cells.make_spec("nightly", suite, workload_names, policies or default_policies(),
                           budgets or DEFAULT_BUDGETS, profile, sizes=(suite,), **options)


def calibrate_run(run_id: str, root: str = store.DEFAULT_ROOT) -> Optional[dict]:
    """Fit a profile of the measured device to the run's measured cells and write runs/<run>/calibration.json:
    the run's profile where it describes that kind of device, else the device's default profile (a TPU
    profile is not fitted to CPU timings; the CPU's own profile is, on the untouched programs: the compute
    side). The report (its "profile" names the one fitted), or a dict whose "skipped" says why not: measured
    cells of fewer than two workloads, or no profile of the measured device. With fewer points than figures
    to fit, no figure is fitted: the report scores the profile as it is, and its "not_fitted" says why."""
    spec, manifest = cells.load_run(run_id, root)
    backend = manifest.get("backend", "")
    profile = load_profile(spec.profile)
    if profile.backend != device_kind(backend):
        try:
            profile = load_profile(default_profile(backend))
        except ValueError as err:
            return {"skipped": f"profile {spec.profile} describes a {profile.backend}; {err}"}
    points, run_ids = points_from_store(root, [run_id])
    if len({p.workload for p in points}) < 2:
        return {"skipped": f"{profile.name}: {len(points)} measured cells: calibration needs measurements of two "
                           "workloads"}
    try:
        report = calibrate(points, profile, run_ids).report
    except CalibrationError as err:
        try:
            report = calibrate(points, profile, run_ids, free=()).report | {"not_fitted": str(err)}
        except CalibrationError as again:
            return {"skipped": f"{profile.name}: {again}"}
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
