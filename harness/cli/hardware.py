"""`mallocbench measure`, `optimes`, `results` and `calibrate`: the hardware loop on the command line."""

from __future__ import annotations

import argparse
import math

from rich.table import Table

from harness.cli.common import (add_command, add_results_option, add_time_limits, console, err_console, parse_budget,
                                 parse_list, plugin_problems, print_plugin_problems, progress)
from harness.results import store
from harness.runs import cells


def cmd_measure(args: argparse.Namespace) -> int:
    """Measure a suite's programs under each policy and budget on the local device; store every cell."""
    import jax

    import workloads

    print_plugin_problems(plugin_problems())
    names, policies, problems = cells.usable(
        parse_list(args.workloads, "workload") if args.workloads else workloads.names(args.suite),
        parse_list(args.policies, "policy"))
    print_plugin_problems(problems)
    spec = cells.make_spec(
        "measure", args.suite, names, policies, [parse_budget(b) for b in parse_list(args.budgets, "budget")],
        args.profile, sizes=parse_list(args.sizes, "size"), seed=args.seed, solve_time_limit=args.solve_time_limit,
        measure_time_limit=args.time_limit)
    run_id = cells.plan(spec, args.results, label=args.label,
                        plugin_problems=[str(p) for p in [*plugin_problems(), *problems]])
    rows = []
    with progress() as bar:
        task = bar.add_task("measuring", total=len(spec.cells()))

        def done(row: dict) -> None:
            rows.append(row)
            bar.update(task, advance=1, description=f"{row['workload']}@{row['size']} {row['policy']}")

        try:
            cells.run_local(spec, run_id, args.results, on_cell=done)
        except BaseException:
            store.finish_run(run_id, args.results, status="interrupted", **cells.counts(run_id, args.results))
            raise
    counts = cells.counts(run_id, args.results)
    store.finish_run(run_id, args.results, **counts)
    _print_rows(cells.mark_fastest(rows), f"run {run_id} ({jax.devices()[0].device_kind}, profile {spec.profile})")
    console.print(f"{counts['cells_ok']} of {len(rows)} cells measured; stored as run {run_id} in {args.results}")
    return 1 if counts["cells_failed"] else 0


def cmd_results(args: argparse.Namespace) -> int:
    """List the stored runs, or show one run's cells (or an older run's measurements) as a table."""
    if args.run is None:
        runs = store.list_runs(args.results)
        table = Table(title=f"runs in {args.results}")
        for col in runs.columns:
            table.add_column(str(col))
        for rec in runs.itertuples(index=False):
            table.add_row(*["" if _missing(v) else str(v) for v in rec])
        console.print(table)
        console.print(f"{len(runs)} runs")
        return 0
    manifest = store.read_manifest(args.run, args.results)
    table = "measurements" if manifest.get("kind") == "sweep" else "cells"
    rows = store.read(table, args.results, run_ids=[args.run]).to_dict("records")
    _print_rows(rows if table == "measurements" else cells.mark_fastest(rows), f"run {args.run}")
    return 0


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _print_rows(rows: list[dict], title: str) -> None:
    table = Table(title=title)
    for col in ("workload", "size", "policy", "budget", "status", "median", "IQR", "samples", "simulated", "fastest"):
        table.add_column(col, justify="left" if col in ("workload", "size", "policy", "status") else "right")
    for r in rows:
        ok = r.get("status") == "ok"
        table.add_row(
            r["workload"], r["size"], r["policy"], "-" if _missing(r.get("budget")) else f"{r['budget']:.2f}",
            "ok" if ok else f"[red]failed[/] {str(r.get('error', '')).splitlines()[0][:60] if r.get('error') else ''}",
            _ms(r.get("median_s")), _ms(r.get("iqr_s")), str(len(r.get("samples", []))),
            _ms(r.get("simulated_s", r.get("predicted_s"))), "*" if r.get("selected") is True else "")
    console.print(table)


def _ms(seconds) -> str:
    return "-" if _missing(seconds) else f"{seconds * 1e3:.3f} ms"


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Fit a profile to stored measurements; write the report, the plot and the fitted profile."""
    from harness.runs.calibration import (CalibrationError, calibrate, check_one_machine, fitted_on_of,
                                          op_points_from_store, points_from_store, write)
    from harness.model.profiles import load_profile

    prior = load_profile(args.profile)
    runs, instances = parse_list(args.runs, "run"), {}
    kernel_runs = parse_list(args.kernel_runs, "run") if args.kernel_runs else ()
    check_one_machine(runs + kernel_runs, args.results)  # kernel runs too: one machine's timings
    points, run_ids = points_from_store(args.results, runs, instances=instances, statistic=args.statistic)
    op_points = op_points_from_store(args.results, runs, instances)
    if kernel_runs:  # their ops join the fit; their programs are not scored
        kernel_ops = op_points_from_store(args.results, kernel_runs, instances)
        if not kernel_ops:
            raise CalibrationError(f"kernel runs {', '.join(kernel_runs)} hold no per-op times (table op_times)")
        op_points += kernel_ops
    with err_console.status(f"fitting {prior.name} to {len(points)} programs and {len(op_points)} ops "
                            "(and leaving each workload out)"):
        calibration = calibrate(points, prior, run_ids, op_points, statistic=args.statistic,
                                fitted_on=fitted_on_of(runs, args.results))
        paths = write(calibration, args.results, args.profiles_dir)
    r = calibration.report
    table = Table(title=f"calibration of {prior.name} on {r['n_points']} points, {r['n_workloads']} workloads "
                  f"(runs {', '.join(run_ids)})")
    for col in ("", "prior", "fitted", "leave one workload out"):
        table.add_column(col, justify="left" if not col else "right")
    table.add_row("MAPE", f"{r['prior_mape']:.1%}", f"{r['mape']:.1%}", f"{r['lowo_mape']:.1%}")
    table.add_row("Kendall tau", f"{r['prior_kendall_tau']:.3f}", f"{r['kendall_tau']:.3f}", f"{r['lowo_kendall_tau']:.3f}")
    table.add_row("tau within workloads", "", f"{r['kendall_tau_within']:.3f}", f"{r['lowo_kendall_tau_within']:.3f}")
    table.add_row("top-1 slowdown (max)", "", f"{r['top1_slowdown']['max']:.3f}", f"{r['lowo_top1_slowdown']['max']:.3f}")
    table.add_row("measurement noise (median)", "", f"{r['noise']:.2%}", "")
    if not math.isnan(r["noise_kendall_tau"]):
        table.add_row(f"run-to-run spread, {r['statistic']} (mean |log ratio|)", "", f"{r['run_spread']:.3f}", "")
        table.add_row("Kendall tau of the runs' mean (noise's reach)", "", f"{r['noise_kendall_tau']:.3f}", "")
    ops = r["per_op"]
    if ops["fitted"]["n_points"]:
        table.add_row(f"per-op MAPE ({ops['fitted']['n_points']} ops)", f"{ops['prior']['mape']:.1%}",
                      f"{ops['fitted']['mape']:.1%}", f"{ops['lowo']['mape']:.1%}")
        table.add_row("per-op time-weighted error", f"{ops['prior']['weighted_error']:.1%}",
                      f"{ops['fitted']['weighted_error']:.1%}", f"{ops['lowo']['weighted_error']:.1%}")
        table.add_row("ops' share of program time (median)", "", f"{ops['coverage_median']:.1%}", "")
        trace = r["trace_event_seconds"]
        if trace["fitted"]:
            table.add_row("profiler's cost per traced op event (per-op points only)", f"{trace['prior'] * 1e6:.2f} us",
                          f"{trace['fitted'] * 1e6:.2f} us", "")
    console.print(table)
    figures = Table(title="figures")
    for col in ("figure", "prior", "fitted", "status"):
        figures.add_column(col, justify="right" if col in ("prior", "fitted") else "left")
    for name, v in r["figures"].items():
        if v["prior"] is not None:
            figures.add_row(name, f"{v['prior']:.4g}", f"{v['fitted']:.4g}", v["status"])
    console.print(figures)
    for what, path in paths.items():
        console.print(f"{what}: {path}")
    return 0


def cmd_optimes(args: argparse.Namespace) -> int:
    """Time a suite's programs whole and op by op on the local device (jax.profiler); store both."""
    import workloads
    from harness.model.profiles import default_profile, load_profile
    from harness.runs.op_times import OpTimesSpec, run_op_times
    import jax

    names = parse_list(args.workloads, "workload") if args.workloads else workloads.names(args.suite)
    spec = OpTimesSpec(tuple(names), tuple(parse_list(args.sizes, "size")),
                       load_profile(args.profile or default_profile(jax.default_backend())),
                       rounds=args.rounds, calls=args.calls)
    table = Table(title=f"whole and per-op times on {jax.devices()[0].device_kind}")
    for col in ("program", "whole (median of rounds' least)", "ops' share of it", "profiled call"):
        table.add_column(col, justify="left" if col == "program" else "right")

    def done(row: dict) -> None:
        table.add_row(f"{row['workload']}@{row['size']}", _ms(row["median_s"]), f"{row['op_coverage']:.1%}",
                      _ms(row["traced_s"]))

    with err_console.status(f"timing {len(names)} workloads x {len(spec.sizes)} sizes, {spec.rounds} rounds"):
        run_id = run_op_times(spec, args.results, label=args.label, on_program=done)
    console.print(table)
    console.print(f"run {run_id}")
    return 0


def _add_programs(p: argparse.ArgumentParser, suites, sizes) -> None:
    """`--suite`, `--workloads` and `--sizes`: the programs a command measures."""
    p.add_argument("--suite", default="ci", choices=suites)
    p.add_argument("--workloads", metavar="W1,W2", help="workloads of the suite to measure (default: all)")
    p.add_argument("--sizes", default="ci", metavar="S1,S2", help=f"sizes, of {', '.join(sizes)} (default: ci)")


def add_commands(sub, suites, sizes) -> None:
    """Register the loop's subcommands on the `mallocbench` parser."""
    from agent.registry import policies
    from harness.device.realization import NATIVE

    p = add_command(sub, "measure", cmd_measure,
                    help="measure a suite under policies and budgets on this device; store the rows",
                    description="Extract each workload's scoped program, map it with each policy at each "
                    "budget, realize the mapping, time it, simulate it, and append every row to the results "
                    "store (one run). On a one-tier backend (CPU) mappings are not realizable and the "
                    "untouched program is timed.")
    _add_programs(p, suites, sizes)
    p.add_argument("--policies", default=NATIVE, metavar="P1,P2",
                   help=f"policies, of {', '.join([NATIVE] + policies())} (default: {NATIVE})")
    p.add_argument("--budgets", default="0.5", metavar="B1,B2",
                   help="fast memory budgets as fractions of peak live bytes (default: 0.5); "
                   "xla-native and all-fast are measured once, without a budget")
    p.add_argument("--profile", metavar="NAME", help="profile for the predictions (default: the backend's)")
    p.add_argument("--seed", type=int, default=0)
    add_time_limits(p, measure_s=5.0, solve_s=30.0, searchers="cpsat")
    p.add_argument("--label", default="measure", help="label in the run id (default: measure)")
    add_results_option(p)

    p = add_command(sub, "optimes", cmd_optimes,
                    help="time a suite's programs whole and op by op (the profiler); store both",
                    description="Compile each workload's scoped program at each size and time it in interleaved "
                    "rounds: whole (the least of a round's calls; the median over rounds is stored as an "
                    "xla-native measurement) and op by op from jax.profiler's per-op events (table op_times). "
                    "`mallocbench calibrate` fits on both.")
    _add_programs(p, suites, sizes)
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds over the programs (default: 5)")
    p.add_argument("--calls", type=int, default=5, help="calls per program per round, each way (default: 5)")
    p.add_argument("--profile", metavar="NAME", help="profile for the stored predictions (default: the backend's)")
    p.add_argument("--label", default="op-times", help="label in the run id (default: op-times)")
    add_results_option(p)

    p = add_command(sub, "results", cmd_results, help="list the stored runs, or show one run as a table")
    p.add_argument("run", nargs="?", help="run id to show (default: list the runs)")
    add_results_option(p)

    p = add_command(sub, "calibrate", cmd_calibrate,
                    help="fit a profile to measured runs and report the simulator's accuracy",
                    description="Fit the profile's free figures (flop rates, bandwidths, per-op overhead, copy "
                    "bandwidth) to the runs' measurements by robust least squares on log time; report MAPE, "
                    "Kendall tau and top-1 slowdown, fitted and leaving each workload out, beside the noise. "
                    "The noise's reach is the tau a model that knew each program's mean time over the runs would "
                    "score. Writes RESULTS/calibration/PROFILE.json and .png, and the fitted profile as "
                    "fits/PROFILE-fitted@<key>.json beside the shipped profiles (one fit per CPU, or per accelerator "
                    "on a machine with one; `cpu-local-fitted` loads the host CPU's).")
    p.add_argument("--runs", required=True, metavar="R1,R2", help="run ids to fit on (see `mallocbench results`)")
    p.add_argument("--profile", required=True, metavar="NAME", help="the prior profile (a shipped name or a file)")
    p.add_argument("--kernel-runs", metavar="R1,R2",
                   help="runs of calibration kernels (scripts/calibration_kernels.py): their per-op times join the "
                   "fit, their programs are not scored")
    add_results_option(p)
    p.add_argument("--statistic", choices=("median", "min"), default="median",
                   help="a measurement's time to fit: its median (default) or its least (on a loaded machine)")
    p.add_argument("--profiles-dir", metavar="DIR",
                   help="where to write the fitted profile (default: the shipped profiles' folder; a fit of one "
                   "machine's runs goes in its fits/ folder)")
