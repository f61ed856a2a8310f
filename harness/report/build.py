"""The paper-style report of a nightly run: tables (Markdown, LaTeX, CSV), plots (PNG, SVG) and an HTML page.

Per budget, one table of simulated times per workload — the XLA default (`xla-msa`),
each policy, the optimum where CP-SAT proves it, all-fast — with each policy's speedup
over the XLA default and its share of the possible improvement captured,
(t_xla - t_policy) / (t_xla - t_all-fast); one of measured times, with `xla-native`
as the XLA default on hardware; a geometric-mean row; the AlphaTensor workloads in
tables of their own. Plots: speedups per workload and policy, predicted against
measured (y = x, the calibration's figures), the memory map of the best mapping
beside the XLA default's, and history lines over nights. Everything lands in
`<root>/reports/<run>/` beside `index.html`; `write_index` links the runs' pages.
"""

from __future__ import annotations

import io
import json
import math
import os
import warnings
from pathlib import Path
from typing import Optional

import jinja2
import matplotlib.ticker
import numpy as np
import pandas as pd

from harness.device.machine import machine_label, machine_of
from harness.humanize import human_budget
from harness.results import artifacts, store
from harness.runs.history import nights
from harness.xla.instance import Instance
from harness.model.mapping import Mapping
from harness.device.realization import NATIVE
from harness.results.artifacts import read_text

XLA_SIM, FLOOR = "xla-msa", "all-fast"
SUMMARY = "geometric mean"  # the label of a table's summary row
ROOM = 1e-3  # the least room, t_xla - t_all-fast relative to t_xla, for a share captured to mean something
FORMATS = ("png", "svg")
_TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("harness.report", "templates"), autoescape=True,
                                undefined=jinja2.StrictUndefined)

_TEMPLATES.filters["budget"] = human_budget


def reports_dir(root: str) -> Path:
    """The directory of the reports of a store."""
    return Path(root) / "reports"


def read_run(run_id: str, root: str = store.DEFAULT_ROOT) -> tuple[dict, pd.DataFrame, list[str]]:
    """The manifest, the cells and the problems met reading them (the run's unreadable part files, now or
    earlier set aside by the store, named); StoreError naming a run that does not exist."""
    manifest = store.read_manifest(run_id, root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cells = store.read("cells", root, run_ids=[run_id])
    problems = [str(w.message) for w in caught if "results store" in str(w.message)]
    aside = Path(root) / "corrupt" / "cells" / run_id
    problems += [f"unreadable part file {p.name}, set aside in {p}" for p in store.corrupt_files(root)
                 if p.parent == aside and not any(p.name in q for q in problems)]
    return manifest, cells, problems


def _budgets(cells: pd.DataFrame) -> list[float]:
    return sorted(float(b) for b in cells.budget.dropna().unique())


def _times(cells: pd.DataFrame, budget: float, column: str) -> pd.DataFrame:
    """Workload x policy times at `budget` (the unbudgeted policies' cells count at every budget); NaN where
    the cell is missing or has no time, the string "failed" where it failed."""
    chosen = cells[(cells.budget == budget) | cells.budget.isna()]
    table = chosen.pivot_table(index="workload", columns="policy", values=column, aggfunc="first", dropna=False)
    table = table.reindex(index=sorted(cells.workload.unique()), columns=_policy_order(cells)).astype(object)
    for r in chosen[chosen.status == "failed"].itertuples():
        table.loc[r.workload, r.policy] = "failed"
    return table


def _policy_order(cells: pd.DataFrame) -> list[str]:
    first = [XLA_SIM, NATIVE]
    present = list(dict.fromkeys(cells.policy))
    return [p for p in first if p in present] + [p for p in present if p not in first + [FLOOR]] + \
        ([FLOOR] if FLOOR in present else [])


def _num(value) -> float:
    return float(value) if isinstance(value, (int, float, np.floating)) and not pd.isna(value) else math.nan


def _geomean(values) -> float:
    x = np.array([_num(v) for v in values], dtype=float)
    x = x[np.isfinite(x) & (x > 0)]
    return float(np.exp(np.log(x).mean())) if len(x) else math.nan


def simulated_table(cells: pd.DataFrame, budget: float) -> pd.DataFrame:
    """Per workload at `budget`: simulated seconds of xla-msa, each policy, the optimum (cpsat where proven)
    and all-fast; each policy's speedup over xla-msa and share of the possible improvement captured; a
    summary row: the geometric mean of the speedups and the total share captured, sum(t_xla - t_policy) /
    sum(t_xla - t_all-fast) over the workloads with room to improve."""
    times = _times(cells, budget, "simulated_s").drop(columns=[NATIVE], errors="ignore")
    optimal = cells[(cells.policy == "cpsat") & (cells.budget == budget) & (cells.optimal == True)]  # noqa: E712
    out = pd.DataFrame(index=times.index)
    for policy in times.columns:
        out[f"{policy} (s)"] = times[policy]
    if "cpsat" in times.columns:
        out["optimum (s)"] = [optimal.set_index("workload").simulated_s.get(w, math.nan) for w in times.index]
    xla, floor = times.get(XLA_SIM), times.get(FLOOR)
    for policy in [p for p in times.columns if p != XLA_SIM] if xla is not None else []:
        out[f"{policy} speedup"] = [_num(x) / _num(t) for x, t in zip(xla, times[policy])]
        if floor is not None and policy != FLOOR:
            out[f"{policy} captured"] = [_captured(_num(x), _num(t), _num(f)) for x, t, f in
                                         zip(xla, times[policy], floor)]
    table = _with_summary(out)
    for policy in [p for p in times.columns if f"{p} captured" in out]:
        rows = [(_num(x), _num(t), _num(f)) for x, t, f in zip(xla, times[policy], floor)]
        rows = [r for r in rows if all(map(math.isfinite, r)) and r[0] - r[2] > ROOM * r[0]]
        table.loc[SUMMARY, f"{policy} captured"] = (sum(x - t for x, t, _ in rows) / sum(x - f for x, _, f in rows)
                                                    if rows else math.nan)
    return table


def _captured(t_xla: float, t_policy: float, t_floor: float) -> float:
    """(t_xla - t_policy) / (t_xla - t_all-fast); NaN where all-fast is within ROOM of t_xla (nothing to
    capture, and a share of it would be noise)."""
    room = t_xla - t_floor
    return (t_xla - t_policy) / room if room > ROOM * t_xla else math.nan


def measured_table(cells: pd.DataFrame, budget: float) -> pd.DataFrame:
    """Per workload at `budget`: measured median seconds of xla-native (the XLA default on hardware) and of
    each policy with a measured time (its failed cells shown as such), with its speedup over xla-native; a
    geometric-mean row."""
    times = _times(cells, budget, "median_s")
    measured = [p for p in times.columns if times[p].map(lambda v: math.isfinite(_num(v))).any()]
    out = pd.DataFrame(index=times.index)
    for policy in measured:
        out[f"{policy} (s)"] = times[policy]
    if NATIVE in measured:
        for policy in [p for p in measured if p != NATIVE]:
            out[f"{policy} speedup"] = [_num(x) / _num(t) for x, t in zip(times[NATIVE], times[policy])]
    return _with_summary(out)


def _with_summary(table: pd.DataFrame) -> pd.DataFrame:
    summary = {}
    for col in table.columns:
        if col.endswith("speedup"):
            summary[col] = _geomean(table[col])
        else:
            summary[col] = math.nan
    table = table.copy()
    table.index.name = "workload"
    table.loc[SUMMARY] = pd.Series(summary, dtype=object)
    return table


def headline_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Per policy simulated (not xla-native, which is measured only): at each budget its geometric-mean
    simulated speedup over xla-msa ("speedup @ b") and the share of the room it captured over all workloads
    ("captured @ b", `simulated_table`'s summary), and its cells ok and failed: the table the nightly prints."""
    means = {b: simulated_table(cells, b).loc[SUMMARY] for b in _budgets(cells)}
    rows = []
    for policy in [p for p in _policy_order(cells) if p != NATIVE]:
        mine = cells[cells.policy == policy]
        row = {"policy": policy}
        for b, mean in means.items():
            own = {XLA_SIM: {"speedup": 1.0, "captured": 0.0}, FLOOR: {"captured": 1.0}}.get(policy, {})
            for what in ("speedup", "captured"):
                col = f"{policy} {what}"
                row[f"{what} @ {b:g}"] = mean[col] if col in mean else own.get(what, math.nan)
        row |= {"ok": int((mine.status == "ok").sum()), "failed": int((mine.status == "failed").sum())}
        rows.append(row)
    return pd.DataFrame(rows)


def headline_text(head: pd.DataFrame) -> pd.DataFrame:
    """The headline for people: per budget one column "b" reading "speedup (captured)", e.g. "1.004 (12.3%)",
    and "-" where there is no figure."""
    shown = pd.DataFrame({"policy": head.policy})
    for col in [c for c in head.columns if c.startswith("speedup @ ")]:
        budget = col.removeprefix("speedup @ ")
        captured = head.get(f"captured @ {budget}", pd.Series(math.nan, index=head.index))
        shown[f"budget {budget}"] = ["-" if pd.isna(v) else f"{v:.3f}" + ("" if pd.isna(c) else f" ({c:.1%})")
                                     for v, c in zip(head[col], captured)]
    return shown.assign(ok=head.ok, failed=head.failed)


def what_ran(runs: list[tuple[dict, pd.DataFrame]]) -> str:
    """One line saying what a night simulated and what it measured, from its runs' (manifest, cells)."""
    profiles = [m.get("profile", "?") for m, _ in runs]
    simulated = sum(int(c.simulated_s.notna().sum()) for _, c in runs)
    policies = list(dict.fromkeys(p for _, c in runs for p in c[c.simulated_s.notna()].policy))
    measured = pd.concat([c[c.median_s.notna()] for _, c in runs]) if runs else pd.DataFrame()
    line = (f"Simulated {simulated} cells on {' and '.join(profiles)} ({', '.join(p for p in policies if p != NATIVE)}); ")
    machine = machine_label(runs[0][0]) if runs else "this machine"
    if not len(measured):
        return line + f"measured nothing on {machine}."
    kinds = ", ".join(dict.fromkeys(measured.policy))
    unrealizable = NATIVE in kinds and len(set(measured.policy)) == 1
    return line + (f"measured {len(measured)} cells on {machine}: {kinds}" +
                   (" (the untouched programs: this device has one memory tier)" if unrealizable else "") + ".")


# --------------------------------------------------------------------------- formats


def _cell_text(value, column: str) -> str:
    if isinstance(value, str):
        return value
    if pd.isna(value):
        return "-"
    if column.endswith("(s)"):
        return f"{value * 1e3:.4g}"
    return f"{value:.3f}" if column.endswith("speedup") else f"{value:.1%}"


def _display(table: pd.DataFrame) -> pd.DataFrame:
    """Times in ms to 4 significant digits, speedups to 3 decimals, shares in percent, '-' where missing."""
    shown = pd.DataFrame({c.replace("(s)", "(ms)"): [_cell_text(v, c) for v in table[c]] for c in table.columns},
                         index=table.index)
    shown.index.name = "workload"
    return shown


def _latex(table: pd.DataFrame, caption: str) -> str:
    shown = _display(table)
    escaped = shown.rename(columns=lambda c: c.replace("%", r"\%").replace("_", r"\_"))
    escaped = escaped.map(lambda v: v.replace("%", r"\%"))
    escaped.index = [str(i).replace("_", r"\_") for i in escaped.index]
    return escaped.to_latex(caption=caption, column_format="l" + "r" * len(shown.columns), escape=False)


def _csv(table: pd.DataFrame) -> str:
    return table.to_csv(float_format="%.9g", na_rep="")


def to_markdown(table: pd.DataFrame) -> str:
    """A report table as a Markdown pipe table (times in ms)."""
    shown = _display(table)
    head = "| workload | " + " | ".join(shown.columns) + " |"
    rule = "|---|" + "---:|" * len(shown.columns)
    body = ["| " + " | ".join([str(i), *row]) + " |" for i, row in zip(shown.index, shown.to_numpy().tolist())]
    return "\n".join([head, rule, *body]) + "\n"


# --------------------------------------------------------------------------- plots


def _figure(width: float = 7.0, height: float = 4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out: Path, name: str, dpi: int = 110) -> list[Path]:
    paths = []
    for fmt in FORMATS:
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=dpi, bbox_inches="tight")
        artifacts.write_bytes(out / f"{name}.{fmt}", buffer.getvalue())
        paths.append(out / f"{name}.{fmt}")
    return paths


_MARKERS = "oD^sv<>pP*Xh"


def plot_speedups(cells: pd.DataFrame, budget: float, out: Path) -> list[Path]:
    """A dot plot, one row per workload (and the geometric mean), one marker per policy: its simulated time's
    speedup over xla-msa in percent, (speedup - 1) x 100, on a symmetric log axis around 0% (linear within
    +-2%, so that a 1% gain stays visible beside all-slow's tens of percent; right of 0: faster than the XLA
    default). Sized for a paper column (3.4 inches wide), at 220 dpi for the page."""
    table = simulated_table(cells, budget)
    cols = [c for c in table.columns if c.endswith("speedup")]
    rows = [w for w in table.index if w != SUMMARY] + [SUMMARY]
    fig = _figure(3.4, 0.8 + 0.24 * (len(rows) + 1))
    ax = fig.add_subplot()
    y = np.arange(len(rows))[::-1].astype(float)
    y[-1] -= 0.6  # the geometric mean apart from the workloads
    step = 0.6 / max(len(cols), 1)
    spread = [-1.0, 1.0]  # the axis spans at least -1% to +1%, so that equal policies read as equal
    for i, col in enumerate(cols):
        values = np.array([(_num(table.loc[w, col]) - 1.0) * 100.0 for w in rows])
        ax.scatter(values, y + 0.3 - step / 2 - i * step, s=14, marker=_MARKERS[i % len(_MARKERS)], zorder=3,
                   label=col.replace(" speedup", ""))
        spread += list(values[np.isfinite(values)])
    ax.axvline(0.0, color="black", lw=0.8)
    # linear within +-2%, logarithmic beyond: a 1% difference between close policies stays visible beside
    # all-slow's tens of percent
    ax.set_xscale("symlog", linthresh=2.0, linscale=1.0)
    ax.set_xlim(min(spread) * 1.25, max(spread) * 1.25)
    lo, hi = min(spread) * 1.25, max(spread) * 1.25
    ticks = [-100, -30, -10, -1, 0, 1, 10, 30, 100] + [t for t in (-3, 3) if abs(lo if t < 0 else hi) < 10]
    ax.set_xticks(sorted(t for t in ticks if lo <= t <= hi))
    ax.axhline(y[-1] + 0.8, color="0.6", lw=0.5)
    ax.set_yticks(y, rows, fontsize=6.5)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_ylim(y[-1] - 0.6, y[0] + 0.6)
    ax.grid(axis="x", color="0.9", lw=0.5)
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:+.3g}%" if abs(v) > 1e-9 else "0")
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel(f"simulated speedup over {XLA_SIM}, budget {budget:g} (symmetric log scale)", fontsize=7)
    ax.legend(fontsize=6, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(cols), 4),
              frameon=False, handletextpad=0.2, columnspacing=0.8)
    return _save(fig, out, "speedup", dpi=220)


def _measured_points(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells that were both simulated and measured."""
    return cells[(cells.status == "ok") & (cells.median_s > 0) & (cells.simulated_s > 0)]


def prediction_accuracy(cells: pd.DataFrame) -> dict:
    """How well the run's simulated times predict its measured ones, on the cells that have both:
    n_points, mape (mean of |simulated - measured| / measured) and kendall_tau (NaN below two points)."""
    import scipy.stats

    points = _measured_points(cells)
    measured, predicted = points.median_s.to_numpy(float), points.simulated_s.to_numpy(float)
    return {"n_points": len(points),
            "mape": float(np.mean(np.abs(predicted - measured) / measured)) if len(points) else math.nan,
            "kendall_tau": float(scipy.stats.kendalltau(measured, predicted).statistic) if len(points) > 1 else
            math.nan}


def read_calibration(run_id: str, root: str = store.DEFAULT_ROOT) -> Optional[dict]:
    """The run's calibration report (runs/<run>/calibration.json, written by the nightly), or None."""
    path = store.run_dir(run_id, root) / "calibration.json"
    return json.loads(path.read_text()) if path.is_file() else None


def plot_predicted_vs_measured(cells: pd.DataFrame, calibration: Optional[dict], out: Path,
                               not_comparable: Optional[str] = None) -> list[Path]:
    """Simulated (and, where the run was calibrated, fitted) seconds against measured ones, with y = x; the
    title gives the calibration's figures, else the simulator's accuracy on the run's own cells. With
    `not_comparable` (why the run's profile does not describe the measured device) only the calibrated
    profile's points are drawn, and the title says why. Without points to draw the figure says so."""
    measured = _measured_points(cells)
    fitted = pd.DataFrame(calibration["points"]) if calibration and "points" in calibration else None
    fig = _figure(5.5, 5.0)
    ax = fig.add_subplot()
    if not len(measured) or (not_comparable and fitted is None):
        ax.text(0.5, 0.5, not_comparable or "no measured cells in this run", ha="center", va="center",
                transform=ax.transAxes, wrap=True)
        ax.set_axis_off()
        return _save(fig, out, "predicted_vs_measured")
    title, values = "predicted against measured", []
    if not not_comparable:
        ax.scatter(measured.median_s, measured.simulated_s, s=16, label="profile's prediction")
        values += list(measured.median_s) + list(measured.simulated_s)
    if fitted is not None:
        ax.scatter(fitted.measured_s, fitted.predicted_s, s=16, marker="x", label=f"{calibration['profile']} calibrated")
        values += list(fitted.measured_s) + list(fitted.predicted_s)
        title += (f"\n{calibration['profile']} calibrated on {calibration['n_points']} cells: MAPE "
                  f"{calibration['mape']:.1%} (LOWO {calibration['lowo_mape']:.1%}), tau "
                  f"{calibration['kendall_tau']:.2f} (LOWO {calibration['lowo_kendall_tau']:.2f})")
        sample = calibration.get("op_points_sample") or calibration.get("op_points")  # older reports kept them all
        if sample:  # calibrated on per-op times too: ops (a sample), seconds per run
            ops = pd.DataFrame(sample)
            ax.scatter(ops.measured_s, ops.predicted_s, s=3, alpha=0.4, label="single ops (a sample), calibrated")
            values += list(ops.measured_s) + list(ops.predicted_s)
            per_op = calibration["per_op"]
            title += (f"\n{per_op['fitted']['n_points']} ops: MAPE {per_op['fitted']['mape']:.1%} "
                      f"(LOWO {per_op['lowo']['mape']:.1%})")
    else:
        accuracy = prediction_accuracy(cells)
        title += (f"\nprofile's prediction on {accuracy['n_points']} cells: MAPE {accuracy['mape']:.1%}, "
                  f"tau {accuracy['kendall_tau']:.2f}")
    if not_comparable:
        title += f"\n({not_comparable})"
    lo, hi = min(values) / 2, max(values) * 2
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, label="y = x")
    ax.set(xscale="log", yscale="log", xlabel="measured seconds", ylabel="predicted seconds")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=8)
    return _save(fig, out, "predicted_vs_measured")


def prediction_mismatch(manifest: dict) -> Optional[str]:
    """Why the run's profile does not predict its measurements (it describes another kind of device), or None."""
    from harness.model.profiles import ProfileError, device_kind, load_profile

    try:
        profile = load_profile(manifest.get("profile", ""))
    except ProfileError:
        return None
    device = device_kind(manifest.get("backend", ""))
    if not device or profile.backend == device:
        return None
    return f"{profile.name} describes a {profile.backend}, the cells ran on a {device}: its predictions are not drawn"


def plot_memory_maps(cells: pd.DataFrame, root: str, budget: float, out: Path, n: int = 2) -> list[Path]:
    """The memory map of the best simulated mapping beside xla-msa's, for the `n` workloads where the best
    policy gains most over xla-msa at `budget`."""
    from harness.model.profiles import load_profile
    from harness.report.memory_map import plot_memory_map

    ok = cells[(cells.status == "ok") & (cells.budget == budget) & cells.mapping_file.notna()]
    xla = ok[ok.policy == XLA_SIM].set_index("workload")
    best = ok[ok.policy != XLA_SIM].sort_values("simulated_s").groupby("workload").head(1).set_index("workload")
    gain = (xla.simulated_s / best.simulated_s.reindex(xla.index)).dropna().sort_values(ascending=False)
    gain = gain[gain > 1 + 1e-9]  # where some policy beats the XLA default: a one-tier profile has none
    paths = []
    for workload in gain.index[:n]:
        instance = Instance.from_json(read_text(root, xla.loc[workload, "instance_file"]))
        mine = Mapping.from_json(read_text(root, best.loc[workload, "mapping_file"]))
        theirs = Mapping.from_json(read_text(root, xla.loc[workload, "mapping_file"]))
        profile = load_profile(xla.loc[workload, "profile"])
        for fmt in FORMATS:
            path = out / f"memory_map-{workload}.{fmt}"
            plot_memory_map(instance, mine, path, title=f"{workload}: {best.loc[workload, 'policy']} beside "
                            f"{XLA_SIM}, budget {budget:g}", compare=theirs, profile=profile)
            paths.append(path)
    return paths


def plot_history(history: Optional[pd.DataFrame], out: Path) -> list[Path]:
    """Per workload over nights: xla-native's measured median, else xla-msa's simulated time (at its first
    budget), relative to the first night; nothing when the history has fewer than two runs."""
    if history is None or history.run_id.nunique() < 2:
        return []
    ok = history[history.status == "ok"]
    native = ok[(ok.policy == NATIVE) & ok.median_s.notna()]
    if len(native):
        series, column, what = native, "median_s", f"{NATIVE} measured median"
    else:
        budget = ok[ok.policy == XLA_SIM].budget.min()
        series, column, what = ok[(ok.policy == XLA_SIM) & (ok.budget == budget)], "simulated_s", f"{XLA_SIM} simulated"
    runs = list(dict.fromkeys(history.sort_values("started").run_id))
    fig = _figure(7.5, 4.2)
    ax = fig.add_subplot()
    for workload, rows in series.groupby("workload"):
        rows = rows.assign(night=rows.run_id.map(runs.index)).sort_values("night")
        ax.plot(rows.night, rows[column] / rows[column].iloc[0], marker="o", ms=3, lw=1, label=workload)
    ax.set_xticks(range(len(runs)), [r[:15] for r in runs], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel(f"{what}, relative to the first night")
    ax.set_title("history over nights", fontsize=10)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, out, "history")


# --------------------------------------------------------------------------- the report


def headline_budget(cells: pd.DataFrame) -> Optional[float]:
    """The budget of the headline figures: 0.5 where the run has it, else its middle budget."""
    budgets = _budgets(cells)
    return 0.5 if 0.5 in budgets else (budgets[len(budgets) // 2] if budgets else None)


def build_report(run_id: str, root: str = store.DEFAULT_ROOT, out_dir: Optional[str] = None,
                 history: Optional[pd.DataFrame] = None, regressions: Optional[pd.DataFrame] = None) -> dict:
    """Write the run's tables, plots and HTML page to `out_dir` (default `<root>/reports/<run>/`); returns
    the paths ("html", "dir", "tables", "plots"), "regressions_found" (the number of this run's
    regressions), "headline" (`headline_table` of its cells) and "nights" (the runs of its history: 1 on a
    machine's first night). A run whose cells are partly unreadable is still reported, the problem named on the
    page."""
    manifest, cells, problems = read_run(run_id, root)
    out = Path(out_dir) if out_dir else reports_dir(root) / run_id
    calibration = read_calibration(run_id, root)
    tables, sections, plots, links = [], [], [], {}
    groups = [("all workloads", cells), ("AlphaTensor workloads", cells[cells.family == "alphatensor"])] \
        if "family" in cells else [("all workloads", cells)]
    for b in _budgets(cells):
        for label, subset in groups:
            if not len(subset):
                continue
            tag = "alphatensor-" if label.startswith("AlphaTensor") else ""
            for kind, table in (("simulated", simulated_table(subset, b)), ("measured", measured_table(subset, b))):
                name = f"{tag}{kind}-budget-{b:g}"
                caption = (f"{kind.capitalize()} time per workload, budget {b:g} of peak live bytes ({label}); "
                           "last row: geometric mean of the speedups" +
                           (", total share captured" if kind == "simulated" else ""))
                tables += _write_table(table, out, name, caption)
                links.setdefault(f"{b:g}", {})[("AlphaTensor " if tag else "") + kind] = name
                sections.append({"caption": caption, "name": name,
                                 "html": _display(table).to_html(classes="numbers", border=0)})
    budget = headline_budget(cells)
    if budget is not None and (cells.status == "ok").any():
        plots += plot_speedups(cells, budget, out)
        plots += plot_memory_maps(cells, root, budget, out)
    plots += plot_predicted_vs_measured(cells, calibration, out, prediction_mismatch(manifest))
    plots += plot_history(history, out)
    mine = regressions[regressions.run_id == run_id] if regressions is not None and len(regressions) else \
        pd.DataFrame()
    failures = cells[cells.status == "failed"]
    head = headline_table(cells) if len(cells) else pd.DataFrame()
    html = _TEMPLATES.get_template("report.html.j2").render(
        run_id=run_id, manifest=manifest, n_cells=len(cells), problems=problems, calibration=calibration,
        machine=machine_label(manifest), nights=nights(history) if history is not None else 0,
        plugin_problems=manifest.get("plugin_problems", []),
        what_ran=what_ran([(manifest, cells)]),
        table_kinds=list(dict.fromkeys(k for row in links.values() for k in row)),
        table_links=[{"budget": b, "names": [row.get(k, "") for k in dict.fromkeys(
            k for r in links.values() for k in r)]} for b, row in links.items()],
        speedup_figure=next((p.name for p in plots if p.name == "speedup.png"), ""),
        headline=headline_text(head).to_html(index=False, border=0, classes="numbers") if len(head) else "",
        sections=sections, images=[p.name for p in plots if p.suffix == ".png"],
        regressions=mine.to_dict("records"),
        failures=[{"cell": int(r.cell), "workload": r.workload, "policy": r.policy,
                   "budget": human_budget(r.budget), "stage": getattr(r, "stage", ""),
                   "error": r.error} for r in failures.itertuples()])
    artifacts.write_bytes(out / "index.html", html.encode())
    return {"html": out / "index.html", "dir": out, "tables": tables, "plots": plots,
            "regressions_found": len(mine), "headline": head,
            "nights": nights(history) if history is not None else 0}


def _write_table(table: pd.DataFrame, out: Path, name: str, caption: str) -> list[Path]:
    files = {f"{name}.md": f"**{caption}** (times in ms)\n\n" + to_markdown(table),
             f"{name}.tex": _latex(table, caption + " (times in ms)"), f"{name}.csv": _csv(table)}
    for file, text in files.items():
        artifacts.write_bytes(out / file, text.encode())
    return [out / f for f in files]


def write_index(root: str = store.DEFAULT_ROOT, out_dir: Optional[str] = None) -> Path:
    """Write `index.html` in `out_dir` (default `<root>/reports/`), linking the page of every run that has a
    report under `<root>/reports/` (newest first); runs whose manifest cannot be read are named and skipped."""
    base = reports_dir(root)
    out = Path(out_dir) if out_dir else base
    runs, problems = [], []
    for page in sorted(base.glob("*/index.html"), reverse=True):
        run_id = page.parent.name
        try:
            manifest = store.read_manifest(run_id, root)
        except store.StoreError as err:
            problems.append(str(err))
            continue
        runs.append({"run_id": run_id, "href": Path(os.path.relpath(page, out)).as_posix(),
                     "started": manifest.get("started", ""), "suite": manifest.get("suite", ""),
                     "profile": manifest.get("profile", ""), "device": manifest.get("device_kind", ""),
                     "machine_id": machine_of(manifest), "machine": machine_label(manifest),
                     "status": manifest.get("status", ""), "ok": manifest.get("cells_ok", ""),
                     "failed": manifest.get("cells_failed", "")})
    html = _TEMPLATES.get_template("runs.html.j2").render(runs=runs, problems=problems)
    artifacts.write_bytes(out / "index.html", html.encode())
    return out / "index.html"


def newest_nightly(root: str = store.DEFAULT_ROOT) -> str:
    """The id of the newest nightly run in the store (by start time); runs with bad manifests are passed
    over; StoreError when there is none."""
    for run_id in reversed(store.list_runs(root).run_id):
        try:
            if store.read_manifest(run_id, root).get("kind") == "nightly":
                return run_id
        except store.StoreError:
            continue
    raise store.StoreError(f"{root}: no nightly run in the store; run `mallocbench nightly` first")
