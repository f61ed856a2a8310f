"""Ops timed alone: those whose profiler event holds only their dispatch.

On the CPU, XLA runs an unfused convolution or dot (an Eigen convolution or
dot thunk) on the intra-op thread pool: its trace event ends when the work is
handed to the pool, and the pool's work follows outside any op event (a bare
640x512x128 dot: a 104 us event in a 1.6 ms call). Such an op's own time is
measured by compiling it alone, as a program of that one op on inputs of its
shapes, and timing calls of that program less the calls of a program that
takes the same inputs and does (almost) nothing: the launch both pay.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from harness.xla.hlo_text import ArrayShape, Instruction, Module

DISPATCH_ONLY = ("convolution", "dot")  # opcodes whose CPU trace event is the dispatch of asynchronous work
_FLOATS = {"f16": jnp.float16, "bf16": jnp.bfloat16, "f32": jnp.float32, "f64": jnp.float64}


class OpAloneError(ValueError):
    """An op that cannot be rebuilt as a program of its own; the message names the op and what is missing."""


def dispatch_only(inst: Instruction) -> bool:
    """Whether the op's profiler event holds only its dispatch (its time must be measured alone)."""
    return inst.opcode in DISPATCH_ONLY


def _window(inst: Instruction) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(r"(\w+)=([^ }]+)", inst.attrs.get("window", "{}"))}


def convolution_program(module: Module, inst: Instruction) -> tuple[Callable[..., Any], tuple[jax.Array, ...]]:
    """(fn, args): `inst`, an HLO convolution, as a JAX function of its two operands, and inputs of their shapes.

    The window (size from the kernel, stride, padding, dilations), the dimension labels and the
    feature and batch group counts are those of the HLO; a reversed window is not reversed
    (reversal moves no work). Raises OpAloneError for another opcode or labels it cannot read.
    """
    if inst.opcode != "convolution":
        raise OpAloneError(f"op {inst.name}: opcode {inst.opcode!r} is not a convolution")
    labels = inst.attrs.get("dim_labels", "")
    m = re.fullmatch(r"(\w+)_(\w+)->(\w+)", labels)
    if not m:
        raise OpAloneError(f"op {inst.name}: dim_labels {labels!r} is not of the form lhs_rhs->out")
    lhs_l, rhs_l, out_l = m.groups()
    spatial = sorted(c for c in out_l if c.isdigit())
    spec = lambda l, first, second: tuple(l.index(c) for c in (first, second, *spatial))  # noqa: E731
    numbers = jax.lax.ConvDimensionNumbers(spec(lhs_l, "b", "f"), spec(rhs_l, "o", "i"), spec(out_l, "b", "f"))
    window, n = _window(inst), len(spatial)

    def field(key: str) -> tuple[int, ...]:
        return tuple(int(x) for x in window[key].split("x")) if key in window else (1,) * n

    pads = ([tuple(int(p) for p in s.split("_")) for s in window["pad"].split("x")] if "pad" in window
            else [(0, 0)] * n)
    shapes = _operand_shapes(module, inst)

    def fn(lhs, rhs):
        return jax.lax.conv_general_dilated(
            lhs, rhs, field("stride"), pads, lhs_dilation=field("lhs_dilate"), rhs_dilation=field("rhs_dilate"),
            dimension_numbers=numbers, feature_group_count=int(inst.attrs.get("feature_group_count", "1")),
            batch_group_count=int(inst.attrs.get("batch_group_count", "1")))

    return fn, _inputs(shapes)


def dot_program(module: Module, inst: Instruction) -> tuple[Callable[..., Any], tuple[jax.Array, ...]]:
    """(fn, args): `inst`, an HLO dot, as a JAX function of its two operands (its contracting and batch
    dimensions), and inputs of their shapes. Raises OpAloneError for another opcode."""
    if inst.opcode != "dot":
        raise OpAloneError(f"op {inst.name}: opcode {inst.opcode!r} is not a dot")
    shapes = _operand_shapes(module, inst)
    dims = ((tuple(inst.ints("lhs_contracting_dims")), tuple(inst.ints("rhs_contracting_dims"))),
            (tuple(inst.ints("lhs_batch_dims")), tuple(inst.ints("rhs_batch_dims"))))
    return (lambda lhs, rhs: jax.lax.dot_general(lhs, rhs, dims)), _inputs(shapes)


def op_program(module: Module, inst: Instruction) -> tuple[Callable[..., Any], tuple[jax.Array, ...]]:
    """(fn, args) of a dispatch-only op (`dispatch_only`): `convolution_program` or `dot_program`."""
    programs = {"convolution": convolution_program, "dot": dot_program}
    if inst.opcode not in programs:
        raise OpAloneError(f"op {inst.name}: opcode {inst.opcode!r} is not timed alone (only {', '.join(programs)})")
    return programs[inst.opcode](module, inst)


def _operand_shapes(module: Module, inst: Instruction) -> list[ArrayShape]:
    shapes = [module.instruction(o).shape for o in inst.operands[:2]]
    if not all(isinstance(s, ArrayShape) for s in shapes):
        raise OpAloneError(f"op {inst.name}: an operand is not an array")
    if shapes[0].dtype not in _FLOATS:
        raise OpAloneError(f"op {inst.name}: element type {shapes[0].dtype!r} is not one of {', '.join(_FLOATS)}")
    return shapes


def _inputs(shapes: list[ArrayShape]) -> tuple[jax.Array, ...]:
    rng = np.random.default_rng(0)
    return tuple(jnp.asarray(rng.standard_normal(s.dims), _FLOATS[s.dtype]) for s in shapes)


def _least_call(compiled, args: tuple, calls: int) -> float:
    jax.block_until_ready(compiled(*args))  # warm
    least = float("inf")
    for _ in range(calls):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        least = min(least, time.perf_counter() - t0)
    return least


class AloneTimer:
    """Times one program of one op: `timer()` -> its seconds per call, less the launch (>= 0)."""

    def __init__(self, fn: Callable[..., Any], args: tuple, calls: int = 10):
        if isinstance(calls, bool) or not isinstance(calls, int) or calls < 1:
            raise ValueError(f"calls must be a positive integer, got {calls!r}")
        self.args, self.calls = args, calls
        self.op = jax.jit(fn).lower(*args).compile()
        self.launch = jax.jit(lambda *a: a[0].ravel()[:1]).lower(*args).compile()

    def __call__(self) -> float:
        """Least seconds of `calls` calls of the op's program less the least of the launch's calls."""
        return max(_least_call(self.op, self.args, self.calls) - _least_call(self.launch, self.args, self.calls), 0.0)
