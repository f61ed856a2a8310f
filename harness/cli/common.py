"""What the `mallocbench` commands share: the consoles, the progress bar, the list and budget parsers and the
options of several commands."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Optional, Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from harness.model.mapping import check_budget

# Piped output (logs, CI) gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


def progress() -> Progress:
    """A progress bar on stderr that disappears when done."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=err_console, transient=True)


def parse_list(text: str, what: str, valid: Optional[Sequence[str]] = None) -> tuple[str, ...]:
    """A comma-separated option value; ValueError for an empty list or an unknown item (naming the valid ones)."""
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    if not items:
        raise ValueError(f"{what}: empty list")
    if valid is not None:
        bad = [t for t in items if t not in valid]
        if bad:
            raise ValueError(f"unknown {what} {bad[0]!r}; valid: {', '.join(valid)}")
    return items


def parse_budget(text: str) -> float:
    """A budget option's value: a number in (0, 1]; ValueError naming what is wrong."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"budget {text!r}: not a number") from None
    return check_budget(value)


def add_command(sub, name: str, func: Callable[[argparse.Namespace], int], help: str,
                description: Optional[str] = None) -> argparse.ArgumentParser:
    """A sub-command `name` of the `mallocbench` parser, run by `func(args)` (its exit status)."""
    p = sub.add_parser(name, help=help, description=description)
    p.set_defaults(func=func)
    return p


def add_results_option(p: argparse.ArgumentParser) -> None:
    """`--results DIR`: the results store."""
    p.add_argument("--results", default="results", help="results store directory (default: results)")


def add_time_limits(p: argparse.ArgumentParser, measure_s: float, solve_s: float, searchers: str) -> None:
    """`--time-limit S` (timing per measured cell) and `--solve-time-limit S` (a policy's search; `searchers`
    names the policies that search), with their defaults in seconds."""
    p.add_argument("--time-limit", type=float, default=measure_s, metavar="S",
                   help=f"seconds of timing per measured cell at most (default: {measure_s:g})")
    p.add_argument("--solve-time-limit", type=float, default=solve_s, metavar="S",
                   help=f"seconds a policy may search ({searchers}; default: {solve_s:g})")
def print_plugin_problems(problems) -> None:
    """Name each plugin left out (an import error, a wrong signature) on stderr; the command goes on."""
    for problem in problems:
        err_console.print(f"[yellow]warning:[/] {escape(str(problem))}", soft_wrap=True)


def plugin_problems() -> list:
    """The installed workload and policy plugins that could not be loaded."""
    import workloads
    from agent.registry import problems

    return [*workloads.problems(), *problems()]
