"""`mallocbench nightly`: the main job, from a suite to the stored cells, the calibration and the report."""

from __future__ import annotations

import argparse
import math
import time

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from harness.cli.common import add_command, add_results_option, add_time_limits, console, err_console
from harness.cli.common import plugin_problems, print_plugin_problems
from harness.humanize import human_budget

_GRID_OPTIONS = ("workloads", "policies", "budgets", "profile")


def _bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("[red]{task.fields[failed]} failed[/] · {task.fields[left]} left"),
                    TimeElapsedColumn(), TextColumn("to go"), TimeRemainingColumn(), console=err_console)


def cmd_nightly(args: argparse.Namespace) -> int:
    """Run (or resume, or run one cell of) a night: one run per profile; then calibrate, report, and print what
    was simulated and measured and the headline of each profile."""
    from harness.cli.common import parse_budget, parse_list
    from harness.runs import cells, nightly

    root = args.results
    if args.cell is not None and not args.resume:
        raise ValueError("--cell needs --resume RUN_ID: plan the run first with --plan-only")
    if args.resume:
        given = [f"--{o}" for o in _GRID_OPTIONS if getattr(args, o) is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: a resumed run keeps the grid of its manifest")
        runs = [(cells.load_run(args.resume, root)[0], args.resume)]
    else:
        import jax

        print_plugin_problems(plugin_problems())
        names, policies, problems = cells.usable(
            parse_list(args.workloads, "workload") if args.workloads else _suite(args.suite),
            parse_list(args.policies, "policy") if args.policies else nightly.default_policies())
        print_plugin_problems(problems)
        profiles = parse_list(args.profile, "profile") if args.profile else \
            nightly.default_profiles(jax.default_backend(), jax.devices()[0].device_kind)
        budgets = [parse_budget(b) for b in parse_list(args.budgets, "budget")] if args.budgets else None
        specs = [nightly.make_spec(args.suite, names, policies, budgets, profile,
                                   solve_time_limit=args.solve_time_limit, measure_time_limit=args.time_limit)
                 for profile in profiles]  # every spec checked before any run starts
        left_out = [str(p) for p in [*plugin_problems(), *problems]]
        runs = [(spec, cells.plan(spec, root, args.executor, plugin_problems=left_out)) for spec in specs]
    if args.cell is not None:
        spec, run_id = runs[0]
        grid = spec.cells()
        if not 0 <= args.cell < len(grid):
            raise ValueError(f"--cell {args.cell}: run {run_id} has cells 0 to {len(grid) - 1}")
        row = cells.run_cell(spec, grid[args.cell], run_id, root)
        console.print(f"cell {args.cell} of run {run_id}: {_describe(row)}")
        return 1 if row["status"] == "failed" else 0
    if args.plan_only:
        for spec, run_id in runs:
            n = len(spec.cells())
            console.print(f"planned run {run_id} (profile {spec.profile}): {n} cells (0 to {n - 1}); run one with\n"
                          f"  mallocbench nightly --resume {run_id} --cell INDEX --results {root}\n"
                          f"and gather them with  mallocbench nightly --resume {run_id} --results {root}")
        return 0
    t0, status = time.perf_counter(), 0
    for spec, run_id in runs:
        outcome = _run(spec, run_id, args)
        if outcome == 130:
            return outcome
        status = max(status, outcome)
    if not args.no_report:
        _report([run_id for _, run_id in runs], root)
    console.print(f"night of {len(runs)} run(s) in {time.perf_counter() - t0:.0f} s")
    return status


def _suite(suite: str) -> list[str]:
    import workloads

    return workloads.names(suite)


def _run(spec, run_id: str, args: argparse.Namespace) -> int:
    """Run one run's pending cells with a progress bar, then calibrate and close it; 130 when interrupted,
    1 when cells failed or are missing, else 0."""
    from harness.runs import cells, nightly

    root = args.results
    grid = spec.cells()
    todo = cells.pending(spec, run_id, root)
    console.print(f"run {run_id}: suite {spec.suite}, {len(spec.workloads)} workloads, {len(grid)} cells "
                  f"({len(grid) - len(todo)} done before), profile {spec.profile}, executor {args.executor}")
    t0 = time.perf_counter()
    try:
        with _bar() as bar:
            failed = [0]
            task = bar.add_task("cells", total=len(grid), completed=len(grid) - len(todo), failed=0, left=len(todo))

            def done(row: dict) -> None:
                failed[0] += row.get("status") == "failed"
                bar.update(task, advance=1, failed=failed[0], left=bar.tasks[0].total - bar.tasks[0].completed - 1,
                           description=f"{spec.profile} {row.get('workload', '')} {row.get('policy', '')}")

            if args.executor == "ray":
                cells.run_ray(spec, run_id, root, address=args.address, on_cell=done)
            else:
                cells.run_local(spec, run_id, root, on_cell=done)
    except KeyboardInterrupt:
        from harness.results import store

        store.finish_run(run_id, root, status="interrupted")
        err_console.print(f"interrupted; the finished cells are stored. Resume with: "
                          f"mallocbench nightly --resume {run_id} --results {root}")
        return 130
    with err_console.status("calibrating on the measured cells"):
        summary = nightly.finish(run_id, root)
    console.print(f"{summary['cells_ok']} cells ok, {summary['cells_failed']} failed, {summary['cells_missing']} "
                  f"missing in {time.perf_counter() - t0:.0f} s; stored as run {run_id} in {root}")
    _print_calibration(summary["calibration"])
    return 1 if summary["cells_failed"] or summary["cells_missing"] else 0


def _describe(row: dict) -> str:
    if row.get("skipped"):
        return "already stored, not run again"
    if row["status"] == "failed":
        return f"failed at {row['stage']}: {row['error'].splitlines()[0]}"
    measured = "" if math.isnan(row["median_s"]) else f", measured {row['median_s'] * 1e3:.3f} ms"
    return (f"{row['workload']} {row['policy']} budget {human_budget(row['budget'])}: simulated "
            f"{row['simulated_s'] * 1e3:.3f} ms{measured}")


def _print_calibration(calibration) -> None:
    if not calibration:
        return
    if "skipped" in calibration:
        console.print(f"calibration skipped: {calibration['skipped']}")
        return
    if "not_fitted" in calibration:
        console.print(f"no figure fitted ({calibration['not_fitted']}); {calibration['profile']} as it is:")
    console.print(f"calibration of {calibration['profile']} on {calibration['n_points']} measured cells: MAPE {calibration['mape']:.1%} "
                  f"(leave one workload out {calibration['lowo_mape']:.1%}), Kendall tau "
                  f"{calibration['kendall_tau']:.3f} ({calibration['lowo_kendall_tau']:.3f})")


def _write_report(run_id: str, root: str, out_dir=None) -> dict:
    """The report of a run with its history and regressions."""
    from harness.runs import history as regressions
    from harness.report import build as report
    from harness.results import store

    past = regressions.nightly_history(root, store.read_manifest(run_id, root))
    return report.build_report(run_id, root, out_dir, history=past, regressions=regressions.regressions(past))


def _report(run_ids: list[str], root: str) -> None:
    """Write each run's report and the index; print what was simulated and measured, each profile's headline,
    the regressions (or that a run is its machine's first night) and the reports' paths."""
    from harness.model.profiles import load_profile
    from harness.report import build as report

    written = {run_id: _write_report(run_id, root) for run_id in run_ids}
    report.write_index(root)
    runs = [report.read_run(run_id, root)[:2] for run_id in run_ids]
    console.print(escape(report.what_ran(runs)), soft_wrap=True)  # the machine id in brackets is not markup
    for (manifest, _), (run_id, paths) in zip(runs, written.items()):
        head = report.headline_text(paths["headline"]) if len(paths["headline"]) else None
        table = Table(title=f"headline {manifest['profile']}: speedup over xla-msa, simulated, geometric mean "
                            "(share of the room captured)")
        for col in head.columns if head is not None else []:
            table.add_column(str(col), justify="left" if col == "policy" else "right")
        for rec in head.itertuples(index=False) if head is not None else []:
            table.add_row(*[escape(str(v)) for v in rec])
        console.print(table)
        if load_profile(manifest["profile"]).one_tier:
            console.print("The profile has one memory tier: every mapping simulates alike. For the policies' "
                          "simulated speedups, pass a two-tier profile (--profile tpu-v4i-cmem,h100-offload).")
        if paths["nights"] <= 1:
            console.print(f"{manifest['profile']}: the first night of this suite and profile on this machine, "
                          "nothing to compare with: no regression flagged")
        elif paths["regressions_found"]:
            console.print(f"[red]{paths['regressions_found']} regressions flagged[/] against the "
                          f"{paths['nights'] - 1} earlier nights on this machine (see the report)")
        console.print(f"report: {paths['html']}", soft_wrap=True)


def cmd_compare(args: argparse.Namespace) -> int:
    """Print the differences between two runs' cells: medians, their ratio and p-value, simulated times."""
    from harness.runs.history import compare

    diff = compare(args.results, args.run_a, args.run_b, across_machines=args.across_machines)
    shown = diff if args.all else diff[diff.flag != ""]
    table = Table(title=f"{args.run_b} against {args.run_a} ({len(shown)} of {len(diff)} cells"
                  f"{'' if args.all else ' differ'})")
    for col in ("workload", "size", "policy", "budget", "simulated A", "simulated B", "median A", "median B",
                "B / A", "p", "flag"):
        table.add_column(col, justify="left" if col in ("workload", "size", "policy", "flag") else "right")
    for r in shown.itertuples(index=False):
        table.add_row(r.workload, r.size, r.policy, "-" if math.isnan(r.budget) else f"{r.budget:.2f}",
                      _ms(r.simulated_a), _ms(r.simulated_b), _ms(r.median_a), _ms(r.median_b),
                      "-" if math.isnan(r.ratio) else f"{r.ratio:.3f}", "-" if math.isnan(r.p_value) else f"{r.p_value:.1e}",
                      r.flag)
    console.print(table)
    counts = diff.flag.value_counts()
    console.print(", ".join(f"{int(counts.get(f, 0))} {f}" for f in (
        "slower", "faster", "simulated worse", "simulated better", "failed in A", "failed in B", "failed in both",
        "only in A", "only in B")))
    return 0


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1e3:.4f} ms"


def cmd_report(args: argparse.Namespace) -> int:
    """Write a run's report (tables, plots, HTML page) and the index over runs; print their paths."""
    from harness.report import build as report

    paths = _write_report(args.run, args.results, args.output)
    console.print(f"report: {paths['html']} ({len(paths['tables'])} table files, {len(paths['plots'])} plot files "
                  f"beside it; {paths['regressions_found']} regressions in this run)")
    console.print(f"index of runs: {report.write_index(args.results)}")
    return 0


def add_commands(sub) -> None:
    """Register `nightly`, `compare` and `report` on the `mallocbench` parser."""
    import workloads
    from harness.runs import cells, nightly

    p = add_command(
        sub, "nightly", cmd_nightly,
        help="the main job: run a suite's grid of workloads x policies x budgets and report it",
        description="Extract every workload of the suite (cached by the hash of its compiled program), solve it "
        "with every policy at every budget, validate and simulate the mapping, realize and measure it on the "
        "local device, store each cell as it finishes, calibrate the profile on the measured cells, compare "
        "with earlier nights and write the report. A killed run resumes with --resume and redoes no finished "
        "cell. Cells are numbered: --plan-only starts a run, --resume RUN --cell I runs one cell (an array "
        "job's task), and --resume RUN gathers and reports.")
    p.add_argument("--suite", default="ci", help=f"suite, of {', '.join(workloads.SUITES)} (default: ci)")
    p.add_argument("--workloads", metavar="W1,W2", help="workloads of the suite (default: all)")
    p.add_argument("--policies", metavar="P1,P2", help=f"policies (default: {','.join(nightly.default_policies())};"
                   " mallocmuzero where its checkpoint is present)")
    p.add_argument("--budgets", metavar="B1,B2", help="fast-memory budgets as fractions of peak live bytes "
                   "(default: 0.25,0.5,0.75)")
    p.add_argument("--profile", metavar="P1,P2", help="hardware profiles, one run each (default: with no "
                   f"accelerator the two-tier {','.join(nightly.TWO_TIER)}, simulated; on a GPU or TPU its own)")
    p.add_argument("--executor", default="local", choices=cells.EXECUTORS,
                   help="local (default; no Ray needed) or ray (pip install 'mallocbench[ray]')")
    p.add_argument("--address", metavar="ADDR", help="Ray cluster address (default: a local cluster, or "
                   "RAY_ADDRESS)")
    p.add_argument("--resume", metavar="RUN_ID", help="go on with a stored run; finished cells are not redone")
    p.add_argument("--cell", type=int, metavar="INDEX", help="run only this cell of the run given by --resume")
    p.add_argument("--plan-only", action="store_true", help="start the run and print its cells; run nothing")
    add_time_limits(p, measure_s=3.0, solve_s=10.0, searchers="cpsat, mallocmuzero")
    p.add_argument("--no-report", action="store_true", help="store and calibrate only; write no report")
    add_results_option(p)

    p = add_command(sub, "compare", cmd_compare, help="differences between two runs, cell by cell",
                    description="Per cell: simulated and measured medians in both runs, their ratio, a "
                    "Mann-Whitney p-value on the raw samples, and a flag where B is slower or faster (by at "
                    "least 2%% and significantly) or its simulated time changed.")
    p.add_argument("run_a", metavar="RUN_A")
    p.add_argument("run_b", metavar="RUN_B")
    p.add_argument("--all", action="store_true", help="show every cell, not only those that differ")
    p.add_argument("--across-machines", action="store_true",
                   help="compare runs of two different machines (their timings say little about each other)")
    add_results_option(p)

    p = add_command(sub, "report", cmd_report, help="write a run's paper-style report and the index of runs",
                    description="Tables (Markdown, LaTeX, CSV), plots (PNG, SVG) and an HTML page for the run, "
                    "with its regressions against earlier nights; and results/reports/index.html over runs.")
    p.add_argument("run", metavar="RUN")
    p.add_argument("-o", "--output", metavar="DIR", help="report directory (default: RESULTS/reports/RUN)")
    add_results_option(p)
