"""Fit a profile's free figures to measured run times, and report the simulator's accuracy.

Predictions come from `harness.simulate` (the one cost model). The fit is a robust
(soft-L1) least squares on log time over the figures in log space, from the prior
profile. Accuracy is reported over the fitted points and under leave-one-workload-out
(each workload predicted by a profile fitted on the others), beside the measurement
noise, together with the decision quality users care about: the top-1 slowdown, the
measured time of the mapping the simulator ranks first over the fastest measured one,
per program and budget.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import scipy.optimize
import scipy.stats

from harness.device.machine import machine_of
from harness.results import artifacts, store
from harness.xla.instance import Instance
from harness.model.mapping import Mapping
from harness.model.profiles import Profile, from_dict
from harness.model.simulator import simulate

FIGURES = ("flop_rate", "vector_flop_rate", "transcendental_rate", "fast_bandwidth", "slow_bandwidth", "copy_bandwidth",
           "op_overhead_seconds")


class CalibrationError(ValueError):
    """Calibration input that cannot be fitted; the message names what is wrong."""


@dataclasses.dataclass(frozen=True)
class Point:
    """One measured run of one mapping."""

    workload: str
    size: str
    policy: str
    budget: Optional[float]  # None for unbudgeted policies
    instance: Instance
    mapping: Mapping
    measured_s: float  # median seconds per call
    noise: float  # relative noise of that median: CI half-width over the median
    run_id: str

    @property
    def group(self) -> str:
        """The decision a simulator ranks mappings for: one program at one budget, in one run."""
        budget = "none" if self.budget is None else f"{self.budget:g}"
        return f"{self.workload}/{self.size}/{budget}@{self.run_id}"


@dataclasses.dataclass(frozen=True)
class Calibration:
    """A fitted profile, its prior, the runs it was fitted on and the accuracy report."""

    prior: Profile
    fitted: Profile
    run_ids: tuple[str, ...]
    report: dict


def free_figures(prior: Profile, points: Sequence[Point]) -> tuple[str, ...]:
    """The figures the points can identify.

    The matmul flop rate where some op has dots or convolutions; the vector flop
    rate, fast bandwidth and per-op overhead always; the transcendental
    rate where some op has transcendentals; the slow (direct) or copy (offload)
    bandwidth only where some mapping leaves a buffer slow on a two-tier profile.
    A one-tier profile keeps slow = copy = fast bandwidth tied.
    """
    free = ["flop_rate"] if any(op.matmul_flops for p in points for op in p.instance.ops) else []
    free.append("vector_flop_rate")
    if any(op.transcendentals for p in points for op in p.instance.ops):
        free.append("transcendental_rate")
    free += ["fast_bandwidth", "op_overhead_seconds"]
    any_slow = any(len(p.mapping.offsets) < len(p.instance.buffers) for p in points)
    if any_slow and not prior.one_tier:
        free.append("copy_bandwidth" if prior.memory_model == "offload" else "slow_bandwidth")
    return tuple(free)


def _with(prior: Profile, free: Sequence[str], log_values: np.ndarray) -> Profile:
    values = {name: float(np.exp(v)) for name, v in zip(free, log_values)}
    if prior.one_tier and "fast_bandwidth" in values:
        values["slow_bandwidth"] = values["copy_bandwidth"] = values["fast_bandwidth"]
    return dataclasses.replace(prior, **values)


def _check(points: Sequence[Point]) -> None:
    if not points:
        raise CalibrationError("no points to calibrate on (no successful measurements in the runs)")
    for p in points:
        if not (p.measured_s > 0 and math.isfinite(p.measured_s)):
            raise CalibrationError(f"point {p.group} ({p.policy}, run {p.run_id}): measured time {p.measured_s!r} "
                                   "is not a positive number")


def predict(points: Sequence[Point], profile: Profile) -> np.ndarray:
    """Simulated seconds of each point on `profile`."""
    return np.array([simulate(p.instance, p.mapping, profile) for p in points])


def fit(points: Sequence[Point], prior: Profile, free: Optional[Sequence[str]] = None) -> Profile:
    """The prior with its free figures fitted to the points (robust least squares on log time)."""
    _check(points)
    free = tuple(free) if free is not None else free_figures(prior, points)
    unknown = [f for f in free if f not in FIGURES]
    if unknown:
        raise CalibrationError(f"unknown figure {unknown[0]!r} to fit; figures: {', '.join(FIGURES)}")
    if len(points) < len(free):
        raise CalibrationError(f"{len(points)} points cannot fit {len(free)} figures ({', '.join(free)})")
    measured = np.log([p.measured_s for p in points])
    start = np.log([getattr(prior, f) for f in free])

    def residuals(x: np.ndarray) -> np.ndarray:
        return np.log(predict(points, _with(prior, free, x))) - measured

    result = scipy.optimize.least_squares(
        residuals, start, bounds=(start - math.log(1e3), start + math.log(1e3)), loss="soft_l1", f_scale=0.1,
        diff_step=1e-3, x_scale=1.0, max_nfev=200)
    return _with(prior, free, result.x)


def _kendall(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return math.nan
    return float(scipy.stats.kendalltau(a, b).statistic)


def evaluate(points: Sequence[Point], predicted: np.ndarray) -> dict:
    """MAPE, Kendall tau (all points and within each workload), top-1 slowdown per group, noise."""
    measured = np.array([p.measured_s for p in points])
    within = {}
    for w in sorted({p.workload for p in points}):
        idx = [i for i, p in enumerate(points) if p.workload == w]
        within[w] = _kendall(measured[idx], predicted[idx])
    top1 = {}
    for g in sorted({p.group for p in points}):
        idx = [i for i, p in enumerate(points) if p.group == g]
        ranked_first = min(idx, key=lambda i: predicted[i])
        top1[g] = float(measured[ranked_first] / measured[idx].min())
    values = np.array(list(top1.values()))
    taus = [t for t in within.values() if not math.isnan(t)]
    return {
        "mape": float(np.mean(np.abs(predicted - measured) / measured)),
        "kendall_tau": _kendall(measured, predicted),
        "kendall_tau_within": float(np.mean(taus)) if taus else math.nan,
        "kendall_tau_per_workload": within,
        "top1_slowdown": {"per_group": top1, "max": float(values.max()),
                          "geomean": float(np.exp(np.mean(np.log(values)))),
                          "groups_with_choice": sum(1 for g in top1 if sum(p.group == g for p in points) > 1)},
        "noise": float(np.median([p.noise for p in points])),
    }


def calibrate(points: Sequence[Point], prior: Profile, run_ids: Sequence[str]) -> Calibration:
    """Fit on all points, then leave each workload out in turn, and report both."""
    _check(points)
    free = free_figures(prior, points)
    fitted = fit(points, prior, free)
    predicted = predict(points, fitted)
    lowo = np.empty(len(points))
    for w in sorted({p.workload for p in points}):
        inside = [p for p in points if p.workload != w]
        idx = [i for i, p in enumerate(points) if p.workload == w]
        profile = fit(inside, prior, free) if len(inside) >= len(free) else prior
        lowo[idx] = predict([points[i] for i in idx], profile)
    fitted_eval, lowo_eval = evaluate(points, predicted), evaluate(points, lowo)
    prior_eval = evaluate(points, predict(points, prior))
    runs = tuple(sorted(set(run_ids)))
    fitted = _named_fitted(prior, fitted, free, runs)
    report = {
        "profile": prior.name, "fitted_profile": fitted.name, "n_points": len(points),
        "n_workloads": len({p.workload for p in points}), "free": list(free),
        "mape": fitted_eval["mape"], "kendall_tau": fitted_eval["kendall_tau"],
        "kendall_tau_within": fitted_eval["kendall_tau_within"],
        "lowo_mape": lowo_eval["mape"], "lowo_kendall_tau": lowo_eval["kendall_tau"],
        "lowo_kendall_tau_within": lowo_eval["kendall_tau_within"],
        "top1_slowdown": fitted_eval["top1_slowdown"], "lowo_top1_slowdown": lowo_eval["top1_slowdown"],
        "noise": fitted_eval["noise"], "prior_mape": prior_eval["mape"], "prior_kendall_tau": prior_eval["kendall_tau"],
        "kendall_tau_per_workload": fitted_eval["kendall_tau_per_workload"],
        "figures": {f: {"prior": getattr(prior, f), "fitted": getattr(fitted, f)} for f in FIGURES},
        "run_ids": list(runs),
        "points": [{"workload": p.workload, "size": p.size, "policy": p.policy, "budget": p.budget,
                    "measured_s": p.measured_s, "predicted_s": float(pr), "lowo_predicted_s": float(lo),
                    "noise": p.noise, "run_id": p.run_id} for p, pr, lo in zip(points, predicted, lowo)],
    }
    return Calibration(prior, fitted, runs, report)


def _named_fitted(prior: Profile, fitted: Profile, free: Sequence[str], runs: Sequence[str]) -> Profile:
    source = f"measurement: fitted by mallocbench calibrate on runs {', '.join(runs)}"
    sources = dict(prior.sources) | {f: source for f in free}
    if prior.one_tier and "fast_bandwidth" in free:
        sources |= {"slow_bandwidth": source + " (tied to fast_bandwidth: one tier)",
                    "copy_bandwidth": source + " (tied to fast_bandwidth: one tier)"}
    profile = dataclasses.replace(
        fitted, name=f"{prior.name}-fitted", sources=sources,
        description=f"{prior.description} Fitted to the measurements of runs {', '.join(runs)}.")
    return from_dict(profile.to_dict(), f"fitted profile {profile.name}")


def write(calibration: Calibration, results_dir: str = "results", profiles_dir: Optional[str] = None) -> dict[str, Path]:
    """Write the report (JSON), the scatter plot (PNG) and the fitted profile beside the prior."""
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = calibration.prior.name
    out = Path(results_dir) / "calibration"
    profiles = Path(profiles_dir) if profiles_dir else Path(__file__).resolve().parents[1] / "profiles"
    paths = {"report": out / f"{name}.json", "plot": out / f"{name}.png",
             "profile": profiles / f"{calibration.fitted.name}.json"}
    report = calibration.report
    artifacts.write_bytes(paths["report"], report_json(report))
    artifacts.write_bytes(paths["profile"], calibration.fitted.to_json().encode())

    measured = np.array([p["measured_s"] for p in report["points"]])
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter(measured, [p["predicted_s"] for p in report["points"]], s=18, label="fitted on all points")
    ax.scatter(measured, [p["lowo_predicted_s"] for p in report["points"]], s=18, marker="x",
               label="leave one workload out")
    lo, hi = measured.min() / 3, measured.max() * 3
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, label="y = x")
    ax.set(xscale="log", yscale="log", xlabel="measured seconds", ylabel="predicted seconds",
           title=f"{name}: MAPE {report['mape']:.1%} (LOWO {report['lowo_mape']:.1%}), "
                 f"tau {report['kendall_tau']:.2f} (LOWO {report['lowo_kendall_tau']:.2f})")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    artifacts.write_bytes(paths["plot"], buffer.getvalue())
    return paths


def report_json(report: dict) -> bytes:
    """A calibration report as the JSON file `write` and the nightly store (numpy scalars as numbers)."""
    return (json.dumps(report, indent=1, default=_json_default) + "\n").encode()


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def points_from_store(root: str = "results", run_ids: Optional[Sequence[str]] = None) -> tuple[list[Point], list[str]]:
    """The successful measurements of the runs as points, and the run ids they come from: the "cells" of runs
    of cells (nightly, measure) and the "measurements" of the sweeps that came before them. CalibrationError
    when the runs were measured on more than one machine (a profile describes one machine's timings)."""
    ids = list(run_ids) if run_ids else None
    frame = pd.concat([store.read(table, root, run_ids=ids) for table in ("cells", "measurements")],
                      ignore_index=True)
    if frame.empty:
        raise CalibrationError(f"no measured rows in runs {', '.join(ids) if ids else 'of the store'}")
    frame = frame[(frame.status == "ok") & frame.median_s.notna()]
    machines = {run_id: machine_of(store.read_manifest(run_id, root)) for run_id in frame.run_id.unique()}
    if len(set(machines.values())) > 1:
        found = ", ".join(f"{run_id} on {machine}" for run_id, machine in sorted(machines.items()))
        raise CalibrationError(f"the runs were measured on different machines ({found}); calibrate on the runs of "
                               "one machine")
    instances: dict[str, Instance] = {}
    points = []
    for row in frame.to_dict("records"):
        for column in ("instance_file", "mapping_file"):
            if not isinstance(row.get(column), str):
                raise CalibrationError(f"run {row['run_id']}: row {row['workload']}/{row['size']} has no {column}")
        if row["instance_file"] not in instances:
            instances[row["instance_file"]] = Instance.from_json(artifacts.read_text(root, row["instance_file"]))
        budget = row["budget"]
        noise = (row["ci_high_s"] - row["ci_low_s"]) / 2 / row["median_s"]
        points.append(Point(
            workload=row["workload"], size=row["size"], policy=row["policy"],
            budget=None if budget is None or math.isnan(budget) else float(budget),
            instance=instances[row["instance_file"]], mapping=Mapping.from_json(artifacts.read_text(root, row["mapping_file"])),
            measured_s=float(row["median_s"]), noise=float(noise) if math.isfinite(noise) else math.nan,
            run_id=row["run_id"]))
    return points, sorted({p.run_id for p in points})
