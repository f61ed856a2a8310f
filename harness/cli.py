"""The `mallocbench` command line."""

from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
from typing import Optional, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

# Piped output (logs, CI) gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=err_console, transient=True)


def _run_suite_with_progress(suite: str, size: str, out_dir: Optional[str]):
    import workloads
    from harness.suite_run import run_suite

    names = workloads.names(suite)
    with _progress() as progress:
        task = progress.add_task(f"extracting {suite} suite", total=len(names))
        return run_suite(suite, size, out_dir, on_done=lambda row: progress.update(
            task, advance=1, description=f"extracted {row.workload}"))


def cmd_workloads(args: argparse.Namespace) -> int:
    """List the workloads of a suite with the flops and buffers of their ci-size instance."""
    import workloads

    rows = {r.workload: r for r in _run_suite_with_progress(args.suite, "ci", None)} if args.extract else {}
    table = Table(title=f"mallocbench workloads (suite {args.suite})")
    for col in ("name", "family", "sizes", "flops (ci)", "buffers (ci)", "description"):
        table.add_column(col)
    for name in workloads.names(args.suite):
        w = workloads.get(name)
        row = rows.get(name)
        flops = f"{row.flops:.3g}" if row and not row.error else ("error" if row else "-")
        bufs = str(row.buffers) if row and not row.error else ("error" if row else "-")
        table.add_row(name, w.family, ", ".join(workloads.SIZES), flops, bufs, w.description)
    console.print(table)
    families = {workloads.get(n).family for n in workloads.names(args.suite)}
    console.print(f"{len(workloads.names(args.suite))} workloads from {len(families)} families")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    """Extract one workload's instance and write it as JSON."""
    from harness.suite_run import write_atomic, extract_workload

    with err_console.status(f"compiling {args.workload} ({args.size})"):
        instance, row = extract_workload(args.workload, args.size)
    out = args.output or f"{args.workload}-{args.size}.json"
    write_atomic(out, instance.to_json())
    console.print(
        f"{args.workload} ({args.size}): {row.ops} ops, {row.buffers} buffers, "
        f"{row.flops:.4g} flops (XLA {row.xla_flops:.4g}), peak live {_human_bytes(row.peak_live_bytes)} "
        f"(XLA {_human_bytes(row.xla_bytes)}, ratio {row.peak_ratio:.3f}); "
        f"compile {row.compile_seconds:.2f} s, extraction {row.extract_seconds:.2f} s -> {out}")
    return 0


def cmd_instance(args: argparse.Namespace) -> int:
    """Summarise an instance file: ops, buffers, peak live bytes and a histogram of buffer sizes."""
    from harness.instance import Instance

    try:
        text = open(args.file).read()
    except OSError as err:
        err_console.print(f"[red]error:[/] cannot read {args.file}: {err.strerror}")
        return 2
    instance = Instance.from_json(text)
    c = instance.compiler
    table = Table(title=f"instance {instance.name} ({instance.backend}, jax {instance.jax_version})", show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row("ops", str(len(instance.ops)))
    table.add_row("buffers", f"{len(instance.buffers)} ({len(instance.left_out)} values left out)")
    table.add_row("flops", f"{instance.flops:.4g} (XLA cost_analysis {c.flops:.4g})")
    table.add_row("peak live bytes", f"{_human_bytes(instance.peak_live_bytes)} "
                  f"(XLA args+outputs+temps-aliases {_human_bytes(c.total_bytes)}, "
                  f"ratio {instance.peak_live_bytes / max(c.total_bytes, 1):.3f})")
    console.print(table)
    hist = Table(title="buffer sizes")
    for col in ("bytes", "buffers", ""):
        hist.add_column(col)
    buckets: dict[int, int] = {}
    for b in instance.buffers:
        k = int(math.log2(b.bytes)) if b.bytes else -1
        buckets[k] = buckets.get(k, 0) + 1
    most = max(buckets.values(), default=1)
    for k in sorted(buckets):
        label = "0" if k < 0 else f"{_human_bytes(2 ** k)} - {_human_bytes(2 ** (k + 1))}"
        hist.add_row(label, str(buckets[k]), "#" * max(1, round(40 * buckets[k] / most)))
    console.print(hist)
    return 0


def cmd_nightly(args: argparse.Namespace) -> int:
    """The main job: extract every workload of the suite and print the summary table."""
    run_id = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_dir = os.path.join(args.results, "runs", run_id, "instances")
    rows = _run_suite_with_progress(args.suite, args.suite, out_dir)
    table = Table(title=f"mallocbench nightly: suite {args.suite}, extraction")
    for col in ("workload", "family", "ops", "buffers", "flops / XLA", "peak live / XLA",
                "compile s", "extract s"):
        table.add_column(col, justify="left" if col in ("workload", "family") else "right")
    for r in rows:
        if r.error:
            table.add_row(r.workload, r.family, "[red]failed[/]", r.error.splitlines()[0], "", "", "", "")
        else:
            table.add_row(r.workload, r.family, str(r.ops), str(r.buffers), f"{r.flops_ratio:.3f}",
                          f"{r.peak_ratio:.3f}", f"{r.compile_seconds:.2f}", f"{r.extract_seconds:.2f}")
    console.print(table)
    failed = [r for r in rows if r.error]
    console.print(f"{len(rows) - len(failed)} of {len(rows)} workloads extracted; instances in {out_dir}")
    for r in failed:
        err_console.print(f"[red]{r.workload} failed:[/] {r.error}")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `mallocbench`."""
    import workloads

    parser = argparse.ArgumentParser(prog="mallocbench", description=__doc__.strip() + (
        " Benchmark memory mappings of compiled JAX programs."))
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("workloads", help="list the workloads of a suite")
    p.add_argument("--suite", default="ci", choices=workloads.SUITES)
    p.add_argument("--no-extract", dest="extract", action="store_false",
                   help="list only, without compiling each workload for its flops and buffers")
    p.set_defaults(func=cmd_workloads)

    p = sub.add_parser("extract", help="extract a workload's instance as JSON")
    p.add_argument("workload")
    p.add_argument("--size", default="ci", choices=workloads.SIZES)
    p.add_argument("-o", "--output", help="instance file to write (default: WORKLOAD-SIZE.json)")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("instance", help="summarise an instance file")
    p.add_argument("file")
    p.set_defaults(func=cmd_instance)

    p = sub.add_parser("nightly", help="the main job: run a suite (for now: extract every workload)")
    p.add_argument("--suite", default="ci", choices=workloads.SUITES)
    p.add_argument("--results", default="results", help="results directory (default: results)")
    p.set_defaults(func=cmd_nightly)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the `mallocbench` console script."""
    from harness.instance import InstanceError
    from workloads import UnknownWorkloadError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UnknownWorkloadError, InstanceError, ValueError) as err:
        err_console.print(f"[red]error:[/] {err}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
