"""The `mallocbench` command line."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from typing import Optional, Sequence

from rich.markup import escape
from rich.table import Table

from harness.cli import agent as cli_agent
from harness.cli import hardware as cli_hardware
from harness.cli import nightly as cli_nightly
from harness.cli.common import add_command, add_results_option, console, err_console, plugin_problems, print_plugin_problems
from harness.cli.common import parse_list
from harness.cli.common import progress as _progress
from harness.humanize import human_bytes as _human_bytes
from harness.humanize import human_seconds as _seconds
from harness.results import store




def _run_suite_with_progress(names: list[str], size: str, hlo: bool = False):
    from harness.runs.suite import run_suite

    with _progress() as progress:
        task = progress.add_task(f"extracting {len(names)} workloads", total=len(names))
        return run_suite(size=size, names=names, hlo=hlo, on_done=lambda row: progress.update(
            task, advance=1, description=f"extracted {row.workload}"))


def cmd_workloads(args: argparse.Namespace) -> int:
    """List the workloads of a suite (with the plugins' and those given by --workload) with the flops and
    buffers of their ci-size instance and the share of buffer bytes linked by route (to a program value, by
    an annotation of the compiled HLO); name the plugins that cannot be loaded."""
    import workloads

    given, bad = workloads.resolve(args.workload or [])
    print_plugin_problems([*plugin_problems(), *bad])
    listed = list(dict.fromkeys([*workloads.names(args.suite), *given]))
    rows = {r.workload: r for r in _run_suite_with_progress(listed, "ci", hlo=args.hlo)} if args.extract else {}
    table = Table(title=f"mallocbench workloads (suite {args.suite})")
    linking = ("linked (ci): value + HLO", "unlinked bytes by reason") if args.extract else ()  # shares of bytes
    for col in ("name", "family", "sizes", "flops (ci)", "buffers (ci)", *linking, "description"):
        table.add_column(col)
    for name in listed:
        w = workloads.get(name)
        row = rows.get(name)
        flops = f"{row.flops:.3g}" if row and not row.error else ("error" if row else "-")
        bufs = str(row.buffers) if row and not row.error else ("error" if row else "-")
        linked = _linked_cells(row) if row else ()
        table.add_row(name, w.family, ", ".join(workloads.SIZES), flops, bufs, *linked, w.description)
    console.print(table)
    families = {workloads.get(n).family for n in listed}
    console.print(f"{len(listed)} workloads from {len(families)} families")
    return 0


def _linked_cells(row) -> tuple[str, str]:
    """The `workloads` table's linking cells of a summary row: the shares by route and the bytes that neither
    route reaches by reason."""
    if row.error:
        return "error", ""
    if row.hlo_share is None:
        return f"{row.linked_share:.1%}", ", ".join(f"{kind} {_human_bytes(n)}" for kind, n in row.unlinked_bytes)
    return (f"{row.linked_share:.1%} + {row.hlo_share:.1%} = {row.linked_share + row.hlo_share:.1%}",
            ", ".join(f"{kind} {_human_bytes(n)}" for kind, n in row.hlo_unlinked_bytes))


def cmd_extract(args: argparse.Namespace) -> int:
    """Extract one workload's instance and write it as JSON."""
    from harness.results.artifacts import write_bytes
    from harness.runs.suite import extract_workload

    with err_console.status(f"compiling {args.workload} ({args.size})"):
        instance, row = extract_workload(args.workload, args.size)
    out = args.output or f"{args.workload}-{args.size}.json"
    write_bytes(out, instance.to_json().encode())
    console.print(
        f"{args.workload} ({args.size}): {row.ops} ops, {row.buffers} buffers, "
        f"{row.flops:.4g} flops (XLA {row.xla_flops:.4g}), peak live {_human_bytes(row.peak_live_bytes)} "
        f"(XLA {_human_bytes(row.xla_bytes)}, ratio {row.peak_ratio:.3f}); "
        f"compile {row.compile_seconds:.2f} s, extraction {row.extract_seconds:.2f} s -> {out}")
    return 0


def cmd_instance(args: argparse.Namespace) -> int:
    """Summarise an instance file: ops, buffers, peak live bytes and a histogram of buffer sizes."""
    from harness.xla.instance import Instance

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


def _read_text(path: str, what: str, error: type) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError as err:
        raise error(f"cannot read {what} file {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise error(f"{what} file {path} is not a text file") from None


def _read_instance(path: str):
    """The instance in file `path`; InstanceError (naming the file) if it is missing or malformed."""
    from harness.xla.instance import Instance, InstanceError

    text = _read_text(path, "instance", InstanceError)
    try:
        return Instance.from_json(text)
    except InstanceError as err:
        raise InstanceError(f"{path}: {err}") from None


def _read_mapping(path: str, instance):
    """The mapping in file `path`, checked to be one of `instance`; MappingError names the file."""
    from harness.model.mapping import Mapping, MappingError

    text = _read_text(path, "mapping", MappingError)
    try:
        mapping = Mapping.from_json(text)
    except MappingError as err:
        raise MappingError(f"{path}: {err}") from None
    if mapping.instance and mapping.instance != instance.name:
        raise MappingError(f"{path}: the mapping is for instance {mapping.instance!r}, not {instance.name!r}")
    return mapping


def _profile(name: Optional[str]):
    """The named profile (a shipped name or a JSON path), or the default one of JAX's backend."""
    from harness.model.profiles import Profile, default_profile, load_profile

    if name is None:
        import jax

        default = default_profile(jax.default_backend())
        return default if isinstance(default, Profile) else load_profile(default)
    return load_profile(name)


def _validate(instance, mapping, profile, path: str) -> None:
    """validate(), with the mapping file named in the error."""
    from harness.model.mapping import MappingError, validate

    try:
        validate(instance, mapping, profile, mapping.budget)
    except MappingError as err:
        raise MappingError(f"{path}: {err}") from None


def _baselines(instance, profile) -> tuple[float, float]:
    """Simulated seconds with every buffer slow and with every buffer fast (no budget)."""
    from agent.registry import solve
    from harness.model.mapping import Mapping
    from harness.model.simulator import simulate

    slow = simulate(instance, Mapping({}, len(instance.buffers), instance.name, "all-slow", None), profile)
    fast = simulate(instance, solve(instance, profile, None, policy="all-fast"), profile)
    return slow, fast


def _versus(t: float, slow: float, fast: float) -> str:
    gain = f", {(slow - t) / (slow - fast):.1%} of the possible gain" if slow > fast else ""
    return (f"{_seconds(t)} (all-slow {_seconds(slow)}, all-fast {_seconds(fast)}; "
            f"speed-up {slow / t if t > 0 else float('inf'):.3f}x over all-slow{gain})")


def _solve_input(args: argparse.Namespace):
    """The instance to solve (the INSTANCE file, or the --workload extracted) and the stem of files written."""
    if (args.instance is None) == (args.workload is None):
        raise ValueError("give an INSTANCE file or --workload NAME (a workload or module:function), one of them")
    if args.instance is not None:
        return _read_instance(args.instance), os.path.splitext(os.path.basename(args.instance))[0]
    from harness.runs.suite import extract_workload

    with err_console.status(f"compiling {args.workload} ({args.size})"):
        instance, _ = extract_workload(args.workload, args.size)
    return instance, _file_name(f"{args.workload}-{args.size}")


def _file_name(name: str) -> str:
    """`name` with every character but [A-Za-z0-9._-] replaced by "_" (a module:function reference)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def cmd_solve(args: argparse.Namespace) -> int:
    """Solve an instance (or a workload) with one or more policies, validate each mapping, write it as JSON,
    print its simulated time beside all-slow and all-fast, and draw the memory maps when asked."""
    from agent.registry import resolve, solve
    from harness.model.mapping import capacity, check_budget, fast_peak_bytes
    from harness.model.simulator import simulate
    from harness.report.memory_map import plot_memory_map
    from harness.results.artifacts import write_bytes

    print_plugin_problems(plugin_problems())
    names, problems = resolve([p.strip() for p in args.policy.split(",") if p.strip()])
    if problems:
        raise ValueError("; ".join(map(str, problems)))
    if not names:
        raise ValueError("--policy: empty list; give one or more policies, comma-separated")
    if args.output and len(names) > 1:
        raise ValueError(f"-o names one mapping file; {len(names)} policies write INSTANCE.POLICY.map.json each")
    check_budget(args.budget, "--budget")
    needy = [p for p in names if p != "all-fast"]
    if args.budget is None and needy:
        raise ValueError(f"policy {needy[0]!r} needs --budget, a fraction of peak live bytes in (0, 1]")
    if args.time_limit is not None and not args.time_limit > 0:
        raise ValueError(f"--time-limit must be positive seconds, got {args.time_limit:g}")
    instance, stem = _solve_input(args)
    profile = _profile(args.profile)
    with err_console.status("simulating all-slow and all-fast"):
        slow, fast = _baselines(instance, profile)
    mappings = []
    for policy in names:
        budget = None if policy == "all-fast" else args.budget
        with err_console.status(f"solving {instance.name} with {policy} on {profile.name}"
                                + (f" (budget {budget:g})" if budget is not None else "")):
            options = {"simulations": args.simulations, "checkpoint": args.checkpoint} \
                if policy.startswith("mallocmuzero") else {}
            mapping = solve(instance, profile, budget, policy=policy, seed=args.seed, time_limit=args.time_limit,
                            **options)
        _validate(instance, mapping, profile, f"the mapping of policy {policy!r}")
        t = simulate(instance, mapping, profile)
        out = args.output or f"{stem}.{_file_name(policy)}.map.json"
        write_bytes(out, mapping.to_json().encode())
        cap = capacity(instance, profile, budget)
        console.print(f"{instance.name} on {profile.name}: policy {policy}, "
                      f"{len(mapping.offsets)} of {len(instance.buffers)} buffers fast, "
                      f"peak {_human_bytes(fast_peak_bytes(instance, mapping))} fast at once"
                      + (f" (capacity {_human_bytes(cap)})" if cap is not None else " (no budget)"), soft_wrap=True)
        console.print(f"simulated time {_versus(t, slow, fast)} -> {out}", soft_wrap=True)
        mappings.append(mapping)
    if args.map:
        with err_console.status(f"drawing {instance.name}"):
            plot_memory_map(instance, mappings[0], args.map, compare=mappings[1] if len(mappings) > 1 else None,
                            profile=profile)
        shown = " beside ".join(m.policy for m in mappings[:2])
        console.print(f"memory map of {shown}: {args.map}", soft_wrap=True, markup=False, highlight=False)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """Validate a mapping (with its own budget) and print its simulated time and costliest ops."""
    from harness.model.mapping import capacity, fast_peak_bytes
    from harness.model.simulator import simulate, simulate_ops

    if args.top < 0:
        raise ValueError(f"--top must be non-negative, got {args.top}")
    instance = _read_instance(args.instance)
    mapping = _read_mapping(args.mapping, instance)
    profile = _profile(args.profile)
    _validate(instance, mapping, profile, args.mapping)
    with err_console.status(f"simulating {instance.name} on {profile.name}"):
        t = simulate(instance, mapping, profile)
        ops = simulate_ops(instance, mapping, profile)
        slow, fast = _baselines(instance, profile)
    cap = capacity(instance, profile, mapping.budget)
    budget = "no budget" if cap is None else f"budget {mapping.budget:g}, capacity {_human_bytes(cap)}"
    console.print(f"{instance.name} on {profile.name} ({profile.memory_model}): mapping {mapping.policy or '?'} "
                  f"({budget}), {len(mapping.offsets)} of {len(instance.buffers)} buffers fast, "
                  f"peak {_human_bytes(fast_peak_bytes(instance, mapping))} fast at once", soft_wrap=True)
    console.print(f"simulated time {_versus(t, slow, fast)}", soft_wrap=True)
    cost = ops["elapsed"] + ops["stall"]
    order = sorted(range(len(cost)), key=lambda k: (-float(cost[k]), k))[: args.top]
    if order:
        table = Table(title=f"top {len(order)} of {len(cost)} ops by time (elapsed + stall, per run)")
        for col in ("step", "name", "opcode", "elapsed", "compute", "memory", "stall", "share"):
            table.add_column(col, justify="left" if col in ("name", "opcode") else "right")
        for k in order:
            table.add_row(str(k), str(ops["name"][k]), str(ops["opcode"][k]), _seconds(float(ops["elapsed"][k])),
                          _seconds(float(ops["compute"][k])), _seconds(float(ops["memory"][k])),
                          _seconds(float(ops["stall"][k])), f"{float(cost[k]) / t:.1%}" if t > 0 else "-")
        console.print(table)
    final = float(ops["final_stall"].sum())
    if final > 0:
        console.print(f"stall at the end of the program (copies still draining): {_seconds(final)}",
                      soft_wrap=True)
    return 0


def cmd_show_map(args: argparse.Namespace) -> int:
    """Draw a mapping (and optionally a second one beside it) on the time x address plane."""
    from harness.report.memory_map import plot_memory_map

    instance = _read_instance(args.instance)
    mapping = _read_mapping(args.mapping, instance)
    compare = _read_mapping(args.compare, instance) if args.compare else None
    profile = _profile(args.profile)
    _validate(instance, mapping, profile, args.mapping)
    if compare is not None:
        _validate(instance, compare, profile, args.compare)
    out = args.output or f"{os.path.splitext(os.path.basename(args.mapping))[0]}.png"
    with err_console.status(f"drawing {instance.name}"):
        plot_memory_map(instance, mapping, out, title=args.title, compare=compare, profile=profile)
    console.print(out, soft_wrap=True, markup=False, highlight=False)
    return 0


def cmd_device_check(args: argparse.Namespace) -> int:
    """Run (or, with --dry-run, plan and export-check) everything only a GPU can show."""
    import jax

    from harness.runs import device_check

    kind = device_check.DRY_RUN_DEVICE if args.dry_run else jax.devices()[0].device_kind
    try:
        plan = device_check.plan(kind, args.results)
    except device_check.DeviceCheckError as err:
        err_console.print(f"device-check: {err}")
        return 2
    console.print(f"device {plan.device}: profile {plan.profile}, results in {plan.results}")
    for command in plan.commands:
        console.print("  mallocbench " + " ".join(command))
    if args.dry_run:
        names = parse_list(args.workloads, "workload") if args.workloads else ()
        with err_console.status("realizing every mapping for cuda and checking its export"):
            rows = device_check.export_check(plan.profile, names)
        console.print(f"export check: {len(rows)} realized mappings place exactly their linked slow values in "
                      "host memory")
        return 0
    for command in plan.commands:
        if "{runs}" in command:
            runs = ",".join(store.list_runs(plan.results).run_id)
            command = tuple(runs if c == "{runs}" else c for c in command)
        code = main(list(command))
        if code:
            return code
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `mallocbench`."""
    import workloads
    from agent.registry import policies

    parser = argparse.ArgumentParser(prog="mallocbench", description=__doc__.strip() + (
        " Benchmark memory mappings of compiled JAX programs."))
    sub = parser.add_subparsers(dest="command", required=True)
    _add_instance_commands(sub, workloads.SUITES, workloads.SIZES)
    cli_nightly.add_commands(sub)
    _add_mapping_commands(sub, policies(), workloads.SIZES)
    cli_hardware.add_commands(sub, workloads.SUITES, workloads.SIZES)
    cli_agent.add_commands(sub)
    _add_device_check(sub)
    return parser


def _add_device_check(sub) -> None:
    """`device-check`: every command only a GPU can show, run through this parser (see `cmd_device_check`)."""
    p = add_command(sub, "device-check", cmd_device_check,
                    help="on an H100/H200: everything only a GPU can show, in one command",
                    description="Nightly of the ci suite at budget 0.5 on the GPU's offload profile (xla-native, "
                    "xla-msa, cpsat, mallocmuzero; realized and measured), per-op times, calibration of the "
                    "offload profile and the report, under RESULTS/device/<device>. --dry-run (any machine): "
                    "print the plan and check the cuda export of every mapping it would realize.")
    p.add_argument("--dry-run", action="store_true", help="plan and export-check only (no GPU needed)")
    p.add_argument("--workloads", metavar="W1,W2", help="dry run: workloads to export-check (default: the ci suite)")
    add_results_option(p)


def _add_instance_commands(sub, suites: Sequence[str], sizes: Sequence[str]) -> None:
    """`workloads`, `extract` and `instance`: the suite and the instances of its workloads."""
    p = add_command(sub, "workloads", cmd_workloads, help="list the workloads of a suite")
    p.add_argument("--suite", default="ci", choices=suites)
    p.add_argument("--workload", action="append", metavar="MODULE:FUNCTION",
                   help="also list this plugin workload, a function returning (fn, args) (repeatable)")
    p.add_argument("--no-extract", dest="extract", action="store_false",
                   help="list only, without compiling each workload for its flops and buffers")
    p.add_argument("--no-hlo-route", dest="hlo", action="store_false",
                   help="link buffers to program values only, without annotating, compiling and running the "
                        "compiled HLO for the compiler's own values")

    p = add_command(sub, "extract", cmd_extract, help="extract a workload's instance as JSON")
    p.add_argument("workload")
    p.add_argument("--size", default="ci", choices=sizes)
    p.add_argument("-o", "--output", help="instance file to write (default: WORKLOAD-SIZE.json)")

    p = add_command(sub, "instance", cmd_instance, help="summarise an instance file")
    p.add_argument("file")


def _add_profile_option(p: argparse.ArgumentParser, what: str = "") -> None:
    p.add_argument("--profile", metavar="NAME", help=f"hardware profile{what}, a shipped name or a JSON file "
                   "(default: the one of JAX's backend)")


def _add_mapping_commands(sub, policy_names: Sequence[str], sizes: Sequence[str]) -> None:
    """`solve`, `simulate` and `show-map`: a mapping of an instance, its simulated time and its picture."""
    p = add_command(sub, "solve", cmd_solve, help="map an instance's buffers to fast and slow memory with policies",
                    description="Solve an instance (a file, or a workload extracted on the fly) with one or more "
                    "policies, validate each mapping, write it as JSON and print its simulated time beside "
                    "all-slow and all-fast; --map draws the first mapping beside the second.")
    p.add_argument("instance", nargs="?", help="instance JSON file (from `mallocbench extract`)")
    p.add_argument("--workload", metavar="NAME", help="instead of a file: a workload (see `mallocbench workloads`) "
                   "or module:function returning (fn, args), extracted at --size")
    p.add_argument("--size", default="ci", choices=sizes, help="size of --workload (default: ci)")
    p.add_argument("--policy", default="xla-msa", metavar="P1[,P2]",
                   help=f"mapping policies, comma-separated: {', '.join(policy_names)} or module:function "
                   "(default: xla-msa)")
    _add_profile_option(p)
    p.add_argument("--budget", type=float, default=None,
                   help="fast memory as a fraction of peak live bytes, in (0, 1] (not for all-fast)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the policy (default: 0)")
    p.add_argument("--time-limit", type=float, default=None, metavar="S",
                   help="seconds the policy may search (cpsat)")
    p.add_argument("--simulations", type=int, metavar="N",
                   help="mallocmuzero: leaves the rollout search scores per decision (default: 8)")
    p.add_argument("--checkpoint", metavar="DIR", help="mallocmuzero: checkpoint directory (default: the shipped one)")
    p.add_argument("-o", "--output", metavar="MAP",
                   help="mapping file to write, with one policy (default: INSTANCE.POLICY.map.json here)")
    p.add_argument("--map", metavar="FIGURE", help="draw the first policy's mapping beside the second's on the "
                   "time x address plane (.png, .svg or .pdf)")

    p = add_command(sub, "simulate", cmd_simulate, help="simulated time of a mapping and its costliest ops",
                    description="Validate a mapping with the budget stored in it and print its simulated "
                    "time and the ops that take the most time.")
    p.add_argument("instance", help="instance JSON file")
    p.add_argument("mapping", help="mapping JSON file (from `mallocbench solve`)")
    _add_profile_option(p)
    p.add_argument("--top", type=int, default=10, help="ops to list (default: 10)")

    p = add_command(sub, "show-map", cmd_show_map, help="draw a mapping on the time x address plane (PNG, SVG or PDF)",
                    description="Draw the fast buffers of a mapping as rectangles of schedule steps x "
                    "addresses, with the capacity line and a list of the slow buffers.")
    p.add_argument("instance", help="instance JSON file")
    p.add_argument("mapping", help="mapping JSON file")
    p.add_argument("-o", "--output", metavar="FIGURE",
                   help="figure to write, .png, .svg or .pdf (default: MAPPING.png here)")
    p.add_argument("--compare", metavar="MAP2", help="a second mapping to draw beside the first")
    _add_profile_option(p, " for the capacity line and simulated times")
    p.add_argument("--title", help="figure title (default: instance name and size)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the `mallocbench` console script."""
    from harness.xla.instance import InstanceError
    from harness.model.mapping import MappingError
    from harness.model.profiles import ProfileError
    from workloads import UnknownWorkloadError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UnknownWorkloadError, InstanceError, MappingError, ProfileError, ValueError) as err:
        err_console.print(f"[red]error:[/] {escape(str(err))}", soft_wrap=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
