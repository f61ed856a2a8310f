"""The second route to a buffer: its placement annotated in the compiled (optimized) HLO module itself.

Buffers that hold no value of the JAX program (`harness.xla.linking`: the
compiler's iotas, broadcast literals, layout copies, expansion internals) are
reached through their defining instruction: `harness.xla.hlo_module.annotate_host`
moves its result to host memory (S(5)) with the host-offload custom calls. A
buffer counts as linked at the HLO level only where XLA's parser reads the
annotated module back with that placement on its instruction (what the cuda and
tpu compilers take) and, where `flat_args` are given, the annotated module,
compiled and run here, computes the outputs of the original program.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import numpy as np

from harness.xla import hlo_module
from harness.xla.hlo_text import ArrayShape, parse_module
from harness.xla.instance import Instance
from harness.xla.linking import Link

# Why the HLO route leaves a buffer unlinked: the category its reason starts with.
HLO_UNLINKED_KINDS = {
    "loop state": "a while loop's carried value: the loop's tuple, no instruction of its own to annotate",
    "tuple element": "one element of a multi-output instruction's tuple (a multi-output fusion, a sort)",
    "computation root": "the root of a computation (the program's output, a body's result)",
    "parameter": "a parameter of a computation (a loop body's or branch's argument)",
    "not placed": "annotated, but the module read back places it in no host memory space",
    "outputs differ": "the annotated module, compiled and run, computes other outputs than the program",
}


@dataclasses.dataclass(frozen=True)
class HloRoute:
    """Linked buffer bytes by route: program value (`harness.xla.linking`), HLO annotation, unlinked."""

    placed: tuple[int, ...]  # buffer ids placed in host memory by the annotated HLO module (confirmed)
    reasons: dict[int, str]  # buffer id -> why neither route reaches it ("<kind>: <detail>", HLO_UNLINKED_KINDS)
    program_bytes: int  # bytes of the buffers linked to a program value
    hlo_bytes: int  # bytes of the buffers placed by the HLO annotation
    total_bytes: int
    unlinked_bytes: dict[str, int]  # kind -> bytes of the buffers no route reaches
    outputs_match: Optional[bool]  # the annotated module computed the program's outputs (None: not run)
    annotated_text: str  # the annotated HLO module (placing every buffer of `placed`)

    @property
    def program_share(self) -> float:
        """Buffer bytes linked to a program value over all buffer bytes."""
        return self.program_bytes / self.total_bytes if self.total_bytes else 1.0

    @property
    def hlo_share(self) -> float:
        """Buffer bytes placed by an HLO annotation over all buffer bytes."""
        return self.hlo_bytes / self.total_bytes if self.total_bytes else 0.0

    @property
    def linked_share(self) -> float:
        """Buffer bytes reached by either route over all buffer bytes."""
        return self.program_share + self.hlo_share


def hlo_route(instance: Instance, link: Link, compiled_text: str, flat_args: Optional[Sequence[Any]] = None,
              reference: Optional[Sequence[Any]] = None) -> HloRoute:
    """The buffers of `instance` (extracted from `compiled_text`) that `link` leaves unlinked, placed by
    annotating `compiled_text`. With `flat_args`, the annotated module is compiled and run here on them and
    must match `reference` (the original program's flat outputs; default: `compiled_text` run unannotated)
    to 1e-5 relative and absolute tolerance, or no buffer counts as placed. A `compiled_text` of another
    program than `instance` raises ValueError."""
    module = parse_module(compiled_text)
    elements = _element_readers(module)
    target = {b: _target(module, elements, instance.buffers[b]) for b in link.unlinked}
    reasons = {b: t for b, t in target.items() if not t.startswith("%")}
    names = {b: t[1:] for b, t in target.items() if t.startswith("%")}
    reasons.update((b, None) for b in names)
    annotated = hlo_module.annotate_host(compiled_text, set(names.values())) if names else compiled_text
    confirmed = hlo_module.host_placed(annotated) if names else frozenset()
    for b, name in names.items():
        if name not in confirmed:
            reasons[b] = f"not placed: {instance.buffers[b].key} has no MoveToHost result in S(5) read back"
    candidates = set(names)
    outputs_match = None
    if flat_args is not None and names:
        outputs_match = _same_outputs(annotated, compiled_text, flat_args, reference)
        if not outputs_match:
            reasons.update((b, f"outputs differ: the module annotated at {instance.buffers[b].key} computes "
                               f"other outputs") for b in candidates if reasons[b] is None)
    placed = tuple(sorted(b for b, reason in reasons.items() if reason is None))
    left = {b: r for b, r in reasons.items() if r is not None}
    unlinked_bytes: dict[str, int] = {}
    for b, reason in left.items():
        kind = reason.split(":", 1)[0]
        unlinked_bytes[kind] = unlinked_bytes.get(kind, 0) + instance.buffers[b].bytes
    return HloRoute(placed, left, link.linked_bytes, sum(instance.buffers[b].bytes for b in placed),
                    link.total_bytes, unlinked_bytes, outputs_match, annotated)


def _element_readers(module) -> dict[tuple[str, int], list[str]]:
    """(instruction, tuple index) -> the get-tuple-element instructions that read that element."""
    readers: dict[tuple[str, int], list[str]] = {}
    for c in module.computations.values():
        for i in c.instructions:
            if i.opcode == "get-tuple-element":
                readers.setdefault((i.operands[0], int(i.attrs["index"])), []).append(i.name)
    return readers


def _target(module, elements: dict[tuple[str, int], list[str]], b) -> str:
    """`%<name>` of the instruction whose result is buffer `b` and can carry a host placement: its defining
    instruction, or for one element of a tuple the one get-tuple-element that reads it; else why none can
    ("<kind>: <detail>", HLO_UNLINKED_KINDS)."""
    if b.hlo_name not in {i.name for c in module.computations.values() for i in c.instructions}:
        raise ValueError(f"buffer {b.key} names no instruction of module {module.name!r}: the instance was "
                         f"extracted from another program")
    inst = module.instruction(b.hlo_name)
    if b.is_phi or inst.opcode == "while":
        return f"loop state: {b.key} is carried by {inst.opcode} {inst.name}"
    if inst.opcode == "parameter":
        return f"parameter: {b.key} is a parameter of {inst.computation}"
    if len(b.index) == 1 and len(elements.get((inst.name, b.index[0]), [])) == 1:
        inst = module.instruction(elements[(inst.name, b.index[0])][0])
    elif b.index or not isinstance(inst.shape, ArrayShape):
        return f"tuple element: {b.key} is an element of {inst.opcode} {inst.name}'s tuple read by no one " \
               f"get-tuple-element"
    if inst.is_root:
        return f"computation root: {b.key} is the root of {inst.computation}"
    return f"%{inst.name}"


def _same_outputs(annotated: str, original: str, flat_args: Sequence[Any],
                  reference: Optional[Sequence[Any]]) -> bool:
    """Whether module `annotated`, compiled and run on `flat_args`, computes `reference` (default: module
    `original`'s outputs)."""
    got = hlo_module.run_text(annotated, flat_args)
    want = [np.asarray(r) for r in reference] if reference is not None else hlo_module.run_text(original, flat_args)
    return len(got) == len(want) and all(
        g.shape == w.shape and np.allclose(g, w, rtol=1e-5, atol=1e-5, equal_nan=True) for g, w in zip(got, want))
