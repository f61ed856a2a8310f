"""Link the buffers of an instance to the values of the JAX program that made them.

The instance is extracted from the scoped program (`harness.xla.scoped_program`),
whose instructions name, in their `op_name`, the step whose output they hold;
loop state, scan slices, aliases and the compiler's materialized inputs are
linked through the instance's dataflow, and every buffer left unlinked carries a
reason (`UNLINKED_KINDS`). The scoped program's names are re-exported here.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Optional

import numpy as np

from harness.xla.instance import Instance
from harness.xla.scoped_program import (
    FETCH_SCOPE, OFFLOAD_SCOPE, SCOPE, Body, Program, Step, compile_scoped, evaluate, jit, scoped, stacked_outputs,
    step_of, trace, used_values)

# The scoped program's names, public here since linking first held them.
__all__ = ["FETCH_SCOPE", "OFFLOAD_SCOPE", "SCOPE", "UNLINKED_KINDS", "Link", "Program", "Step", "compile_scoped",
           "evaluate", "jit", "link", "scoped", "step_of", "trace", "used_values"]


# Why a buffer holds no value of the program: the category a reason starts with.
UNLINKED_KINDS = {
    "loop state": "a while loop's carried value (phi) that no output of the loop matches (its counter)",
    "layout copy": "a copy XLA made of a value in another layout (for a convolution, a transpose, an output)",
    "compiler constant": "a constant, iota or broadcast XLA made of no value of the program",
    "primitive internal": "a value inside one primitive's lowering or XLA's expansion of it, no output of it",
    "compiler value": "an instruction of no equation that no other reason explains",
    "ambiguous": "the equation has several outputs of the buffer's size",
}


@dataclasses.dataclass(frozen=True)
class Link:
    """Which program value each buffer of an instance holds."""

    value_of: dict[int, int]  # buffer id -> value number
    unlinked: tuple[int, ...]  # buffer ids with no value of the program
    reasons: dict[int, str]  # buffer id -> why it is unlinked ("<kind>: <detail>", kinds of UNLINKED_KINDS)
    linked_bytes: int
    total_bytes: int
    unlinked_bytes: dict[str, int] = dataclasses.field(default_factory=dict)  # kind -> unlinked buffer bytes

    @property
    def linked_share(self) -> float:
        """Linked buffer bytes over all buffer bytes."""
        return self.linked_bytes / self.total_bytes if self.total_bytes else 1.0


def link(program: Program, instance: Instance) -> Link:
    """Link each buffer of `instance` (extracted from `jit(program)`) to a program value; an instance
    whose parameters are not the program's arguments raises ValueError.

    A parameter buffer holds the flat argument of its number. Any other buffer
    holds the output of the innermost equation named in its `op_name` whose size
    matches, in a loop or branch body too; a buffer that a loop's lowering made
    in its body (a scan's slice of its inputs) holds the body argument it was
    read from. A loop's carried values (phis) hold, in order, the loop's
    outputs of their shape (in its body: the carry argument of that output).
    A buffer sharing its allocation with buffers of one value (an alias group)
    holds that value. A buffer of no equation that equations read holds the one
    constant input of theirs of its shape that no other buffer holds (a constant
    or broadcast the compiler materialized); an output buffer of no equation holds the
    program output of its shape that no other output buffer holds. The rest are
    unlinked with a reason of `UNLINKED_KINDS`.
    """
    for b in instance.buffers:
        if b.parameter_number >= 0 and (b.parameter_number >= program.n_args
                                        or program.nbytes(b.parameter_number) != b.bytes):
            raise ValueError(f"instance {instance.name!r} was not extracted from program {program.name!r}: its "
                             f"parameter {b.parameter_number} ({b.bytes} bytes) is no argument of the program "
                             f"({program.n_args} arguments)")
    opcode = {op.name: op.opcode for op in instance.ops}
    found = {b.id: _value_of(program, b, opcode.get(b.hlo_name) == "fusion") for b in instance.buffers}
    found.update(_loop_state(program, instance, found))
    found.update(_by_reads(program, instance, found))
    found.update(_by_alias(program, instance, found))
    found.update(_by_readers(program, instance, found))
    found.update(_by_outputs(program, instance, found))
    found.update(_explained(program, instance, found))
    value_of = {b: v for b, v in found.items() if isinstance(v, int)}
    reasons = {b: r for b, r in found.items() if isinstance(r, str)}
    unlinked_bytes: dict[str, int] = {}
    for b, reason in reasons.items():
        kind = reason.split(":", 1)[0]
        unlinked_bytes[kind] = unlinked_bytes.get(kind, 0) + instance.buffers[b].bytes
    total = sum(b.bytes for b in instance.buffers)
    linked = sum(instance.buffers[b].bytes for b in value_of)
    return Link(value_of, tuple(sorted(reasons)), reasons, linked, total, unlinked_bytes)


def _value_of(program: Program, b, fused: bool) -> int | str:
    """The value number buffer `b` holds by its own op_name, or the reason it holds none (yet); `fused`: `b`
    is an output of a fusion (whose tuple order is the compiler's)."""
    if b.parameter_number >= 0:
        return b.parameter_number
    if b.is_phi:
        return f"loop state: {b.key} carries a value across the iterations of a loop"
    k = step_of(b.op_name)
    if k is None or k >= len(program.steps):
        return f"compiler value: no equation scope in op_name {b.op_name!r} of {b.key}"
    step = program.steps[k]
    matches = [v for v in step.outputs if v >= 0 and program.nbytes(v) == b.bytes]
    if not matches and step.bodies and _in_body(b.op_name, k):  # a body argument: a scan's slice of its inputs
        matches = [v for body in step.bodies for v in body.inputs if program.nbytes(v) == b.bytes]
    if len(matches) > 1:  # several outputs of its size: those of its element type and dimensions
        matches = [v for v in matches if _shape_key(program, v) == _buffer_key(b)] or matches
    if len(matches) > 1 and not fused and len(b.index) == 1 and b.index[0] < len(step.outputs) \
            and step.outputs[b.index[0]] in matches:  # output i of a multi-output op (sort, top_k) is output i
        matches = [step.outputs[b.index[0]]]
    if len(matches) == 1:
        return matches[0]
    if matches:
        return f"ambiguous: equation {k} has {len(matches)} values of {b.bytes} bytes for {b.key}"
    return f"primitive internal: {b.key} ({b.bytes} bytes) is no output of equation {k} ({step.eqn.primitive.name})"


def _in_body(op_name: str, k: int) -> bool:
    """Whether `op_name` is inside a body of the loop or branch of equation k (and no equation in it)."""
    tail = op_name.split(f"{SCOPE}{k}/", 1)[-1]
    return tail.startswith(("while/body", "while/cond", "cond/", "scan/"))


_LOOP_RE = re.compile(rf"(?:^|/){SCOPE}(\d+)/while/")


def _loop_steps(instance: Instance) -> dict[str, int]:
    """Computation name -> the step of the loop whose body (or condition) it is, read off its ops' op_names."""
    loops: dict[str, int] = {}
    for op in instance.ops:
        found = _LOOP_RE.findall(op.op_name)
        if found and op.computation not in loops:
            loops[op.computation] = int(found[-1])
    return loops


_HLO_TYPES = {"f": "f", "i": "s", "u": "u", "c": "c"}  # numpy kind -> XLA's element type prefix


def _shape_key(program: Program, value: int) -> str:
    """Value `value`'s shape as XLA writes it (`f32[8,64]`; an element type of no such name by its own)."""
    aval = program.avals[value]
    dtype = np.dtype(aval.dtype)
    if dtype.name == "bfloat16":
        kind = "bf16"
    elif dtype.kind == "b":
        kind = "pred"
    elif dtype.kind in _HLO_TYPES and dtype.name.rstrip("0123456789") in ("float", "int", "uint", "complex"):
        kind = f"{_HLO_TYPES[dtype.kind]}{8 * dtype.itemsize}"
    else:
        kind = dtype.name
    return f"{kind}[{','.join(map(str, aval.shape))}]"


def _buffer_key(b) -> str:
    """Buffer `b`'s shape as `_shape_key` writes a value's."""
    return b.shape.split("{", 1)[0]


def _loop_state(program: Program, instance: Instance, found: dict[int, int | str]) -> dict[int, int | str]:
    """Values of a loop's phis: the n-th phi of a shape (by tuple index) holds the loop's n-th output of that
    shape (of those read, where the compiler dropped the others); in the body, a carried output's phi holds
    the body's carry argument."""
    computation = {op.name: op.computation for op in instance.ops}
    loops = _loop_steps(instance)
    used = used_values(program)
    groups: dict[str, list] = {}
    for b in instance.buffers:
        if b.is_phi and isinstance(found[b.id], str):
            groups.setdefault(b.hlo_name, []).append(b)
    out: dict[int, int | str] = {}
    for name, phis in groups.items():
        k = step_of(phis[0].op_name)
        inside = k is None
        k = loops.get(computation.get(name, ""), -1) if inside else k
        if k < 0 or k >= len(program.steps):
            continue
        step = program.steps[k]
        for key in {_buffer_key(b) for b in phis}:
            same = sorted((b for b in phis if _buffer_key(b) == key), key=lambda b: b.index)
            outputs = [(i, v) for i, v in enumerate(step.outputs) if v >= 0 and _shape_key(program, v) == key]
            if len(same) != len(outputs):  # the compiler dropped the state of unread or forwarded outputs
                outputs = [(i, v) for i, v in outputs if v in used and not _forwarded(step, i)]
            if len(same) != len(outputs):
                out.update((b.id, f"loop state: {len(same)} carried values of shape {b.shape} for "
                                  f"{len(outputs)} such outputs of equation {k}") for b in same)
                continue
            for b, (i, v) in zip(same, outputs):
                carry = _carry_argument(step, i) if inside else None
                out[b.id] = v if carry is None else carry
    return out


def _forwarded(step: Step, position: int) -> bool:
    """Whether output `position` of a scan stacks a body argument or constant as it is (the compiler needs no
    loop state for it)."""
    if position not in stacked_outputs(step).values():
        return False
    body = next(b for b in step.bodies if b.param == "jaxpr")
    atom = body.outputs[position]
    return not isinstance(atom, int) or atom in body.inputs


def _carry_argument(step: Step, position: int) -> Optional[int]:
    """The body argument (value number) that carries output `position` of a scan or while step into its
    body; None for a stacked output of a scan."""
    params, name = step.eqn.params, step.eqn.primitive.name
    body = next((b for b in step.bodies if b.param in ("jaxpr", "body_jaxpr")), None)
    if body is None:
        return None
    if name == "scan":
        return body.inputs[params["num_consts"] + position] if position < params["num_carry"] else None
    return body.inputs[params["body_nconsts"] + position]


def _by_reads(program: Program, instance: Instance, found: dict[int, int | str]) -> dict[int, int | str]:
    """Ambiguous body arguments (a scan's slices of several inputs of one size): the argument whose input
    the op that defines the buffer reads."""
    writer = {w: op for op in instance.ops for w in op.writes}
    out: dict[int, int | str] = {}
    for b in instance.buffers:
        reason = found[b.id]
        if not (isinstance(reason, str) and reason.startswith("ambiguous") and b.id in writer):
            continue
        k = step_of(b.op_name)
        step = program.steps[k]
        read_values = {found.get(r) for r in writer[b.id].reads if r >= 0}
        candidates = {body.inputs[j] for body in step.bodies for j, outer in _outer_inputs(step, body)
                      if outer in read_values and program.nbytes(body.inputs[j]) == b.bytes}
        if len(candidates) == 1:
            out[b.id] = candidates.pop()
    return out


def _outer_inputs(step: Step, body: Body) -> list[tuple[int, Any]]:
    """(body argument position, the step input it comes from) for a scan's or while's body."""
    params, name = step.eqn.params, step.eqn.primitive.name
    if name == "scan":
        return list(enumerate(step.inputs))
    if name == "while" and body.param == "body_jaxpr":
        return [(j, step.inputs[params["cond_nconsts"] + j]) for j in range(len(body.inputs))]
    return []


def _by_alias(program: Program, instance: Instance, found: dict[int, int | str]) -> dict[int, int | str]:
    """Unlinked buffers of an alias group whose linked buffers all hold one value: that value. In a loop's
    state, a buffer outside the loop (the copy XLA makes of the initial carry) holds the loop's input that
    the carry starts from."""
    held: dict[int, set] = {}
    for b in instance.buffers:
        if isinstance(found[b.id], int):
            held.setdefault(b.alias_group, set()).add(found[b.id])
    computation = {op.name: op.computation for op in instance.ops}
    loops, origin = _loop_steps(instance), _carry_origins(program)
    out: dict[int, int | str] = {}
    for b in instance.buffers:
        values = held.get(b.alias_group, set())
        if not isinstance(found[b.id], str) or b.parameter_number >= 0:
            continue
        if len(values) == 1:
            out[b.id] = next(iter(values))
            continue
        starts = {origin[v] for v in values if v in origin and loops.get(computation.get(b.hlo_name)) != origin[v][0]}
        if len(starts) == 1 and not b.is_phi:
            out[b.id] = next(iter(starts))[1]
    return out


def _carry_origins(program: Program) -> dict[int, tuple[int, Any]]:
    """Body argument (value number) -> (its loop's step number, the step input it starts from)."""
    origins = {}
    for k, step in enumerate(program.steps):
        for body in step.bodies:
            origins.update((body.inputs[j], (k, outer)) for j, outer in _outer_inputs(step, body)
                           if isinstance(outer, int))
    return origins


def _by_readers(program: Program, instance: Instance, found: dict[int, int | str]) -> dict[int, int | str]:
    """Compiler values that equations read: the one constant input of those equations of their shape that no
    buffer holds yet (a constant, iota or broadcast the compiler materialized where it is used)."""
    readers: dict[int, set] = {}
    for op in instance.ops:
        for r in op.reads:
            if r >= 0:
                readers.setdefault(r, set()).add(step_of(op.op_name))
    held = {v for v in found.values() if isinstance(v, int)}
    constant = _constant_values(program)
    out: dict[int, int | str] = {}
    for b in instance.buffers:
        reason = found[b.id]
        steps = {k for k in readers.get(b.id, ()) if k is not None and k < len(program.steps)}
        if not (isinstance(reason, str) and reason.startswith("compiler value") and steps):
            continue
        inputs = {a for k in steps for a in program.steps[k].inputs if isinstance(a, int) and a in constant
                  and a not in held and _shape_key(program, a) == _buffer_key(b)}
        if len(inputs) == 1:
            out[b.id] = inputs.pop()
            held.add(out[b.id])
    return out


def _constant_values(program: Program) -> frozenset[int]:
    """The values of the function itself that are constants or computed from constants and literals only
    (what the compiler folds and materializes where they are used)."""
    constant = set(program.top_consts)
    for k in program.top:
        step = program.steps[k]
        if not step.bodies and all(not isinstance(a, int) or a in constant for a in step.inputs):
            constant.update(v for v in step.outputs if v >= 0)
    return frozenset(constant)


def _by_outputs(program: Program, instance: Instance, found: dict[int, int | str]) -> dict[int, int | str]:
    """Unlinked output buffers: the program output of their shape that no other output buffer holds."""
    held = {found[b.id] for b in instance.buffers if b.is_output and isinstance(found[b.id], int)}
    out: dict[int, int | str] = {}
    for b in instance.buffers:
        if not (b.is_output and isinstance(found[b.id], str) and b.parameter_number < 0):
            continue
        free = {a for a in program.outputs
                if isinstance(a, int) and a not in held and _shape_key(program, a) == _buffer_key(b)}
        if len(free) == 1:
            out[b.id] = free.pop()
            held.add(out[b.id])
    return out


def _explained(program: Program, instance: Instance, found: dict[int, int | str]) -> dict[int, int | str]:
    """The reasons of the compiler's values left unlinked, by what made them: a copy of one linked value
    (layout copy), an op that reads no buffer but constants (compiler constant), else a part of the equation
    its data flows into (primitive internal)."""
    writer = {w: op for op in instance.ops for w in op.writes}
    readers: dict[int, list] = {}
    for op in instance.ops:
        for r in op.reads:
            if r >= 0:
                readers.setdefault(r, []).append(op)
    defined = {v: k for k, step in enumerate(program.steps) for v in step.outputs if v >= 0}
    out: dict[int, int | str] = {}
    for b in instance.buffers:
        reason, op = found[b.id], writer.get(b.id)
        if not (isinstance(reason, str) and reason.startswith("compiler value")):
            continue
        if op is None:
            if b.is_constant:
                out[b.id] = f"compiler constant: {b.key} is a constant of the compiled program"
            continue
        reads = [r for r in op.reads if r >= 0]
        if op.kind == "data-movement" and len(reads) == 1 and isinstance(found.get(reads[0]), int):
            out[b.id] = f"layout copy: {b.key} is a copy of value {found[reads[0]]} made by {op.name}"
            continue
        k = _equation_downstream(b.id, readers, found, defined)
        where = f"equation {k} ({program.steps[k].eqn.primitive.name})" if k is not None else "no equation"
        if all(instance.buffers[r].is_constant for r in reads):
            out[b.id] = f"compiler constant: {b.key} made by {op.name} for {where}"
        else:
            out[b.id] = f"primitive internal: {b.key} made by {op.name} (no op_name) inside {where}"
    return out


def _equation_downstream(start: int, readers: dict[int, list], found: dict[int, int | str],
                         defined: dict[int, int]) -> Optional[int]:
    """The first equation that buffer `start`'s data flows into: an op in its scope, or a buffer linked to
    its output (breadth first through the ops that read it)."""
    seen, frontier = {start}, [start]
    while frontier:
        nxt = []
        for b in frontier:
            for op in readers.get(b, []):
                k = step_of(op.op_name)
                if k is not None:
                    return k
                for w in op.writes:
                    if isinstance(found.get(w), int) and found[w] in defined:
                        return defined[found[w]]
                    if w not in seen:
                        seen.add(w)
                        nxt.append(w)
        frontier = nxt
    return None
