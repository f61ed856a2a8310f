"""The workload registry: every workload of the suite, by name."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

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


def register(name: str, family: str, description: str) -> Callable[[Builder], Builder]:
    """Decorator that registers `builder(size) -> (fn, args)` as workload `name`."""

    def wrap(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"workload {name!r} is registered twice")
        _REGISTRY[name] = Workload(name, family, description, builder)
        return builder

    return wrap


class UnknownWorkloadError(KeyError):
    """Raised for a workload name that is not in the registry."""

    def __str__(self) -> str:
        return str(self.args[0])


def names(suite: str = "ci") -> list[str]:
    """Names of the workloads in `suite` ("ci" or "full"), sorted by family then name."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; valid suites: {', '.join(SUITES)}")
    return [w.name for w in sorted(_REGISTRY.values(), key=lambda w: (w.family, w.name))]


def get(name: str) -> Workload:
    """The workload called `name`; an unknown name raises with the valid names listed."""
    try:
        return _REGISTRY[name]
    except KeyError:
        valid = ", ".join(sorted(_REGISTRY))
        raise UnknownWorkloadError(f"unknown workload {name!r}; valid workloads: {valid}") from None
