"""Calibration: fitting a profile to times made by a hidden profile, the report, bad input."""

import dataclasses
import json
import math
import runpy
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from harness import Mapping, load_profile
from harness import extract
from harness.runs.calibration import (CalibrationError, OpPoint, Point, calibrate, evaluate, fit, fit_figures,
                                     free_figures, noise_kendall_tau, run_spread, write)
from harness.cli.main import main
from harness.model import FittedOn
from harness.model.profiles import from_dict
from harness.model.simulator import simulate, simulate_ops

PRIOR = load_profile("cpu-local")
HIDDEN = dataclasses.replace(PRIOR, flop_rate=PRIOR.flop_rate * 3, vector_flop_rate=PRIOR.vector_flop_rate / 2,
                             fast_bandwidth=PRIOR.fast_bandwidth / 2,
                             slow_bandwidth=PRIOR.fast_bandwidth / 2, copy_bandwidth=PRIOR.fast_bandwidth / 2,
                             op_overhead_seconds=PRIOR.op_overhead_seconds * 5)


def _mlp(x, w):
    for _ in range(3):
        x = jnp.maximum(x @ w, 0.0)
    return x.sum()


def _elementwise(x, w):
    return (x * 2.0 + 1.0).sum() + w.sum()


def _chain(x, w):
    return (x @ w @ w.T @ w).mean()


def _many_small(x, w):
    for _ in range(12):
        x = x + 1.0
    return x @ w


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(0)
    out = []
    for fn in (_mlp, _elementwise, _chain, _many_small):
        for n in (32, 128, 384):
            args = (np.ones((n, n), np.float32), np.full((n, n), 0.01, np.float32))
            instance = extract(fn, *args, name=f"{fn.__name__}/{n}")
            mapping = Mapping({b.id: 0 for b in instance.buffers}, len(instance.buffers), instance.name, "xla-native")
            measured = simulate(instance, mapping, HIDDEN) * float(np.exp(rng.normal(0, 0.02)))
            out.append(Point(fn.__name__, str(n), "xla-native", None, instance, mapping, measured, 0.01, "run-a"))
    return out


def test_free_figures_are_those_of_the_op_kinds_present(points):
    # dots, elementwise ops and reductions; no convolution, data movement, loop or transcendental;
    # one tier: no slow bandwidth
    assert free_figures(PRIOR, points) == (
        "flop_rate", "vector_flop_rate", "reduction_flop_rate", "fast_bandwidth", "cache_bandwidth", "cache_bytes",
        "matmul_half_flops", "matmul_parallel_flops", "op_overhead_seconds", "program_overhead_seconds",
        "argument_seconds")
    no_saturation = dataclasses.replace(PRIOR, matmul_half_flops=0.0)  # a zero prior: the effect is off
    assert "matmul_half_flops" not in free_figures(no_saturation, points)


@pytest.fixture(scope="module")
def op_points(points):
    """Every op with time of the points' programs, timed by the hidden profile."""
    out = []
    for p in points:
        seconds = simulate_ops(p.instance, p.mapping, HIDDEN)["elapsed"]
        out += [OpPoint(p.workload, p.size, p.instance, step, float(t), 1.0, "run-a")
                for step, t in enumerate(seconds) if t > 0]
    return out


def test_a_figure_no_time_depends_on_is_held_at_its_prior(points):
    # In the hidden world memory is never the bound: no fitted bandwidth can be told from a faster one.
    fast_memory = dataclasses.replace(HIDDEN, fast_bandwidth=PRIOR.fast_bandwidth * 1e4,
                                      slow_bandwidth=PRIOR.fast_bandwidth * 1e4, copy_bandwidth=PRIOR.fast_bandwidth * 1e4)
    measured = [dataclasses.replace(p, measured_s=simulate(p.instance, p.mapping, fast_memory)) for p in points]
    fitted, held, trace_s = fit_figures(measured, PRIOR)
    assert trace_s == 0.0  # no op point was traced
    assert "fast_bandwidth" in held and "not identified" in held["fast_bandwidth"]
    assert fitted.fast_bandwidth == PRIOR.fast_bandwidth  # held, not pushed to the bound


def test_fit_recovers_the_hidden_profile(points):
    fitted = fit(points, PRIOR)
    predicted = np.array([simulate(p.instance, p.mapping, fitted) for p in points])
    measured = np.array([p.measured_s for p in points])
    assert np.mean(np.abs(predicted - measured) / measured) < 0.05
    assert fitted.slow_bandwidth == fitted.copy_bandwidth == fitted.fast_bandwidth  # one tier stays tied
    for figure in ("flop_rate", "op_overhead_seconds"):  # moved towards the hidden value
        assert abs(math.log(getattr(fitted, figure) / getattr(HIDDEN, figure))) < \
            abs(math.log(getattr(PRIOR, figure) / getattr(HIDDEN, figure))), figure


def test_calibrate_reports_fitted_and_leave_one_workload_out(points, tmp_path):
    calibration = calibrate(points, PRIOR, ["run-a"])
    report = calibration.report
    assert report["n_points"] == len(points)
    assert report["mape"] < 0.05 and report["kendall_tau"] > 0.9
    assert report["mape"] < report["prior_mape"]
    assert report["lowo_mape"] >= report["mape"] * 0.5 and math.isfinite(report["lowo_kendall_tau"])
    assert {p["lowo_predicted_s"] for p in report["points"]} != {p["predicted_s"] for p in report["points"]}
    assert calibration.fitted.name == "cpu-local-fitted"
    assert "run-a" in calibration.fitted.sources["flop_rate"]

    paths = write(calibration, str(tmp_path / "results"), str(tmp_path / "profiles"))
    saved = json.loads(paths["report"].read_text())
    for key in ("n_points", "mape", "kendall_tau", "lowo_mape", "lowo_kendall_tau", "top1_slowdown", "run_ids"):
        assert key in saved, key
    assert saved["run_ids"] == ["run-a"]
    assert math.isnan(saved["run_spread"]) and math.isnan(saved["noise_kendall_tau"])  # one run: nothing to compare
    assert from_dict(json.loads(paths["profile"].read_text())) == calibration.fitted
    assert load_profile(str(paths["profile"])).flop_rate == calibration.fitted.flop_rate
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_fit_of_one_machine_records_it_and_is_written_among_the_fits(points, tmp_path):
    on = FittedOn("Intel(R) Xeon(R) Processor", 2, "753295985f77", "Intel(R) Xeon(R) Processor, 2 cores")
    calibration = calibrate(points, PRIOR, ["run-a"], free=("flop_rate",), fitted_on=on)
    assert calibration.fitted.fitted_on == on and "[753295985f77]" in calibration.fitted.description
    paths = write(calibration, str(tmp_path / "results"), str(tmp_path / "profiles"))
    assert paths["profile"] == tmp_path / "profiles" / "fits" / "cpu-local-fitted@intel-xeon-processor-2c.json"
    assert load_profile(str(paths["profile"])).fitted_on == on


def test_calibrate_on_ops_and_programs_reports_both_levels(points, op_points):
    calibration = calibrate(points, PRIOR, ["run-a"], op_points)
    report = calibration.report
    per_op = report["per_op"]
    assert per_op["fitted"]["n_points"] == report["op_n_points"] == len(op_points) == len(calibration.op_rows)
    assert 0 < len(report["op_points_sample"]) <= 400 and "op_points" not in report  # the points are in the store
    assert set(report["by_workload"]) == {p.workload for p in points}
    assert per_op["fitted"]["mape"] < per_op["prior"]["mape"] and per_op["fitted"]["mape"] < 0.1
    assert report["mape"] < 0.05 and math.isfinite(per_op["lowo"]["mape"])
    assert set(per_op["fitted"]["by_kind"]) == {p.kind for p in op_points}
    assert all(v["status"] for v in report["figures"].values())


def test_the_profilers_cost_in_traced_op_events_is_fitted_apart_from_the_profile(points, op_points):
    # The hidden world's traced op points each hold 0.4 us per event (one event per op here, four in a loop of
    # four executions); whole runs are untraced. Fitting without that cost pulls the per-op overhead up.
    trace_s = 4e-7
    events = [4.0 if k % 5 == 0 else 1.0 for k in range(len(op_points))]
    traced = [dataclasses.replace(p, measured_s=p.measured_s + e * trace_s, events=e) for p, e in zip(op_points, events)]
    fitted, held, fitted_trace_s = fit_figures(points, PRIOR, None, traced)
    assert fitted_trace_s == pytest.approx(trace_s, rel=0.15)
    assert fitted.op_overhead_seconds == pytest.approx(HIDDEN.op_overhead_seconds, rel=0.15)
    untraced_fit, _, _ = fit_figures(points, PRIOR, None, [dataclasses.replace(p, events=0.0) for p in traced])
    assert abs(math.log(untraced_fit.op_overhead_seconds / HIDDEN.op_overhead_seconds)) > \
        abs(math.log(fitted.op_overhead_seconds / HIDDEN.op_overhead_seconds))
    report = calibrate(points, PRIOR, ["run-a"], traced).report
    assert report["trace_event_seconds"]["fitted"] == pytest.approx(trace_s, rel=0.15)
    assert "trace_event_seconds" not in report["figures"] and not hasattr(fitted, "trace_event_seconds")
    assert report["per_op"]["fitted"]["mape"] < 0.1  # the per-op predictions hold the cost, as the points do


def test_top1_slowdown_is_the_measured_time_of_the_predicted_best(points):
    a, b = points[0], points[1]
    pair = [dataclasses.replace(a, policy="p", budget=0.5, measured_s=2.0),
            dataclasses.replace(a, policy="q", budget=0.5, measured_s=1.0)]
    wrong = evaluate(pair, np.array([1.0, 3.0]))  # ranks p first, but q is faster
    assert wrong["top1_slowdown"]["per_group"] == {f"{a.workload}/{a.size}/0.5@{a.run_id}": 2.0}
    right = evaluate(pair, np.array([3.0, 1.0]))
    assert right["top1_slowdown"]["max"] == 1.0


def test_noise_kendall_tau_is_the_tau_of_each_programs_mean_over_the_runs(points):
    a, b, c = (dataclasses.replace(p, run_id="run-a") for p in points[:3])
    assert math.isnan(noise_kendall_tau([a, b, c]))  # each program measured once
    times = {"run-a": (1.0, 2.0, 3.0), "run-b": (1.0, 2.0, 3.0)}
    again = [dataclasses.replace(p, run_id=r, measured_s=t) for r, ts in times.items() for p, t in zip((a, b, c), ts)]
    assert noise_kendall_tau(again) == pytest.approx(1.0)  # the runs agree: no noise
    # run-b swaps the first two: the means (1.41, 1.41, 3) tie them, and each run's order of the two is lost
    swapped = again[:3] + [dataclasses.replace(p, measured_s=t) for p, t in zip(again[3:], (2.0, 1.0, 3.0))]
    tau = noise_kendall_tau(swapped)
    assert tau == pytest.approx(scipy.stats.kendalltau([1, 2, 3, 2, 1, 3], [2 ** 0.5, 2 ** 0.5, 3] * 2).statistic)
    assert 0.5 < tau < 1.0


def test_run_spread_is_the_mean_log_range_of_each_program_over_the_runs(points):
    a, b = (dataclasses.replace(p, run_id="run-a") for p in points[:2])
    assert math.isnan(run_spread([a, b]))  # each program measured once
    twice = [a, b, dataclasses.replace(a, run_id="run-b", measured_s=a.measured_s * math.e ** 0.2),
             dataclasses.replace(b, run_id="run-b", measured_s=b.measured_s / math.e ** 0.1)]
    assert run_spread(twice) == pytest.approx(0.15)  # (0.2 + 0.1) / 2
    thrice = twice + [dataclasses.replace(a, run_id="run-c", measured_s=a.measured_s / math.e ** 0.3)]
    assert run_spread(thrice) == pytest.approx((0.5 + 0.1) / 2)  # a's range over three runs: +0.2 to -0.3


def test_bad_input_is_named(points):
    with pytest.raises(CalibrationError, match="no points"):
        fit([], PRIOR)
    with pytest.raises(CalibrationError, match="not a positive number"):
        fit([dataclasses.replace(points[0], measured_s=0.0)] + points[1:], PRIOR)
    with pytest.raises(CalibrationError, match="unknown figure 'warp_speed'"):
        fit(points, PRIOR, free=("warp_speed",))
    with pytest.raises(CalibrationError, match="2 points cannot fit 11 figures"):
        fit(points[:2], PRIOR)
    with pytest.raises(CalibrationError, match="step 999 is not an op"):
        fit(points, PRIOR, op_points=[OpPoint("w", "s", points[0].instance, 999, 1.0, 1.0, "run-a")])
    with pytest.raises(CalibrationError, match="'loop_iteration_seconds' is 0 in the prior"):
        fit(points, dataclasses.replace(PRIOR, loop_iteration_seconds=0.0), free=("loop_iteration_seconds",))


def test_calibrate_command_names_a_missing_run(tmp_path, capsys):
    assert main(["calibrate", "--runs", "nope", "--profile", "cpu-local", "--results", str(tmp_path)]) == 2
    assert "nope" in capsys.readouterr().err
    assert not (tmp_path / "calibration").exists()


KERNELS = runpy.run_path(str(Path(__file__).resolve().parents[1] / "scripts" / "calibration_kernels.py"))


@pytest.mark.parametrize("kernel", ["sort_rows", "loop_steps", "grouped_convs"])
def test_calibration_kernels_build_at_ci_and_name_the_valid_sizes(kernel):
    fn, args = KERNELS[kernel]("ci")
    assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree_util.tree_leaves(fn(*args)))
    with pytest.raises(ValueError, match="unknown size 'huge'; valid sizes: ci, small, medium, full"):
        KERNELS[kernel]("huge")
