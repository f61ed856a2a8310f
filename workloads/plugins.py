"""Plugins: objects named by a Python entry point of a group, or by a `module:attribute` reference.

A package adds workloads or policies to mallocbench by declaring entry points in its
pyproject.toml (groups `mallocbench.workloads` and `mallocbench.policies`); a user tries
one without a package by naming it on the command line as `module:attribute`. A plugin
that cannot be loaded is never fatal: `load_group` returns it as a `Problem`, named with
its error, and the caller goes on without it.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import inspect
from typing import Any, Callable, Collection


class PluginError(ValueError):
    """A plugin that cannot be used; the message names it and says why."""


@dataclasses.dataclass(frozen=True)
class Problem:
    """A plugin left out: its name, where it came from and the error."""

    name: str
    source: str
    error: str

    def __str__(self) -> str:
        return f"plugin {self.name!r} ({self.source}) left out: {self.error}"


def is_reference(name: str) -> bool:
    """Whether `name` is a `module:attribute` reference rather than a registered name."""
    return ":" in name


def load_reference(reference: str) -> Any:
    """The object `module:attribute` names; PluginError naming the reference and the import error."""
    module, _, attribute = reference.partition(":")
    if not module or not attribute:
        raise PluginError(f"{reference!r}: expected module:attribute, e.g. mypackage.policies:greedy")
    try:
        obj = importlib.import_module(module)
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except Exception as err:  # a plugin's import may raise anything
        raise PluginError(f"{reference!r}: {type(err).__name__}: {err}") from None
    return obj


def entry_points(group: str) -> list[importlib.metadata.EntryPoint]:
    """The installed entry points of `group`, sorted by name."""
    return sorted(importlib.metadata.entry_points(group=group), key=lambda e: e.name)


def load_group(group: str, make: Callable[[str, Any], Any]) -> tuple[dict[str, Any], list[Problem]]:
    """Load every entry point of `group` and turn each with `make(name, obj)` (which raises PluginError or
    TypeError for an object of the wrong kind); returns the made objects by name and the problems."""
    made, problems = {}, []
    for point in entry_points(group):
        source = f"entry point {point.value} of {group}"
        try:
            obj = point.load()
        except Exception as err:  # a broken package must not stop the run
            problems.append(Problem(point.name, source, f"{type(err).__name__}: {err}"))
            continue
        try:
            made[point.name] = make(point.name, obj)
        except (PluginError, TypeError) as err:
            problems.append(Problem(point.name, source, str(err)))
    return made, problems


def load_installed(group: str, make: Callable[[str, Any], Any], builtin: Collection[str]
                   ) -> tuple[dict[str, Any], list[Problem]]:
    """`load_group`, with a plugin named like a built-in one (`builtin`) left out as a problem."""
    made, problems = load_group(group, make)
    for name in [n for n in made if n in builtin]:
        del made[name]
        problems.append(Problem(name, f"entry point of {group}", "a built-in one has this name"))
    return made, problems


def check_call(obj: Any, name: str, what: str, n_args: int) -> None:
    """PluginError unless `obj` is callable with `n_args` positional arguments; `what` names the signature."""
    if not callable(obj):
        raise PluginError(f"{name!r} is a {type(obj).__name__}, not a function {what}")
    try:
        inspect.signature(obj).bind(*[None] * n_args)
    except TypeError as err:
        raise PluginError(f"{name!r} has the wrong signature ({err}); expected a function {what}") from None
    except ValueError:  # no signature to inspect (a builtin): let the call tell
        return
