"""A JAX function as a program of numbered steps, evaluated equation by equation in named scopes.

The function is traced to a jaxpr, calls are inlined (jit, custom_jvp/vjp,
checkpoint), primitives that lower through a JAX function are evaluated as that
function, and the bodies of loops and branches (scan, while, cond) are flattened
too. The program is evaluated step by step, each inside a `jax.named_scope`
called `eqn<k>` (a body's steps are traced anew inside their loop's scope).
Compiled instructions carry the scopes in their `op_name` metadata, forward and
backward alike, so the buffer an instruction defines names the step whose
output it holds (`harness.xla.linking`). Values are numbered: the flat arguments
first, then each step's outputs (and a body's arguments) in order. The same
function and argument shapes always give the same numbering, so a mapping made
on the instance of the scoped program can be applied to it (`harness.realize`):
offloaded values are put in host memory after their definition and brought back
before each use.
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


def used_values(program: Program) -> frozenset[int]:
    """The values some step or body reads, or the program returns."""
    atoms = [a for step in program.steps for a in step.inputs] + list(program.outputs)
    atoms += [a for step in program.steps for body in step.bodies for a in body.outputs]
    return frozenset(a for a in atoms if isinstance(a, int))
