"""Extract every workload of a suite and summarise the instances (the main job, for now)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
import traceback
from typing import Callable, Optional, Sequence

import workloads
from harness.results import store
from harness.xla.extraction import from_compiled
from harness.xla.instance import Instance
from harness.xla.link import jit, link, trace


@dataclasses.dataclass(frozen=True)
class SummaryRow:
    """One workload's extraction outcome."""

    workload: str
    family: str
    size: str
    ops: int = 0
    buffers: int = 0
    flops: float = 0.0
    xla_flops: float = 0.0
    peak_live_bytes: int = 0
    xla_bytes: int = 0
    linked_share: float = 0.0  # buffer bytes linked to a value of the JAX program
    unlinked: int = 0  # buffers with no value of the JAX program
    compile_seconds: float = 0.0
    extract_seconds: float = 0.0
    error: str = ""

    @property
    def peak_ratio(self) -> float:
        """Peak live bytes over XLA's arguments + outputs + temporaries - aliases."""
        return self.peak_live_bytes / self.xla_bytes if self.xla_bytes else float("nan")

    @property
    def flops_ratio(self) -> float:
        """Sum of op flops over `cost_analysis()` flops."""
        return self.flops / self.xla_flops if self.xla_flops else float("nan")


def extract_workload(name: str, size: str = "ci") -> tuple[Instance, SummaryRow]:
    """Build, compile and extract one workload, timing compile and extraction apart.

    The program compiled is the workload evaluated equation by equation in named
    scopes (`harness.link`), the one `harness.realize` runs, so that mappings of
    the instance can be realized.
    """
    workload = workloads.get(name)
    fn, args = workload.build(size)
    program = trace(fn, args)
    t0 = time.perf_counter()
    compiled = jit(program).lower(*args).compile()
    t1 = time.perf_counter()
    instance = from_compiled(compiled, f"{name}/{size}")
    t2 = time.perf_counter()
    linked = link(program, instance)
    return instance, SummaryRow(
        workload=name, family=workload.family, size=size, ops=len(instance.ops),
        buffers=len(instance.buffers), flops=instance.flops, xla_flops=instance.compiler.flops,
        peak_live_bytes=instance.peak_live_bytes, xla_bytes=instance.compiler.total_bytes,
        linked_share=linked.linked_share, unlinked=len(linked.unlinked), compile_seconds=t1 - t0, extract_seconds=t2 - t1)


def run_suite(
    suite: str = "ci",
    size: Optional[str] = None,
    out_dir: Optional[str] = None,
    on_done: Callable[[SummaryRow], None] = lambda row: None,
    names: Optional[Sequence[str]] = None,
) -> list[SummaryRow]:
    """Extract every workload of `suite` (or the workloads `names`); a failing workload is recorded and the
    rest go on.

    Instances are written to `out_dir/<workload>.json` as each finishes, with
    `summary.json` beside them.
    """
    size = size or suite
    rows = []
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    for name in workloads.names(suite) if names is None else names:
        try:
            instance, row = extract_workload(name, size)
            if out_dir:
                store.write_bytes(os.path.join(out_dir, f"{name}.json"), instance.to_json().encode())
        except Exception as err:  # a failing workload must not stop the suite
            row = SummaryRow(workload=name, family=workloads.get(name).family, size=size,
                             error=f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}")
        rows.append(row)
        on_done(row)
    if out_dir:
        summary = [dataclasses.asdict(r) | {"peak_ratio": r.peak_ratio, "flops_ratio": r.flops_ratio} for r in rows]
        store.write_bytes(os.path.join(out_dir, "summary.json"), json.dumps(summary, indent=1).encode())
    return rows
