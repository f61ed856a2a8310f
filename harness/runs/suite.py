"""The instances of a suite's workloads, summarised: what `mallocbench workloads` and `extract` print."""

from __future__ import annotations

import dataclasses
import traceback
from typing import Callable, Optional, Sequence

import jax

import workloads
from harness.device.hlo_route import hlo_route
from harness.runs.programs import load_program
from harness.xla.instance import Instance
from harness.xla.linking import link


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
    unlinked_bytes: tuple[tuple[str, int], ...] = ()  # (reason kind of linking.UNLINKED_KINDS, bytes), most first
    hlo_share: Optional[float] = None  # buffer bytes placed by an annotation of the compiled HLO (None: not tried)
    hlo_unlinked_bytes: tuple[tuple[str, int], ...] = ()  # bytes neither route reaches by hlo_route.HLO_UNLINKED_KINDS
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


def extract_workload(name: str, size: str = "ci", root: Optional[str] = None,
                     hlo: bool = False) -> tuple[Instance, SummaryRow]:
    """Build, compile and extract one workload (`harness.runs.programs.load_program`: the program that
    realized mappings run), timing compile and extraction apart; `root` names a store whose extraction
    cache to use (None: extract afresh). `hlo`: also place the buffers no program value holds by
    annotating the compiled HLO (`harness.device.hlo_route`; compiles and runs the annotated module)."""
    prog = load_program(name, size, root)
    instance = prog.instance
    linked = link(prog.program, instance)
    route = hlo_route(instance, linked, prog.compiled.as_text(), jax.tree_util.tree_leaves(prog.args),
                      jax.tree_util.tree_leaves(prog.compiled(*prog.args))) if hlo else None
    return instance, SummaryRow(
        workload=name, family=workloads.get(name).family, size=size, ops=len(instance.ops),
        buffers=len(instance.buffers), flops=instance.flops, xla_flops=instance.compiler.flops,
        peak_live_bytes=instance.peak_live_bytes, xla_bytes=instance.compiler.total_bytes,
        linked_share=linked.linked_share, unlinked=len(linked.unlinked),
        unlinked_bytes=tuple(sorted(linked.unlinked_bytes.items(), key=lambda kv: -kv[1])), compile_seconds=prog.compile_s,
        extract_seconds=prog.extract_s, hlo_share=route.hlo_share if route else None,
        hlo_unlinked_bytes=tuple(sorted(route.unlinked_bytes.items(), key=lambda kv: -kv[1])) if route else ())


def run_suite(suite: str = "ci", size: Optional[str] = None,
              on_done: Callable[[SummaryRow], None] = lambda row: None,
              names: Optional[Sequence[str]] = None, hlo: bool = False) -> list[SummaryRow]:
    """Extract every workload of `suite` (or the workloads `names`) at `size` (default: the suite's own), with
    the HLO route where `hlo` (`extract_workload`); a failing workload is recorded with its error and the
    rest go on."""
    size = size or suite
    rows = []
    for name in workloads.names(suite) if names is None else names:
        try:
            _, row = extract_workload(name, size, hlo=hlo)
        except Exception as err:  # a failing workload must not stop the suite
            row = SummaryRow(workload=name, family=workloads.get(name).family, size=size,
                             error=f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}")
        rows.append(row)
        on_done(row)
    return rows
