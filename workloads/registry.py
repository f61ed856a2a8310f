"""The workload registry: every workload of the suite, by name, with the plugins' ones.

Built-in workloads register with `@register`. A plugin workload is a function that
returns a JAX function and its example arguments, `make(size) -> (fn, args)` (or
`make() -> (fn, args)` for a program of one size), or a `Workload`; it comes from an
entry point of the group `mallocbench.workloads` (named by the entry point, and in every
suite) or from a `module:function` reference given where a workload name is (named by
the reference). A plugin that cannot be loaded is left out and listed by `problems()`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Callable

from workloads.plugins import PluginError, Problem, is_reference, load_installed, load_reference

SIZES = ("ci", "small", "medium", "full")  # increasing; small and medium are for CPU calibration
SUITES = ("ci", "full")

Builder = Callable[[str], tuple[Callable[..., Any], tuple[Any, ...]]]


@dataclasses.dataclass(frozen=True)
class Workload:
    """A JAX program with example inputs, in the sizes of `SIZES` ("ci" up to "full").

    `build(size)` returns `(fn, args)`: `fn(*args)` is the program to compile.
    """

    name: str
    family: str
    description: str
    builder: Builder = dataclasses.field(repr=False)

    def build(self, size: str = "ci") -> tuple[Callable[..., Any], tuple[Any, ...]]:
        """Returns `(fn, args)` for `size` (one of `SIZES`)."""
        if size not in SIZES:
            raise ValueError(f"unknown size {size!r} for workload {self.name!r}; valid sizes: {', '.join(SIZES)}")
        return self.builder(size)


_REGISTRY: dict[str, Workload] = {}
GROUP = "mallocbench.workloads"
PLUGIN_FAMILY = "plugin"
_REFERENCES: dict[str, Workload] = {}  # module:function plugins, loaded when first named


def register(name: str, family: str, description: str) -> Callable[[Builder], Builder]:
    """Decorator that registers `builder(size) -> (fn, args)` as workload `name`."""

    def wrap(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"workload {name!r} is registered twice")
        _REGISTRY[name] = Workload(name, family, description, builder)
        return builder

    return wrap


class UnknownWorkloadError(KeyError, ValueError):
    """Raised for a workload name that is not in the registry (a KeyError, and a ValueError of bad input)."""

    def __str__(self) -> str:
        return str(self.args[0])


def plugin_workload(name: str, obj: Any) -> Workload:
    """The workload a plugin object makes: a `Workload` as it is, or `make(size)` / `make()` returning
    `(fn, args)`; PluginError when `obj` is neither. The built program is checked when it is built."""
    if isinstance(obj, Workload):
        return obj
    if not callable(obj):
        raise PluginError(f"workload {name!r} is a {type(obj).__name__}, not a function returning (fn, args)")
    try:
        params = inspect.signature(obj).parameters.values()
    except ValueError:
        params = []
    sized = any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params)
    if sum(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params) > 1:
        raise PluginError(f"workload {name!r} has the wrong signature {inspect.signature(obj)}; expected "
                          "make(size) or make() returning (fn, args)")

    def build(size: str) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        built = obj(size) if sized else obj()
        if not (isinstance(built, tuple) and len(built) == 2 and callable(built[0])
                and isinstance(built[1], (tuple, list))):
            raise PluginError(f"workload {name!r} returned {type(built).__name__}, not (fn, args): a JAX "
                              "function and a tuple of its example arguments")
        return built[0], tuple(built[1])

    doc = (inspect.getdoc(obj) or "").strip().splitlines()
    return Workload(name, PLUGIN_FAMILY, doc[0] if doc else f"plugin {name}", build)


@functools.lru_cache(maxsize=1)
def _installed() -> tuple[dict[str, Workload], list[Problem]]:
    """The installed plugin workloads (entry points of `GROUP`, loaded once) and those left out."""
    made, problems = load_installed(GROUP, plugin_workload, _REGISTRY)
    return {name: dataclasses.replace(w, name=name) for name, w in made.items()}, problems


def problems() -> list[Problem]:
    """The installed plugin workloads left out, each with its error."""
    return list(_installed()[1])


def names(suite: str = "ci") -> list[str]:
    """Names of the workloads in `suite` ("ci" or "full"), sorted by family then name: the built-in ones and
    those of installed plugins (references given by name are not listed)."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; valid suites: {', '.join(SUITES)}")
    listed = [*_REGISTRY.values(), *_installed()[0].values()]
    return [w.name for w in sorted(listed, key=lambda w: (w.family, w.name))]


def get(name: str) -> Workload:
    """The workload called `name`, or the plugin a `module:function` reference names; an unknown name raises
    UnknownWorkloadError with the valid names listed, a reference that cannot be loaded PluginError."""
    found = _REGISTRY.get(name) or _installed()[0].get(name) or _REFERENCES.get(name)
    if found is not None:
        return found
    if is_reference(name):
        _REFERENCES[name] = dataclasses.replace(plugin_workload(name, load_reference(name)), name=name)
        return _REFERENCES[name]
    valid = ", ".join(sorted([*_REGISTRY, *_installed()[0]]))
    raise UnknownWorkloadError(f"unknown workload {name!r}; valid workloads: {valid} (or module:function)")


def resolve(given: list[str] | tuple[str, ...]) -> tuple[list[str], list[Problem]]:
    """The names of `given` that are workloads (each once) and the problems of those that are plugins that
    cannot be loaded; an unknown plain name raises UnknownWorkloadError."""
    found, bad = [], []
    for name in dict.fromkeys(given):
        try:
            found.append(get(name).name)
        except PluginError as err:
            bad.append(Problem(name, "command line", str(err)))
    return found, bad
