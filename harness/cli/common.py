"""What the `mallocbench` commands share: the consoles, the progress bar and the list and budget parsers."""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from rich.console import Console
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
