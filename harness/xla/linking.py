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

from harness.xla.instance import Instance

SCOPE = "eqn"  # scope of equation k: eqn<k>; the arguments' placements are in eqn_args
OFFLOAD_SCOPE = "offload"  # scope of the placement of value v in host memory: offload<v>
FETCH_SCOPE = "fetch"  # scope of bringing value v back to device memory: fetch<v>
_SCOPE_RE = re.compile(rf"(?:^|/){SCOPE}(\d+)(?:/|$)")

# Call-like primitives whose body is evaluated inline, equation by equation.
_INLINE = {"pjit": "jaxpr", "jit": "jaxpr", "closed_call": "call_jaxpr", "core_call": "call_jaxpr",
           "custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr",
           "custom_vjp_call_jaxpr": "fun_jaxpr", "checkpoint": "jaxpr", "remat": "jaxpr"}


@dataclasses.dataclass(frozen=True)
class Step:
    """One equation of the flat program: `outputs = primitive.bind(inputs, **params)`."""

    eqn: Any  # the jaxpr equation (its primitive and params)
    inputs: tuple[Any, ...]  # value numbers, or `Literal`s
    outputs: tuple[int, ...]  # value numbers (-1 for dropped outputs)


@dataclasses.dataclass(frozen=True)
class Program:
    """A traced function as a flat list of steps over numbered values."""

    name: str
    steps: tuple[Step, ...]
    n_args: int  # values 0 .. n_args - 1 are the flat arguments
    consts: dict[int, Any]  # value number -> constant
    outputs: tuple[Any, ...]  # value numbers or `Literal`s of the flat outputs
    avals: tuple[Any, ...]  # abstract value of each value number
    in_tree: Any
    out_tree: Any

    def nbytes(self, value: int) -> int:
        """Bytes of value `value`."""
        aval = self.avals[value]
        return int(np.prod(aval.shape, dtype=np.int64)) * np.dtype(aval.dtype).itemsize


def trace(fn: Callable[..., Any], args: tuple[Any, ...]) -> Program:
    """Trace `fn(*args)` and flatten it into numbered steps."""
    flat_args, in_tree = jax.tree_util.tree_flatten(args)
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
    out_tree = jax.tree_util.tree_structure(out_shape)
    avals: list[Any] = []
    steps: list[Step] = []
    consts: dict[int, Any] = {}

    def new(var) -> int:
        avals.append(var.aval)
        return len(avals) - 1

    def flatten(jaxpr, const_values, inputs) -> list[Any]:
        env: dict[Any, Any] = {}

        def read(atom):
            return atom if isinstance(atom, jcore.Literal) else env[atom]

        for var, value in zip(jaxpr.constvars, const_values):
            env[var] = new(var)
            consts[env[var]] = value
        env.update(zip(jaxpr.invars, inputs))
        for eqn in jaxpr.eqns:
            body = _inline_body(eqn)
            if body is not None:
                inner, inner_consts = body
                outs = flatten(inner, inner_consts, [read(a) for a in eqn.invars])
                env.update(zip(eqn.outvars, outs))
                continue
            outputs = tuple(-1 if isinstance(v, jcore.DropVar) else new(v) for v in eqn.outvars)
            steps.append(Step(eqn, tuple(read(a) for a in eqn.invars), outputs))
            env.update((v, o) for v, o in zip(eqn.outvars, outputs) if o >= 0)
        return [read(a) for a in jaxpr.outvars]

    arg_numbers = [new(v) for v in closed.jaxpr.invars]
    outputs = flatten(closed.jaxpr, closed.consts, arg_numbers)
    if len(flat_args) != len(arg_numbers):
        raise ValueError(f"{len(flat_args)} flat arguments for a jaxpr of {len(arg_numbers)} inputs")
    name = getattr(fn, "__name__", "program")
    return Program(name, tuple(steps), len(arg_numbers), consts, tuple(outputs), tuple(avals), in_tree, out_tree)


def _inline_body(eqn) -> Optional[tuple[Any, list[Any]]]:
    """(jaxpr, consts) of a call-like equation to evaluate inline, else None."""
    key = _INLINE.get(eqn.primitive.name)
    body = eqn.params.get(key) if key else None
    if isinstance(body, jcore.ClosedJaxpr):
        return body.jaxpr, list(body.consts)
    if isinstance(body, jcore.Jaxpr) and not body.constvars:
        return body, []
    return None


def evaluate(program: Program, flat_args: list[Any], offload: frozenset[int] = frozenset()) -> list[Any]:
    """Run the program step by step in `eqn<k>` scopes; values in `offload` live in host memory.

    An offloaded value is put in host memory right after its definition and
    brought back to device memory before each use (and before it is returned).
    """
    env: dict[int, Any] = dict(enumerate(flat_args)) | dict(program.consts)
    host: dict[int, Any] = {}

    def place(v: int) -> None:
        if v in offload:
            with jax.named_scope(f"{OFFLOAD_SCOPE}{v}"):
                host[v] = jax.device_put(env.pop(v), jax.memory.Space.Host)

    def read(atom):
        if isinstance(atom, jcore.Literal):
            return atom.val
        if atom in host:
            with jax.named_scope(f"{FETCH_SCOPE}{atom}"):
                return jax.device_put(host[atom], jax.memory.Space.Device)
        return env[atom]

    with jax.named_scope(f"{SCOPE}_args"):
        for v in list(env):
            place(v)
    for k, step in enumerate(program.steps):
        with jax.named_scope(f"{SCOPE}{k}"):
            subfuns, params = _bind_params(step.eqn)
            with getattr(getattr(step.eqn, "ctx", None), "manager", contextlib.nullcontext()):
                outs = step.eqn.primitive.bind(*subfuns, *[read(a) for a in step.inputs], **params)
            if not step.eqn.primitive.multiple_results:
                outs = [outs]
            for v, out in zip(step.outputs, outs):
                if v >= 0:
                    env[v] = out
                    place(v)
    with jax.named_scope(f"{SCOPE}_out"):
        return [read(a) for a in program.outputs]


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
    """The equation number in an instruction's `op_name`, or None."""
    m = _SCOPE_RE.search(op_name)
    return int(m.group(1)) if m else None


@dataclasses.dataclass(frozen=True)
class Link:
    """Which program value each buffer of an instance holds."""

    value_of: dict[int, int]  # buffer id -> value number
    unlinked: tuple[int, ...]  # buffer ids with no value of the program
    reasons: dict[int, str]  # buffer id -> why it is unlinked
    linked_bytes: int
    total_bytes: int

    @property
    def linked_share(self) -> float:
        """Linked buffer bytes over all buffer bytes."""
        return self.linked_bytes / self.total_bytes if self.total_bytes else 1.0


def link(program: Program, instance: Instance) -> Link:
    """Link each buffer of `instance` (extracted from `jit(program)`) to a program value.

    A parameter buffer holds the flat argument of its number. Any other buffer
    holds the output of the equation named in its `op_name` whose size matches;
    buffers inside loop bodies, of equations with several outputs of that size,
    or of no named equation (compiler-made copies) are reported unlinked.
    """
    computation = {op.name: op.computation for op in instance.ops}
    entry_name = next((computation[b.hlo_name] for b in instance.buffers if b.parameter_number >= 0), "")
    value_of: dict[int, int] = {}
    reasons: dict[int, str] = {}
    for b in instance.buffers:
        if b.parameter_number >= 0:
            if b.parameter_number < program.n_args and program.nbytes(b.parameter_number) == b.bytes:
                value_of[b.id] = b.parameter_number
            else:
                reasons[b.id] = f"parameter {b.parameter_number} is no argument of {b.bytes} bytes"
            continue
        if computation.get(b.hlo_name) != entry_name or b.is_phi:
            reasons[b.id] = "defined inside a loop or branch body"
            continue
        k = step_of(b.op_name)
        if k is None or k >= len(program.steps):
            reasons[b.id] = f"no equation scope in op_name {b.op_name!r}"
            continue
        matches = [v for v in program.steps[k].outputs if v >= 0 and program.nbytes(v) == b.bytes]
        if len(matches) == 1:
            value_of[b.id] = matches[0]
        else:
            reasons[b.id] = f"equation {k} has {len(matches)} outputs of {b.bytes} bytes"
    total = sum(b.bytes for b in instance.buffers)
    linked = sum(instance.buffers[b].bytes for b in value_of)
    return Link(value_of, tuple(sorted(reasons)), reasons, linked, total)
