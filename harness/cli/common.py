"""What the `mallocbench` commands share: the consoles and the progress bar."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

# Piped output (logs, CI) gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


def progress() -> Progress:
    """A progress bar on stderr that disappears when done."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=err_console, transient=True)


def print_plugin_problems(problems) -> None:
    """Name each plugin left out (an import error, a wrong signature) on stderr; the command goes on."""
    for problem in problems:
        err_console.print(f"[yellow]warning:[/] {escape(str(problem))}", soft_wrap=True)


def plugin_problems() -> list:
    """The installed workload and policy plugins that could not be loaded."""
    import workloads
    from agent.registry import problems

    return [*workloads.problems(), *problems()]
