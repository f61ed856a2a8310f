"""Link the buffers of an instance to the values of the JAX program that made them.

The function is traced to a jaxpr, calls are inlined (jit, custom_jvp/vjp,
checkpoint), and the program is evaluated equation by equation, each inside a
`jax.named_scope` called `eqn<k>`. Compiled instructions carry the scope in their
`op_name` metadata, forward and backward alike, so the buffer an instruction
defines names the equation whose output it holds. Values are numbered: the flat
arguments first, then each equation's outputs in order. The same function and
argument shapes always give the same numbering, so a mapping made on the
instance of the scoped program can be applied to it (`harness.realize`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from typing import Any, Callable, Optional

import jax
import numpy as np
from jax.extend import core as jcore
from jax._src.interpreters import mlir  # the lowering rules: which primitives lower through a JAX function

from harness.xla.instance import Instance

SCOPE = "eqn"  # scope of equation k: eqn<k>; the arguments' placements are in eqn_args
OFFLOAD_SCOPE = "offload"  # scope of the placement of value v in host memory: offload<v>
FETCH_SCOPE = "fetch"  # scope of bringing value v back to device memory: fetch<v>
_SCOPE_RE = re.compile(rf"(?:^|/){SCOPE}(\d+)(?:/|$)")

# Call-like primitives whose body is evaluated inline, equation by equation.
_INLINE = {"pjit": "jaxpr", "jit": "jaxpr", "closed_call": "call_jaxpr", "core_call": "call_jaxpr",
           "custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr",
           "custom_vjp_call_jaxpr": "fun_jaxpr", "checkpoint": "jaxpr", "remat": "jaxpr"}


# Control-flow primitives whose bodies are evaluated equation by equation too: the parameters holding their
# bodies (a closed jaxpr, or a tuple of them). A body value's scope nests in its loop's: eqn<k>/.../eqn<j>.
_BODIES = {"scan": ("jaxpr",), "while": ("cond_jaxpr", "body_jaxpr"), "cond": ("branches",)}


@dataclasses.dataclass(frozen=True)
class Body:
    """A loop or branch body of a step, flattened into steps of its own over numbered values."""

    param: str  # the equation parameter that holds the body
    position: int  # its place in a tuple parameter (cond branches), -1 for a single body
    inputs: tuple[int, ...]  # value numbers of the body's arguments (one iteration's carry, slice, consts)
    consts: tuple[int, ...]  # value numbers of the body's own constants
    steps: tuple[int, ...]  # step numbers of its equations, in order
    outputs: tuple[Any, ...]  # value numbers or `Literal`s of its results


@dataclasses.dataclass(frozen=True)
class Step:
    """One equation of the flat program: `outputs = primitive.bind(inputs, **params)`."""

    eqn: Any  # the jaxpr equation (its primitive and params)
    inputs: tuple[Any, ...]  # value numbers, or `Literal`s
    outputs: tuple[int, ...]  # value numbers (-1 for dropped outputs)
    bodies: tuple[Body, ...] = ()  # loop and branch bodies, evaluated step by step as well


@dataclasses.dataclass(frozen=True)
class Program:
    """A traced function as a flat list of steps over numbered values.

    Steps are numbered across the whole program, bodies included; `top` lists
    the steps of the function itself, in order (the others run inside a body).
    """

    name: str
    steps: tuple[Step, ...]
    n_args: int  # values 0 .. n_args - 1 are the flat arguments
    consts: dict[int, Any]  # value number -> constant
    outputs: tuple[Any, ...]  # value numbers or `Literal`s of the flat outputs
    avals: tuple[Any, ...]  # abstract value of each value number
    in_tree: Any
    out_tree: Any
    top: tuple[int, ...]  # step numbers of the function's own equations (bodies excluded)
    top_consts: tuple[int, ...]  # value numbers of the function's own constants

    def nbytes(self, value: int) -> int:
        """Bytes of value `value`."""
        aval = self.avals[value]
        return int(np.prod(aval.shape, dtype=np.int64)) * np.dtype(aval.dtype).itemsize


class _Flattener:
    """Numbers values and steps while flattening a jaxpr, its calls inlined and its bodies flattened."""

    def __init__(self):
        self.avals: list[Any] = []
        self.steps: list[Step] = []
        self.consts: dict[int, Any] = {}

    def new(self, var) -> int:
        self.avals.append(var.aval)
        return len(self.avals) - 1

    def flatten(self, jaxpr, const_values, inputs, consts: list[int], level: list[int]) -> list[Any]:
        """Flatten `jaxpr` applied to `inputs`; appends its constants' numbers to `consts` and its step
        numbers (calls inlined) to `level`; returns its outputs."""
        env: dict[Any, Any] = {}

        def read(atom):
            return atom if isinstance(atom, jcore.Literal) else env[atom]

        for var, value in zip(jaxpr.constvars, const_values):
            env[var] = self.new(var)
            self.consts[env[var]] = value
            consts.append(env[var])
        env.update(zip(jaxpr.invars, inputs))
        for eqn in jaxpr.eqns:
            body = _inline_body(eqn) or _lowering_body(eqn)
            if body is not None:
                inner, inner_consts = body
                outs = self.flatten(inner, inner_consts, [read(a) for a in eqn.invars], consts, level)
                env.update(zip(eqn.outvars, outs))
                continue
            bodies = tuple(self.body(param, position, closed) for param, position, closed in _bodies_of(eqn))
            outputs = tuple(-1 if isinstance(v, jcore.DropVar) else self.new(v) for v in eqn.outvars)
            self.steps.append(Step(eqn, tuple(read(a) for a in eqn.invars), outputs, bodies))
            level.append(len(self.steps) - 1)
            env.update((v, o) for v, o in zip(eqn.outvars, outputs) if o >= 0)
        return [read(a) for a in jaxpr.outvars]

    def body(self, param: str, position: int, closed) -> Body:
        """The flattened body held by parameter `param` (at `position` of a tuple)."""
        inputs = tuple(self.new(v) for v in closed.jaxpr.invars)
        consts: list[int] = []
        level: list[int] = []
        outputs = self.flatten(closed.jaxpr, list(closed.consts), list(inputs), consts, level)
        return Body(param, position, inputs, tuple(consts), tuple(level), tuple(outputs))


def _bodies_of(eqn) -> list[tuple[str, int, Any]]:
    """(parameter, position, closed jaxpr) of each body of a control-flow equation; [] for any other."""
    found = []
    for param in _BODIES.get(eqn.primitive.name, ()):
        value = eqn.params.get(param)
        if isinstance(value, jcore.ClosedJaxpr):
            found.append((param, -1, value))
        elif isinstance(value, (tuple, list)) and all(isinstance(b, jcore.ClosedJaxpr) for b in value):
            found.extend((param, k, b) for k, b in enumerate(value))
    return found


def trace(fn: Callable[..., Any], args: tuple[Any, ...]) -> Program:
    """Trace `fn(*args)` and flatten it into numbered steps, loop and branch bodies included."""
    flat_args, in_tree = jax.tree_util.tree_flatten(args)
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
    out_tree = jax.tree_util.tree_structure(out_shape)
    flat = _Flattener()
    arg_numbers = [flat.new(v) for v in closed.jaxpr.invars]
    top: list[int] = []
    top_consts: list[int] = []
    outputs = flat.flatten(closed.jaxpr, closed.consts, arg_numbers, top_consts, top)
    if len(flat_args) != len(arg_numbers):
        raise ValueError(f"{len(flat_args)} flat arguments for a jaxpr of {len(arg_numbers)} inputs")
    name = getattr(fn, "__name__", "program")
    return Program(name, tuple(flat.steps), len(arg_numbers), flat.consts, tuple(outputs), tuple(flat.avals),
                   in_tree, out_tree, tuple(top), tuple(top_consts))


def _lowering_body(eqn) -> Optional[tuple[Any, list[Any]]]:
    """(jaxpr, consts) of the JAX function that lowers `eqn`'s primitive on the local backend, where its
    lowering is one (`mlir.lower_fun`: select_and_scatter_add, cumsum on the CPU, ...), else None.

    Evaluated inline, the values inside the primitive's lowering are equations
    of their own, so their buffers are linked; XLA compiles the same ops.
    """
    entry = mlir._platform_specific_lowerings[jax.default_backend()].get(eqn.primitive) \
        or mlir._lowerings.get(eqn.primitive)
    rule = getattr(entry, "rule", None)
    if getattr(rule, "__name__", "") != "f_lowered" or not rule.__closure__ or _BODIES.get(eqn.primitive.name):
        return None
    cells = dict(zip(rule.__code__.co_freevars, (c.cell_contents for c in rule.__closure__)))
    fun, multiple = cells.get("fun"), cells.get("multiple_results")
    if not callable(fun) or not isinstance(multiple, bool):
        return None
    lowered = (lambda *a: fun(*a, **eqn.params)) if multiple else (lambda *a: [fun(*a, **eqn.params)])
    closed = jax.make_jaxpr(lowered)(*[v.aval for v in eqn.invars])
    return closed.jaxpr, list(closed.consts)


def _inline_body(eqn) -> Optional[tuple[Any, list[Any]]]:
    """(jaxpr, consts) of a call-like equation to evaluate inline, else None."""
    key = _INLINE.get(eqn.primitive.name)
    body = eqn.params.get(key) if key else None
    if isinstance(body, jcore.ClosedJaxpr):
        return body.jaxpr, list(body.consts)
    if isinstance(body, jcore.Jaxpr) and not body.constvars:
        return body, []
    return None


@dataclasses.dataclass
class _Values:
    """The values of one evaluation scope (the function, or one trace of a body): on device, or in host memory."""

    device: dict[int, Any]
    offload: frozenset[int]
    host: dict[int, Any] = dataclasses.field(default_factory=dict)

    def place(self, v: int) -> None:
        """Put value v in host memory if it is offloaded."""
        if v in self.offload:
            with jax.named_scope(f"{OFFLOAD_SCOPE}{v}"):
                self.host[v] = jax.device_put(self.device.pop(v), jax.memory.Space.Host)

    def read(self, atom):
        """A value for use: a literal's constant, a device value, or an offloaded one brought back."""
        if isinstance(atom, jcore.Literal):
            return atom.val
        if atom in self.host:
            with jax.named_scope(f"{FETCH_SCOPE}{atom}"):
                return jax.device_put(self.host[atom], jax.memory.Space.Device)
        return self.device[atom]


def evaluate(program: Program, flat_args: list[Any], offload: frozenset[int] = frozenset()) -> list[Any]:
    """Run the program step by step in `eqn<k>` scopes; values in `offload` live in host memory.

    An offloaded value is put in host memory right after its definition and
    brought back to device memory before each use (and before it is returned);
    inside a loop body, in each iteration.
    """
    values = _Values(dict(enumerate(flat_args)) | {v: program.consts[v] for v in program.top_consts}, offload)
    with jax.named_scope(f"{SCOPE}_args"):
        for v in list(values.device):
            values.place(v)
    _run(program, program.top, values)
    with jax.named_scope(f"{SCOPE}_out"):
        return [values.read(a) for a in program.outputs]


def _run(program: Program, steps: tuple[int, ...], values: _Values) -> None:
    """Evaluate `steps` of `program` over `values`, each in its scope.

    An offloaded stacked output of a scan is put in host memory inside the body,
    each iteration's part before it is stacked, so the whole stack lives there.
    """
    for k in steps:
        step = program.steps[k]
        with jax.named_scope(f"{SCOPE}{k}"):
            stacked = {p: v for v, p in stacked_outputs(step).items() if v in values.offload}
            subfuns, params = _bind_params(step.eqn)
            params = _with_scoped_bodies(program, step, params, values.offload, stacked)
            with getattr(getattr(step.eqn, "ctx", None), "manager", contextlib.nullcontext()):
                outs = step.eqn.primitive.bind(*subfuns, *[values.read(a) for a in step.inputs], **params)
            if not step.eqn.primitive.multiple_results:
                outs = [outs]
            for p, (v, out) in enumerate(zip(step.outputs, outs)):
                if p in stacked:
                    values.host[v] = out
                elif v >= 0:
                    values.device[v] = out
                    values.place(v)


def stacked_outputs(step: Step) -> dict[int, int]:
    """Value number -> output position of each stacked output of a scan step (outputs after the carry)."""
    if step.eqn.primitive.name != "scan":
        return {}
    n_carry = step.eqn.params["num_carry"]
    return {v: p for p, v in enumerate(step.outputs) if p >= n_carry and v >= 0}


def _with_scoped_bodies(program: Program, step: Step, params: dict[str, Any], offload: frozenset[int],
                        stacked: dict[int, int]) -> dict:
    """`params` with each body of `step` traced anew, its equations in scopes of their own; `stacked`
    (output position -> value) names the scan outputs whose parts the body puts in host memory."""
    if not step.bodies:
        return params
    params = dict(params)
    for body in step.bodies:
        closed = _scoped_body(program, body, offload, stacked if body.param == "jaxpr" else {})
        if body.position < 0:
            params[body.param] = closed
        else:
            branches = list(params[body.param])
            branches[body.position] = closed
            params[body.param] = tuple(branches)
    return params


def _scoped_body(program: Program, body: Body, offload: frozenset[int], stacked: dict[int, int]):
    """The closed jaxpr of `body` evaluated step by step in scopes, its offloaded values in host memory,
    and its outputs at the positions of `stacked` put in host memory (in the scope of the stack's value)."""

    def run(*inputs):
        values = _Values(dict(zip(body.inputs, inputs)) | {v: program.consts[v] for v in body.consts}, offload)
        for v in body.inputs:
            values.place(v)
        _run(program, body.steps, values)
        outs = [values.read(a) for a in body.outputs]
        for p, v in stacked.items():
            with jax.named_scope(f"{OFFLOAD_SCOPE}{v}"):
                outs[p] = jax.device_put(outs[p], jax.memory.Space.Host)
        return outs

    return jax.make_jaxpr(run)(*[program.avals[v] for v in body.inputs])


def body_inputs(program: Program) -> frozenset[int]:
    """The value numbers of every body's arguments."""
    return frozenset(v for step in program.steps for body in step.bodies for v in body.inputs)


def stack_source(program: Program, value: int) -> Optional[Any]:
    """The body output (value number or `Literal`) whose parts a scan stacks into `value`; None for any
    other value."""
    for step in program.steps:
        position = stacked_outputs(step).get(value)
        if position is not None:
            return next(b for b in step.bodies if b.param == "jaxpr").outputs[position]
    return None


def _bind_params(eqn) -> tuple[list[Any], dict[str, Any]]:
    """(subfunctions, params) to bind an equation with, across JAX versions.

    Older JAX returns both from `get_bind_params`, newer the params alone.
    """
    got = eqn.primitive.get_bind_params(eqn.params)
    if isinstance(got, tuple) and len(got) == 2 and isinstance(got[1], dict):
        return list(got[0]), got[1]
    return [], got


def scoped(program: Program, offload: frozenset[int] = frozenset()) -> Callable[..., Any]:
    """The program as a function of the original arguments, evaluated in scopes."""

    def run(*args):
        flat = jax.tree_util.tree_leaves(args)
        return jax.tree_util.tree_unflatten(program.out_tree, evaluate(program, flat, offload))

    run.__name__ = program.name
    return run


def jit(program: Program, offload: frozenset[int] = frozenset()):
    """`jax.jit` of the scoped program, keeping unused arguments so parameter numbers match."""
    return jax.jit(scoped(program, offload), keep_unused=True)


def compile_scoped(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Program, Any]:
    """The scoped program of `fn(*args)` and its compiled executable: what extraction reads and what a
    realized mapping runs."""
    program = trace(fn, args)
    return program, jit(program).lower(*args).compile()


def step_of(op_name: str) -> Optional[int]:
    """The equation number of the innermost `eqn<k>` scope in an instruction's `op_name`, or None."""
    found = _SCOPE_RE.findall(op_name)
    return int(found[-1]) if found else None


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
    holds that value. A buffer of no equation that only one equation reads holds
    its input of that size that no other buffer holds (a constant or broadcast
    the compiler materialized); an output buffer of no equation holds the
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


def used_values(program: Program) -> frozenset[int]:
    """The values some step or body reads, or the program returns."""
    atoms = [a for step in program.steps for a in step.inputs] + list(program.outputs)
    atoms += [a for step in program.steps for body in step.bodies for a in body.outputs]
    return frozenset(a for a in atoms if isinstance(a, int))


def _by_readers(program: Program, instance: Instance, found: dict[int, int | str]) -> dict[int, int | str]:
    """Compiler values read by the ops of one equation only: the input of that equation of their size that
    no buffer holds yet (a constant, iota or broadcast the compiler materialized where it is used)."""
    readers: dict[int, set] = {}
    for op in instance.ops:
        for r in op.reads:
            if r >= 0:
                readers.setdefault(r, set()).add(step_of(op.op_name))
    held = {v for v in found.values() if isinstance(v, int)}
    out: dict[int, int | str] = {}
    for b in instance.buffers:
        reason, steps = found[b.id], readers.get(b.id, set())
        if not (isinstance(reason, str) and reason.startswith("compiler value") and len(steps) == 1):
            continue
        k = next(iter(steps))
        if k is None or k >= len(program.steps):
            continue
        inputs = {a for a in program.steps[k].inputs
                  if isinstance(a, int) and a not in held and program.nbytes(a) == b.bytes}
        if len(inputs) == 1:
            out[b.id] = inputs.pop()
            held.add(out[b.id])
    return out


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
    (layout copy), an op that reads no buffer (compiler constant), else a part of the equation its data flows
    into (primitive internal)."""
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
        if not reads:
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
