"""History over nights, step detection and regressions; `compare` of two runs.

A cell of a nightly grid is followed across the nightly runs of the same suite,
profile and machine (`harness.device.machine`: timings of two machines are never
compared unless asked, and a machine's first night has nothing to compare with). Its measured medians form a series over runs; as airspeed
velocity does, the series is fitted with a piecewise-constant level and the run
where the level changes is found (the best single change point by the L1 cost of
log medians around each side's median, kept when it lowers the cost by more than
4 sigma of the series' noise, recursing into both sides). A step up is a
regression when it is both large, the level after over the level before at least
1 + `MIN_EFFECT`, and significant: a one-sided Mann-Whitney U test of the raw
samples of the runs after against those before gives p < `ALPHA`. The simulator is
deterministic, so any increase of a cell's simulated time between consecutive
runs is a regression of that run.
"""

from __future__ import annotations

import math
import warnings
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import scipy.stats

from harness.device.machine import machine_of, same_machine
from harness.results import store

MIN_EFFECT = 0.02
ALPHA = 1e-3
SIM_TOLERANCE = 1e-9
CELL = ["workload", "size", "policy", "budget"]
_NO_BUDGET = -1.0  # NaN budgets (unbudgeted policies) as a value that compares equal
_SAME = ("suite", "device_kind", "profile")
REGRESSION_COLUMNS = [*CELL, "kind", "run_id", "previous_run_id", "before_s", "after_s", "ratio", "p_value"]


def nightly_history(root: str, manifest: dict) -> pd.DataFrame:
    """The cells of every nightly run of `manifest`'s suite, device, profile and machine that started no later
    than it, with the run's `started` time, ordered by it. Runs with a bad manifest or unreadable cells are
    skipped (unreadable part files are moved aside by the store, with a warning)."""
    ids = []
    for run_id in store.list_runs(root).run_id:
        try:
            other = store.read_manifest(run_id, root)
        except store.StoreError:
            continue
        if other.get("kind") == "nightly" and all(other.get(k) == manifest.get(k) for k in _SAME) \
                and same_machine(other, manifest) and other["started"] <= manifest["started"]:
            ids.append((other["started"], run_id))
    frames = []
    for started, run_id in sorted(ids):
        try:
            frame = store.read("cells", root, run_ids=[run_id])
        except store.StoreError as err:  # a part file of another schema: skip the run, say so
            warnings.warn(f"history: run {run_id} skipped: {err}", stacklevel=2)
            continue
        if len(frame):
            frames.append(frame.assign(started=started))
    if not frames:
        return pd.DataFrame(columns=["run_id", "started", *CELL, "simulated_s", "median_s", "samples"])
    return pd.concat(frames, ignore_index=True).sort_values(["started", "run_id", "cell"], ignore_index=True)


def _cell_key(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(budget=frame.budget.astype(float).fillna(_NO_BUDGET))


def _l1(x: np.ndarray) -> float:
    return float(np.abs(x - np.median(x)).sum()) if len(x) else 0.0


def change_points(log_medians: Sequence[float], min_size: int = 1) -> list[int]:
    """Indices where a piecewise-constant fit of the series changes level (each the first index of a new
    level), by recursive binary segmentation on the L1 cost; a split must lower the cost by more than
    4 sigma, sigma the robust noise of one point (1.4826 x the median absolute deviation of successive
    differences, over sqrt 2), so that one drifted run is not cut off as a level of its own."""
    x = np.asarray(log_medians, dtype=float)
    diffs = np.diff(x)
    mad = float(np.median(np.abs(diffs - np.median(diffs)))) if len(diffs) else 0.0
    penalty = 4.0 * 1.4826 * mad / math.sqrt(2.0) + 1e-12

    def split(lo: int, hi: int) -> list[int]:
        if hi - lo < 2 * min_size:
            return []
        whole = _l1(x[lo:hi])
        costs = [(_l1(x[lo:k]) + _l1(x[k:hi]), k) for k in range(lo + min_size, hi - min_size + 1)]
        best, k = min(costs)
        if whole - best <= penalty:
            return []
        return split(lo, k) + [k] + split(k, hi)

    return split(0, len(x))


def _measured_steps(series: pd.DataFrame, min_effect: float, alpha: float) -> list[dict]:
    """Regressions of one cell's measured series (rows ordered by run, each with samples)."""
    series = series[series.median_s.notna() & (series.median_s > 0)]
    if len(series) < 2:
        return []
    medians = series.median_s.to_numpy(float)
    cuts = change_points(np.log(medians))
    bounds = [0, *cuts, len(series)]
    found = []
    for a, k, b in zip(bounds, bounds[1:], bounds[2:]):
        before, after = float(np.median(medians[a:k])), float(np.median(medians[k:b]))
        if after / before < 1 + min_effect:
            continue
        pooled_before = np.concatenate([np.asarray(s, float) for s in series.samples.iloc[a:k]])
        pooled_after = np.concatenate([np.asarray(s, float) for s in series.samples.iloc[k:b]])
        if not len(pooled_before) or not len(pooled_after):
            continue
        p = float(scipy.stats.mannwhitneyu(pooled_before, pooled_after, alternative="less").pvalue)
        if p < alpha:
            found.append({"kind": "measured", "run_id": series.run_id.iloc[k],
                          "previous_run_id": series.run_id.iloc[k - 1], "before_s": before, "after_s": after,
                          "ratio": after / before, "p_value": p})
    return found


def _simulated_steps(series: pd.DataFrame) -> list[dict]:
    series = series[series.simulated_s.notna()]
    sim, ids = series.simulated_s.to_numpy(float), series.run_id.to_numpy()
    return [{"kind": "simulated", "run_id": ids[i], "previous_run_id": ids[i - 1], "before_s": sim[i - 1],
             "after_s": sim[i], "ratio": sim[i] / sim[i - 1], "p_value": math.nan}
            for i in range(1, len(sim)) if sim[i] > sim[i - 1] * (1 + SIM_TOLERANCE)]


def regressions(history: pd.DataFrame, min_effect: float = MIN_EFFECT, alpha: float = ALPHA) -> pd.DataFrame:
    """One row per regression found in the history (see the module docstring): the cell, its kind
    ("measured" or "simulated"), the run in which it changed and the one before, the levels before and
    after, their ratio and the test's p-value."""
    rows = []
    if len(history):
        ordered = _cell_key(history).sort_values(["started", "run_id"], kind="stable")
        for key, series in ordered.groupby(CELL, sort=True, dropna=False):
            cell = dict(zip(CELL, key))
            cell["budget"] = math.nan if cell["budget"] == _NO_BUDGET else cell["budget"]
            ok = series[series.status == "ok"]
            rows += [cell | r for r in _measured_steps(ok, min_effect, alpha) + _simulated_steps(ok)]
    return pd.DataFrame(rows, columns=REGRESSION_COLUMNS)


def _failed(row: dict) -> str:
    """"failed in A", "failed in B", "failed in both" or ""."""
    failed = [t.upper() for t in "ab" if row[f"status_{t}"] == "failed"]
    return "failed in both" if len(failed) == 2 else (f"failed in {failed[0]}" if failed else "")


def _flag(sim_a: float, sim_b: float, med_a: float, med_b: float, p: float, min_effect: float, alpha: float) -> str:
    if math.isnan(sim_a) and math.isnan(med_a):
        return "only in B"
    if math.isnan(sim_b) and math.isnan(med_b):
        return "only in A"
    if sim_b > sim_a * (1 + SIM_TOLERANCE):
        return "simulated worse"
    if med_b >= med_a * (1 + min_effect) and p < alpha:
        return "slower"
    if med_b * (1 + min_effect) <= med_a and p < alpha:
        return "faster"
    if sim_b * (1 + SIM_TOLERANCE) < sim_a:
        return "simulated better"
    return ""


def nights(history: pd.DataFrame) -> int:
    """How many runs a history holds (1: the run is its machine's first night of its suite and profile)."""
    return int(history.run_id.nunique()) if len(history) else 0


def compare(root: str, run_a: str, run_b: str, min_effect: float = MIN_EFFECT, alpha: float = ALPHA,
            across_machines: bool = False) -> pd.DataFrame:
    """Per cell of either run: simulated and measured times in A and B, the ratio B/A of the medians, a
    two-sided Mann-Whitney p-value on the raw samples and a flag ("failed in A", "failed in B", "failed in
    both", "slower", "faster", "simulated worse", "simulated better", "only in A", "only in B" or "").
    StoreError names a run that does not exist, and two runs of different machines unless `across_machines`."""
    manifests = [store.read_manifest(run_id, root) for run_id in (run_a, run_b)]
    if not across_machines and not same_machine(*manifests):
        raise store.StoreError(f"runs {run_a} and {run_b} were measured on different machines "
                               f"({machine_of(manifests[0])} and {machine_of(manifests[1])}): their timings do not "
                               "compare; pass --across-machines to compare them anyway")
    frames = []
    for tag, run_id in (("a", run_a), ("b", run_b)):
        frame = _cell_key(store.read("cells", root, run_ids=[run_id]))
        frames.append(frame[CELL + ["status", "simulated_s", "median_s", "samples"]].rename(
            columns={"status": f"status_{tag}", "simulated_s": f"simulated_{tag}", "median_s": f"median_{tag}",
                     "samples": f"samples_{tag}"}))
    both = frames[0].merge(frames[1], on=CELL, how="outer").sort_values(CELL, ignore_index=True)
    out = []
    for r in both.to_dict("records"):
        sa, sb = (r[f"samples_{t}"] if isinstance(r[f"samples_{t}"], (list, np.ndarray)) else [] for t in "ab")
        p = float(scipy.stats.mannwhitneyu(sa, sb).pvalue) if len(sa) and len(sb) else math.nan
        values = [_nan(r[c]) for c in ("simulated_a", "simulated_b", "median_a", "median_b")]
        out.append({**{c: r[c] for c in CELL}, "budget": math.nan if r["budget"] == _NO_BUDGET else r["budget"],
                    "simulated_a": values[0], "simulated_b": values[1], "median_a": values[2],
                    "median_b": values[3], "ratio": values[3] / values[2] if values[2] else math.nan,
                    "p_value": p, "flag": _failed(r) or _flag(*values, p, min_effect, alpha)})
    return pd.DataFrame(out, columns=[*CELL, "simulated_a", "simulated_b", "median_a", "median_b", "ratio",
                                      "p_value", "flag"])


def _nan(value: Optional[float]) -> float:
    return math.nan if value is None or pd.isna(value) else float(value)
