"""Fit a profile's free figures to measured times, whole programs and single ops, and report the accuracy.

Predictions come from the one cost model (`harness.model.simulator`): a whole
program's `simulate`, an op's seconds per run from `simulate_ops`. The fit is a
robust (soft-L1) least squares on log time over the figures in log space, from
the prior profile, on both levels at once: whole-program points, and per-op
points (`op_times` rows) weighted so that each level weighs as much in total.
A traced op point holds the profiler's own cost in each of its events, which an
untraced whole run does not pay: one more value, seconds per event, is fitted
beside the figures and added to the per-op predictions only (it is reported,
never part of the fitted profile).

A figure the points cannot identify is held at its prior and reported so, never
pushed to a bound: after a fit, a figure on which no residual depends, else the
one pushed furthest to a bound (1000x either way of its prior), is held, and the
fit is repeated without it, until every fitted figure is identified.

Accuracy is reported over the fitted points and under leave-one-workload-out
(each workload predicted by a profile fitted on the others), per program and per
op, beside the measurement noise, together with the decision quality users care
about: the top-1 slowdown, the measured time of the mapping the simulator ranks
first over the fastest measured one, per program and budget.
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

from harness.device.machine import UNKNOWN, machine_of
from harness.device.op_alone import DISPATCH_ONLY
from harness.results import artifacts, store
from harness.xla.instance import Instance
from harness.model.costmodel import op_kind, op_work
from harness.model.mapping import Mapping
from harness.model.profiles import FITS, FittedOn, Profile, from_dict
from harness.model.simulator import batch, simulate_batch, simulate_ops

FIGURES = ("flop_rate", "unfused_dot_flop_rate", "conv_flop_rate", "unfused_conv_flop_rate", "grouped_conv_flop_rate",
           "vector_flop_rate", "reduction_flop_rate", "window_flop_rate", "transcendental_rate", "fast_bandwidth",
           "cache_bandwidth", "cache_bytes", "move_bandwidth", "slow_bandwidth", "copy_bandwidth", "matmul_half_flops",
           "unfused_dot_half_flops", "batch_half_flops", "matmul_parallel_gain", "matmul_parallel_flops",
           "conv_half_flops", "conv_half_channels", "op_overhead_seconds", "loop_op_overhead_seconds",
           "loop_iteration_seconds", "program_overhead_seconds", "argument_seconds", "sort_compare_seconds")
STATISTICS = ("median", "min")  # which measured time of a row a point takes
BOUND = math.log(1e3)  # a figure moves at most this far (in log) from its prior
_AT_BOUND = 0.05  # within this (log) of a bound, a figure is taken as pushed there
_INSENSITIVE = 1e-3  # a figure whose Jacobian column is below this share of the largest one is not identified
# The profiler's own cost inside each traced op event (seconds per event): a traced op point measures the op plus
# this for each of its events, a whole (untraced) run does not pay it. Fitted beside the figures, never part of a
# profile. Its prior: a one-element op in a loop body takes about 0.55 us per event traced and 0.04 us untraced.
TRACE_EVENT_PRIOR_S = 5e-7


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
    measured_s: float  # seconds per call: the measurement's median or least (`points_from_store`'s statistic)
    noise: float  # relative noise of that median: CI half-width over the median
    run_id: str

    @property
    def group(self) -> str:
        """The decision a simulator ranks mappings for: one program at one budget, in one run."""
        budget = "none" if self.budget is None else f"{self.budget:g}"
        return f"{self.workload}/{self.size}/{budget}@{self.run_id}"


@dataclasses.dataclass(frozen=True)
class OpPoint:
    """One op's measured seconds per run of its program (every execution), the program mapped as XLA maps it."""

    workload: str
    size: str
    instance: Instance
    step: int  # the op's step in the instance
    measured_s: float
    coverage: float  # the share of its program's whole time that the program's ops account for
    run_id: str
    events: float = 0.0  # profiler events per run that `measured_s` holds (0: the op was timed alone, untraced)

    @property
    def kind(self) -> str:
        """The op's kind (`hlo_costs.OP_KINDS`)."""
        return op_kind(self.instance.ops[self.step])


@dataclasses.dataclass(frozen=True)
class Calibration:
    """A fitted profile, its prior, the runs it was fitted on and the accuracy report."""

    prior: Profile
    fitted: Profile
    run_ids: tuple[str, ...]
    report: dict  # figures, the whole-program points and a sample of the op points (small: it is committed)
    op_rows: tuple[dict, ...] = ()  # every op point's measured, fitted and left-out prediction (for the plot)


def free_figures(prior: Profile, points: Sequence[Point], op_points: Sequence[OpPoint] = ()) -> tuple[str, ...]:
    """The figures some point's time depends on, and whose prior is not zero (zero: the effect is off).

    Each op kind's rate where an op of that kind appears; the matmul saturation
    with dots or convolutions; the transcendental rate where some op has
    transcendentals; the loop's per-iteration cost with loops of known trip
    count; the fast bandwidth and the per-op and per-run overheads always; the
    slow (direct) or copy (offload) bandwidth only where some mapping leaves a
    buffer slow on a two-tier profile. A one-tier profile keeps slow = copy = fast
    bandwidth tied.
    """
    instances = {id(p.instance): p.instance for p in list(points) + list(op_points)}.values()
    ops = [op for instance in instances for op in instance.ops]
    work = [op_work(instance) for instance in instances]
    kinds = {op_kind(op) for op in ops}
    unfused_dots = any(op.opcode == "dot" and op_kind(op) == "dot" for op in ops)
    free = []
    wanted = {"flop_rate": "dot" in kinds, "conv_flop_rate": "convolution" in kinds,
              "unfused_conv_flop_rate": any(op.opcode == "convolution" for op in ops),
              "unfused_dot_flop_rate": unfused_dots, "unfused_dot_half_flops": unfused_dots,
              "cache_bytes": True, "cache_bandwidth": True,
              "vector_flop_rate": bool(kinds & {"dot", "convolution", "elementwise"}),
              "reduction_flop_rate": "reduction" in kinds, "window_flop_rate": "windowed-reduction" in kinds,
              "transcendental_rate": any(op.transcendentals for op in ops), "fast_bandwidth": True,
              "move_bandwidth": "data-movement" in kinds, "matmul_half_flops": bool(kinds & {"dot", "convolution"}),
              "conv_half_flops": "convolution" in kinds,
              "batch_half_flops": any((w.batch > 1).any() for w in work),
              "matmul_parallel_flops": bool(kinds & {"dot", "convolution"}),  # its gain is the machine's: not fitted
              "conv_half_channels": any(w.channels.any() for w in work),
              "grouped_conv_flop_rate": any(w.grouped.any() for w in work),
              "op_overhead_seconds": True, "loop_op_overhead_seconds": any(w.repeated.any() for w in work),
              "loop_iteration_seconds": any(op_kind(op) == "loop" and op.iterations for op in ops),
              "program_overhead_seconds": bool(points), "argument_seconds": bool(points),
              "sort_compare_seconds": any(op_kind(op) == "sort" and op.flops for op in ops)}
    for figure in FIGURES:  # in FIGURES' order
        if wanted.get(figure) and getattr(prior, figure):
            free.append(figure)
    any_slow = any(len(p.mapping.offsets) < len(p.instance.buffers) for p in points)
    if any_slow and not prior.one_tier:
        free.append("copy_bandwidth" if prior.memory_model == "offload" else "slow_bandwidth")
    return tuple(free)


def _with(prior: Profile, free: Sequence[str], log_values: np.ndarray) -> Profile:
    values = {name: float(np.exp(v)) for name, v in zip(free, log_values)}
    if prior.one_tier and "fast_bandwidth" in values:
        values["slow_bandwidth"] = values["copy_bandwidth"] = values["fast_bandwidth"]
    return dataclasses.replace(prior, **values)


def _check(points: Sequence[Point], op_points: Sequence[OpPoint] = ()) -> None:
    if not points:
        raise CalibrationError("no points to calibrate on (no successful measurements in the runs)")
    for p in points:
        if not (p.measured_s > 0 and math.isfinite(p.measured_s)):
            raise CalibrationError(f"point {p.group} ({p.policy}, run {p.run_id}): measured time {p.measured_s!r} "
                                   "is not a positive number")
    for p in op_points:
        if not (p.measured_s > 0 and math.isfinite(p.measured_s)):
            raise CalibrationError(f"op point {p.workload}/{p.size} step {p.step} (run {p.run_id}): measured time "
                                   f"{p.measured_s!r} is not a positive number")
        if not 0 <= p.step < len(p.instance.ops):
            raise CalibrationError(f"op point {p.workload}/{p.size} (run {p.run_id}): step {p.step} is not an op of "
                                   f"its instance ({len(p.instance.ops)} ops)")


def predict(points: Sequence[Point], profile: Profile) -> np.ndarray:
    """Simulated seconds of each point on `profile`."""
    return predict_both(points, (), profile)[0]


def predict_ops(op_points: Sequence[OpPoint], profile: Profile) -> np.ndarray:
    """Simulated seconds per run of each op point on `profile`, its program mapped all fast (as XLA maps it)."""
    return predict_both((), op_points, profile)[1]


def predict_both(points: Sequence[Point], op_points: Sequence[OpPoint], profile: Profile,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(whole seconds of each point, seconds per run of each op point) on `profile`."""
    return _Pricer(points, op_points, profile.memory_model)(profile)


class _Pricer:
    """Prices a fixed set of points on many profiles: the programs (instance, mapping) of the whole and the
    op points once each, all in one batch on the direct model (`simulator.simulate_batch`), one by one
    (`simulate_ops`) on the offload model."""

    def __init__(self, points: Sequence[Point], op_points: Sequence[OpPoint], memory_model: str):
        self.pairs: list[tuple[Instance, Mapping]] = []
        index: dict[tuple[int, frozenset], int] = {}
        everything: dict[int, Mapping] = {}

        def pair(instance: Instance, mapping: Mapping) -> int:
            key = (id(instance), frozenset(mapping.offsets))
            if key not in index:
                index[key] = len(self.pairs)
                self.pairs.append((instance, mapping))
            return index[key]

        def all_fast(instance: Instance) -> Mapping:
            if id(instance) not in everything:
                everything[id(instance)] = Mapping({b.id: 0 for b in instance.buffers}, len(instance.buffers),
                                                   instance.name, "xla-native")
            return everything[id(instance)]

        self.whole = np.array([pair(p.instance, p.mapping) for p in points], dtype=np.int64)
        self.op_pair = np.array([pair(p.instance, all_fast(p.instance)) for p in op_points], dtype=np.int64)
        self.op_step = np.array([p.step for p in op_points], dtype=np.int64)
        self.batch = batch(self.pairs) if memory_model == "direct" and self.pairs else None

    def __call__(self, profile: Profile) -> tuple[np.ndarray, np.ndarray]:
        if not self.pairs:
            return np.empty(0), np.empty(0)
        if self.batch is not None:
            whole, per_op = simulate_batch(self.batch, profile)
            return whole[self.whole], per_op[self.batch.starts[self.op_pair] + self.op_step]
        runs, ops = [], []
        for instance, mapping in self.pairs:
            b = simulate_ops(instance, mapping, profile)
            runs.append(float(b["elapsed"].sum() + b["stall"].sum() + b["final_stall"].sum() + b["launch"]))
            ops.append(b["elapsed"])
        return (np.array(runs)[self.whole],
                np.array([ops[k][s] for k, s in zip(self.op_pair, self.op_step)], dtype=np.float64))


def fit(points: Sequence[Point], prior: Profile, free: Optional[Sequence[str]] = None,
        op_points: Sequence[OpPoint] = (), start: Optional[Profile] = None) -> Profile:
    """The prior with its free figures fitted to the points (robust least squares on log time);
    figures the points cannot identify stay at the prior (see `fit_figures`)."""
    return fit_figures(points, prior, free, op_points, start)[0]


def fit_figures(points: Sequence[Point], prior: Profile, free: Optional[Sequence[str]] = None,
                op_points: Sequence[OpPoint] = (), start: Optional[Profile] = None,
                start_trace_s: float = TRACE_EVENT_PRIOR_S) -> tuple[Profile, dict[str, str], float]:
    """(fitted profile, held figure -> why it is held at its prior, the profiler's seconds per traced op event).

    The search starts from `start` and `start_trace_s` (default: the priors; leaving one workload out starts
    from the fit on all points, which only shortens the search), the bounds are 1000x either way of the prior.
    The profiler's cost is fitted where some op point was traced (`OpPoint.events`), else it is 0."""
    _check(points, op_points)
    free = tuple(free) if free is not None else free_figures(prior, points, op_points)
    unknown = [f for f in free if f not in FIGURES]
    if unknown:
        raise CalibrationError(f"unknown figure {unknown[0]!r} to fit; figures: {', '.join(FIGURES)}")
    if len(points) + len(op_points) < len(free):
        raise CalibrationError(f"{len(points) + len(op_points)} points cannot fit {len(free)} figures "
                               f"({', '.join(free)})")
    zero = [f for f in free if not getattr(prior, f)]
    if zero:
        raise CalibrationError(f"figure {zero[0]!r} is 0 in the prior {prior.name}: a fit in log space cannot move it")
    held: dict[str, str] = {}
    while True:
        active = [f for f in free if f not in held]
        if not active:
            return prior, held, _prior_trace_s(op_points)
        fitted, x, sensitivity, trace_s = _least_squares(points, op_points, prior, active, start or prior,
                                                         start_trace_s)
        centre = np.log([getattr(prior, f) for f in active])
        insensitive = [(sens, f) for f, sens in zip(active, sensitivity) if sens < _INSENSITIVE * max(sensitivity)]
        at_bound = [(-abs(v - s0), f) for f, v, s0 in zip(active, x, centre) if abs(v - s0) > BOUND - _AT_BOUND]
        if insensitive:  # one at a time: holding one figure can make another identifiable again
            held[min(insensitive)[1]] = "not identified: no point's time depends on it; held at the prior"
        elif at_bound:
            held[min(at_bound)[1]] = ("not identified: the fit pushed it to its bound (1000x its prior); "
                                      "held at the prior")
        else:
            return fitted, held, trace_s


def _traced(op_points: Sequence[OpPoint]) -> bool:
    return any(p.events > 0 for p in op_points)


def _prior_trace_s(op_points: Sequence[OpPoint]) -> float:
    """The profiler's cost per event before a fit: its prior where some op point was traced, else 0."""
    return TRACE_EVENT_PRIOR_S if _traced(op_points) else 0.0


def _least_squares(points, op_points, prior, free, start_profile, start_trace_s):
    """One robust fit of `free` and, where some op point was traced, of the profiler's cost per event (one more
    log value); returns (profile, fitted log values of `free`, [free] Jacobian column norms, seconds per event)."""
    measured = np.log([p.measured_s for p in points])
    op_measured = np.log([p.measured_s for p in op_points])
    events = np.array([p.events for p in op_points], dtype=np.float64)
    op_weight = math.sqrt(len(points) / len(op_points)) if op_points else 0.0
    traced = _traced(op_points)
    center = np.log([getattr(prior, f) for f in free] + [TRACE_EVENT_PRIOR_S] * traced)
    start = np.clip(np.log([getattr(start_profile, f) for f in free] + [start_trace_s] * traced),
                    center - BOUND + 1e-9, center + BOUND - 1e-9)
    n = len(free)
    pricer = _Pricer(points, op_points, prior.memory_model)

    def residuals(x: np.ndarray) -> np.ndarray:
        whole, ops = pricer(_with(prior, free, x[:n]))
        ops = ops + events * (math.exp(x[n]) if traced else 0.0)
        return np.concatenate([np.log(whole) - measured, (np.log(np.maximum(ops, 1e-12)) - op_measured) * op_weight])

    result = scipy.optimize.least_squares(
        residuals, start, bounds=(center - BOUND, center + BOUND), loss="soft_l1", f_scale=0.1,
        diff_step=1e-3, x_scale=1.0, max_nfev=60)
    sensitivity = np.sqrt((np.asarray(result.jac) ** 2).sum(axis=0))[:n]
    return (_with(prior, free, result.x[:n]), result.x[:n], sensitivity,
            math.exp(result.x[n]) if traced else 0.0)


def _kendall(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return math.nan
    return float(scipy.stats.kendalltau(a, b).statistic)


def _program(p: Point) -> tuple:
    """The program a point measured, whichever run measured it: its workload, size, policy and budget."""
    return p.workload, p.size, p.policy, p.budget


def _log_times_by_program(points: Sequence[Point]) -> dict[tuple, list[float]]:
    runs: dict[tuple, list[float]] = {}
    for p in points:
        runs.setdefault(_program(p), []).append(math.log(p.measured_s))
    return runs


def noise_kendall_tau(points: Sequence[Point]) -> float:
    """Kendall tau of the measured times against each program's geometric mean over the runs (a program: one
    workload, size, policy and budget): what a model that knew every program's mean time would score, so the
    reach that run-to-run noise leaves a model's tau; NaN when no program was measured more than once."""
    runs = _log_times_by_program(points)
    if all(len(times) < 2 for times in runs.values()):
        return math.nan
    means = np.array([math.exp(np.mean(runs[_program(p)])) for p in points])
    return _kendall(np.array([p.measured_s for p in points]), means)


def run_spread(points: Sequence[Point]) -> float:
    """How far the runs disagree: the mean, over programs measured in more than one run (a program: one
    workload, size, policy and budget), of log(largest / least) of their measured times across the runs
    (two runs: |log ratio|; 0: the runs agree); NaN when no program was measured more than once."""
    spreads = [max(times) - min(times) for times in _log_times_by_program(points).values() if len(times) > 1]
    return float(np.mean(spreads)) if spreads else math.nan


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


def evaluate_ops(op_points: Sequence[OpPoint], predicted: np.ndarray) -> dict:
    """Per-op accuracy: MAPE, the time-weighted error (sum |error| / sum measured), and both per op kind."""
    measured = np.array([p.measured_s for p in op_points])
    if not len(measured):
        return {"n_points": 0}
    error = np.abs(predicted - measured)
    kinds = np.array([p.kind for p in op_points])
    by_kind = {k: {"n_points": int((kinds == k).sum()), "mape": float(np.mean(error[kinds == k] / measured[kinds == k])),
                   "weighted_error": float(error[kinds == k].sum() / measured[kinds == k].sum()),
                   "measured_share": float(measured[kinds == k].sum() / measured.sum())}
               for k in sorted(set(kinds))}
    return {"n_points": len(measured), "mape": float(np.mean(error / measured)),
            "median_ape": float(np.median(error / measured)),
            "weighted_error": float(error.sum() / measured.sum()), "by_kind": by_kind}


def calibrate(points: Sequence[Point], prior: Profile, run_ids: Sequence[str],
              op_points: Sequence[OpPoint] = (), statistic: str = "median",
              free: Optional[Sequence[str]] = None, fitted_on: Optional[FittedOn] = None) -> Calibration:
    """Fit on all points (whole programs and ops), then leave each workload out in turn, and report both;
    `statistic` names the measured time the points hold (see `points_from_store`), for the report; `free`
    the figures to fit (default `free_figures`; `()`: none, which scores the prior as it is); `fitted_on`
    the machine the runs were measured on (`fitted_on_of`), recorded in the fitted profile."""
    _check(points, op_points)
    free = free_figures(prior, points, op_points) if free is None else tuple(free)
    fitted, held, trace_s = fit_figures(points, prior, free, op_points)
    fitted_free = [f for f in free if f not in held]
    events = np.array([p.events for p in op_points], dtype=np.float64)
    prior_trace_s = _prior_trace_s(op_points)
    predicted, op_predicted = predict_both(points, op_points, fitted)
    op_predicted = op_predicted + events * trace_s  # what a traced op point measures
    lowo, op_lowo = np.empty(len(points)), op_predicted.copy()  # ops of no scored workload (kernels): never left out
    for w in sorted({p.workload for p in points}):
        inside = [p for p in points if p.workload != w]
        op_inside = [p for p in op_points if p.workload != w]
        idx = [i for i, p in enumerate(points) if p.workload == w]
        op_idx = [i for i, p in enumerate(op_points) if p.workload == w]
        enough = inside and len(inside) + len(op_inside) >= len(fitted_free)
        profile, _, trace_w = (fit_figures(inside, prior, fitted_free, op_inside, start=fitted, start_trace_s=trace_s)
                               if enough and fitted_free else (prior, {}, prior_trace_s))
        lowo[idx], op_lowo[op_idx] = predict_both([points[i] for i in idx], [op_points[i] for i in op_idx], profile)
        op_lowo[op_idx] += events[op_idx] * trace_w
    fitted_eval, lowo_eval = evaluate(points, predicted), evaluate(points, lowo)
    prior_eval = evaluate(points, predict(points, prior))
    runs = tuple(sorted(set(run_ids) | {p.run_id for p in op_points}))
    fitted = _named_fitted(prior, fitted, fitted_free, runs, fitted_on)
    coverage = {f"{p.workload}/{p.size}@{p.run_id}": p.coverage for p in op_points}
    report = {
        "profile": prior.name, "fitted_profile": fitted.name, "n_points": len(points), "statistic": statistic,
        "n_workloads": len({p.workload for p in points}), "free": list(fitted_free), "held": held,
        "mape": fitted_eval["mape"], "kendall_tau": fitted_eval["kendall_tau"],
        "kendall_tau_within": fitted_eval["kendall_tau_within"],
        "lowo_mape": lowo_eval["mape"], "lowo_kendall_tau": lowo_eval["kendall_tau"],
        "lowo_kendall_tau_within": lowo_eval["kendall_tau_within"],
        "top1_slowdown": fitted_eval["top1_slowdown"], "lowo_top1_slowdown": lowo_eval["top1_slowdown"],
        "noise": fitted_eval["noise"], "noise_kendall_tau": noise_kendall_tau(points), "run_spread": run_spread(points),
        "prior_mape": prior_eval["mape"], "prior_kendall_tau": prior_eval["kendall_tau"],
        "kendall_tau_per_workload": fitted_eval["kendall_tau_per_workload"],
        "per_op": {"fitted": evaluate_ops(op_points, op_predicted), "lowo": evaluate_ops(op_points, op_lowo),
                   "prior": evaluate_ops(op_points, predict_ops(op_points, prior) + events * prior_trace_s),
                   "coverage": coverage,
                   "coverage_median": float(np.median(list(coverage.values()))) if coverage else math.nan},
        "trace_event_seconds": {"prior": prior_trace_s, "fitted": trace_s,
                                "status": "fitted: the profiler's cost in each traced op event, paid by the per-op "
                                          "points and not by whole runs; not a figure of the profile"
                                if prior_trace_s else "no op point was traced"},
        "figures": {f: {"prior": getattr(prior, f), "fitted": getattr(fitted, f),
                        "status": "fitted" if f in fitted_free else held.get(f, "not free: no point depends on it, "
                                                                                 "its prior is 0 or tied, or it is "
                                                                                 "the machine's")}
                    for f in FIGURES},
        "run_ids": list(runs),
        "points": [{"workload": p.workload, "size": p.size, "policy": p.policy, "budget": p.budget,
                    "measured_s": p.measured_s, "predicted_s": float(pr), "lowo_predicted_s": float(lo),
                    "noise": p.noise, "run_id": p.run_id} for p, pr, lo in zip(points, predicted, lowo)],
    }
    op_rows = tuple({"workload": p.workload, "size": p.size, "op": p.instance.ops[p.step].name, "kind": p.kind,
                     "measured_s": p.measured_s, "predicted_s": float(pr), "lowo_predicted_s": float(lo),
                     "run_id": p.run_id} for p, pr, lo in zip(op_points, op_predicted, op_lowo))
    report |= _level_summary(report, points, predicted, lowo, op_rows)
    return Calibration(prior, fitted, runs, report, op_rows)


OP_SAMPLE = 400  # op points a report keeps for its plot; every op point is in the store (table op_times)


def _level_summary(report: dict, points: Sequence[Point], predicted: np.ndarray, lowo: np.ndarray,
                   op_rows: Sequence[dict]) -> dict:
    """The report's per-op headline figures, each workload's whole-program error (fitted and left out) and an
    even sample of the op points by measured time (the report stays small; the points are in the store)."""
    per_op = report["per_op"]
    by_workload = {}
    for w in sorted({p.workload for p in points}):
        idx = [i for i, p in enumerate(points) if p.workload == w]
        measured = np.array([points[i].measured_s for i in idx])
        by_workload[w] = {"n_points": len(idx), "mape": float(np.mean(np.abs(predicted[idx] / measured - 1))),
                          "lowo_mape": float(np.mean(np.abs(lowo[idx] / measured - 1))),
                          "bias": float(np.mean(predicted[idx] / measured - 1))}
    ordered = sorted(op_rows, key=lambda r: r["measured_s"])
    step = max(1, math.ceil(len(ordered) / OP_SAMPLE))
    return {"op_n_points": per_op["fitted"]["n_points"], "op_mape": per_op["fitted"].get("mape", math.nan),
            "op_lowo_mape": per_op["lowo"].get("mape", math.nan), "op_coverage_median": per_op["coverage_median"],
            "by_workload": by_workload, "op_points_sample": ordered[::step]}


def _named_fitted(prior: Profile, fitted: Profile, free: Sequence[str], runs: Sequence[str],
                  fitted_on: Optional[FittedOn]) -> Profile:
    source = f"measurement: fitted by mallocbench calibrate on runs {', '.join(runs)}"
    sources = dict(prior.sources) | {f: source for f in free}
    if prior.one_tier and "fast_bandwidth" in free:
        sources |= {"slow_bandwidth": source + " (tied to fast_bandwidth: one tier)",
                    "copy_bandwidth": source + " (tied to fast_bandwidth: one tier)"}
    where = f" on {fitted_on.description} [{fitted_on.machine_id}]" if fitted_on else ""
    profile = dataclasses.replace(
        fitted, name=f"{prior.name}-fitted", sources=sources, fitted_on=fitted_on,
        description=f"{prior.description} Fitted to the measurements of runs {', '.join(runs)}{where}.")
    return from_dict(profile.to_dict(), f"fitted profile {profile.name}")


def write(calibration: Calibration, results_dir: str = "results", profiles_dir: Optional[str] = None) -> dict[str, Path]:
    """Write the report (JSON), the scatter plot (PNG) and the fitted profile beside the prior (a profile fitted
    on one machine's runs in the fits folder, as `<name>@<key>.json`: one fit per CPU, or per accelerator on
    a machine with one, `FittedOn.key`)."""
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = calibration.prior.name
    out = Path(results_dir) / "calibration"
    profiles = Path(profiles_dir) if profiles_dir else Path(__file__).resolve().parents[1] / "profiles"
    fitted, fitted_on = calibration.fitted.name, calibration.fitted.fitted_on
    paths = {"report": out / f"{name}.json", "plot": out / f"{name}.png",
             "profile": profiles / FITS / f"{fitted}@{fitted_on.key}.json" if fitted_on else
             profiles / f"{fitted}.json"}
    report = calibration.report
    artifacts.write_bytes(paths["report"], report_json(report))
    artifacts.write_bytes(paths["profile"], calibration.fitted.to_json().encode())

    panels = [("whole programs", report["points"], f"MAPE {report['mape']:.1%} (LOWO {report['lowo_mape']:.1%}), "
               f"tau {report['kendall_tau']:.2f} (LOWO {report['lowo_kendall_tau']:.2f})")]
    per_op = report.get("per_op", {})
    if calibration.op_rows:
        panels.append(("single ops", calibration.op_rows,
                       f"MAPE {per_op['fitted']['mape']:.1%} (LOWO {per_op['lowo']['mape']:.1%}), time-weighted "
                       f"{per_op['fitted']['weighted_error']:.1%} (LOWO {per_op['lowo']['weighted_error']:.1%})"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 5), squeeze=False)
    for ax, (what, rows, figures) in zip(axes[0], panels):
        measured = np.array([p["measured_s"] for p in rows])
        ax.scatter(measured, [p["predicted_s"] for p in rows], s=12 if what == "whole programs" else 4,
                   label="fitted on all points")
        ax.scatter(measured, [p["lowo_predicted_s"] for p in rows], s=12 if what == "whole programs" else 4,
                   marker="x", label="leave one workload out")
        lo, hi = measured.min() / 3, measured.max() * 3
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, label="y = x")
        ax.set(xscale="log", yscale="log", xlabel="measured seconds", ylabel="predicted seconds",
               title=f"{name}, {what} ({len(rows)})\n{figures}")
        ax.title.set_fontsize(8)
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


def check_one_machine(run_ids: Sequence[str], root: str = "results") -> None:
    """CalibrationError naming each run's machine when `run_ids` were measured on more than one machine (a profile
    describes one machine's timings: program runs and kernel runs alike)."""
    machines = {run_id: machine_of(store.read_manifest(run_id, root)) for run_id in run_ids}
    if len(set(machines.values())) > 1:
        found = ", ".join(f"{run_id} on {machine}" for run_id, machine in sorted(machines.items()))
        raise CalibrationError(f"the runs were measured on different machines ({found}); calibrate on the runs of "
                               "one machine")


def fitted_on_of(run_ids: Sequence[str], root: str = "results") -> Optional[FittedOn]:
    """The machine the first of `run_ids` was measured on, as a fitted profile records it (None for a run
    stored before runs recorded their machine's fields)."""
    manifest = store.read_manifest(run_ids[0], root)
    if machine_of(manifest) == UNKNOWN or not manifest.get("cpu_model") or not manifest.get("cpu_cores"):
        return None
    return FittedOn(str(manifest["cpu_model"]), int(manifest["cpu_cores"]), machine_of(manifest),
                    str(manifest.get("machine") or manifest["cpu_model"]), str(manifest.get("accelerator") or ""))


def points_from_store(root: str = "results", run_ids: Optional[Sequence[str]] = None,
                      instances: Optional[dict[str, Instance]] = None, statistic: str = "median",
                      ) -> tuple[list[Point], list[str]]:
    """The successful measurements of the runs as points, and the run ids they come from: the "cells" of runs
    of cells (nightly, measure) and the "measurements" of the sweeps and per-op runs. CalibrationError when
    the runs were measured on more than one machine (a profile describes one machine's timings). `instances`
    (instance file -> Instance) is a cache shared with `op_points_from_store`, so both levels price the
    same instance objects. `statistic` "min" takes a row's least time instead of its median: on a machine
    loaded by other processes the least is the program's own time, the median also holds waits for a core."""
    if statistic not in STATISTICS:
        raise CalibrationError(f"statistic {statistic!r}: not one of {', '.join(STATISTICS)}")
    ids = list(run_ids) if run_ids else None
    frame = pd.concat([store.read(table, root, run_ids=ids) for table in ("cells", "measurements")],
                      ignore_index=True)
    if frame.empty:
        raise CalibrationError(f"no measured rows in runs {', '.join(ids) if ids else 'of the store'}")
    frame = frame[(frame.status == "ok") & frame.median_s.notna()]
    check_one_machine(frame.run_id.unique(), root)
    instances = {} if instances is None else instances
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
            measured_s=float(row[f"{statistic}_s"]), noise=float(noise) if math.isfinite(noise) else math.nan,
            run_id=row["run_id"]))
    return points, sorted({p.run_id for p in points})


def op_points_from_store(root: str = "results", run_ids: Optional[Sequence[str]] = None,
                         instances: Optional[dict[str, Instance]] = None) -> list[OpPoint]:
    """The per-op times of the runs (the `op_times` table) as op points; runs without it give none. An op whose
    event holds only its dispatch (`op_alone.DISPATCH_ONLY`) and that its run did not time alone is left out."""
    frame = store.read("op_times", root, run_ids=list(run_ids) if run_ids else None)
    instances = {} if instances is None else instances
    out = []
    for row in frame.to_dict("records"):
        file = row.get("instance_file")
        if not isinstance(file, str):
            raise CalibrationError(f"run {row['run_id']}: op row {row['workload']}/{row['size']} {row['op']} "
                                   "has no instance_file")
        if file not in instances:
            instances[file] = Instance.from_json(artifacts.read_text(root, file))
        instance = instances[file]
        step = int(row["step"])
        if not 0 <= step < len(instance.ops) or instance.ops[step].name != row["op"]:
            raise CalibrationError(f"run {row['run_id']}: op row {row['op']} is not step {step} of {file}")
        if row["opcode"] in DISPATCH_ONLY and not row.get("timed_alone"):
            continue  # its event held only its dispatch (a run from before such ops were timed alone): not its time
        if row["measured_s"] > 0:  # an op whose events all took under the clock's resolution is left out
            events = 0.0 if row.get("timed_alone") else float(row.get("executions", 0) or 0)
            out.append(OpPoint(row["workload"], row["size"], instance, step, float(row["measured_s"]),
                               float(row["coverage"]), row["run_id"], events))
    return out
