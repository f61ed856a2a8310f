"""Hardware decides: measure candidate mappings of one program and keep the fastest."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional

from harness.xla.instance import Instance
from harness.xla.scoped_program import Program, trace
from harness.model.mapping import Mapping
from harness.device.timing import Measurement, measure
from harness.device.realization import RealizeReport, realize


@dataclasses.dataclass(frozen=True)
class Selection:
    """The measured candidates and the fastest of them (`best` is None when every run failed)."""

    best: Optional[str]
    measurements: dict[str, Measurement]
    reports: dict[str, RealizeReport]

    @property
    def reward_s(self) -> float:
        """The measured median seconds of the chosen mapping: its reward (NaN if none ran)."""
        return self.measurements[self.best].median_s if self.best is not None else math.nan


def select(fn: Callable[..., Any], args: tuple[Any, ...], instance: Instance, mappings: dict[str, Mapping],
           program: Optional[Program] = None, **measure_options: Any) -> Selection:
    """Realize and measure each candidate mapping; keep the fastest by measured median time.

    `mappings` are keyed by a name of the caller's choosing (policy, seed, rank
    of an agent's top-K); `measure_options` go to `harness.measure`. A candidate
    that fails to compile or run is kept with its error and never chosen.
    """
    if not mappings:
        raise ValueError("select needs at least one candidate mapping")
    program = program or trace(fn, args)
    measurements, reports = {}, {}
    for key, mapping in mappings.items():
        realized = realize(fn, args, instance, mapping, program=program)
        reports[key] = realized.report
        measurements[key] = measure(realized.fn, args, **measure_options)
    ran = [k for k, m in measurements.items() if m.ok]
    best = min(ran, key=lambda k: measurements[k].median_s) if ran else None
    return Selection(best, measurements, reports)
