"""Ops timed alone: a convolution rebuilt from its HLO computes what the compiled one computes."""

import jax
import numpy as np
import pytest

from harness.device.op_alone import AloneTimer, OpAloneError, convolution_program, dispatch_only, dot_program, op_program
from harness.xla.hlo_text import parse_module


def _conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (2, 1), ((1, 2), (0, 1)), rhs_dilation=(1, 2),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=2)


def test_a_convolution_rebuilt_from_its_hlo_computes_the_same():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 9, 8, 4), np.float32), rng.standard_normal((3, 2, 2, 6), np.float32)
    module = parse_module(jax.jit(_conv).lower(x, w).compile().as_text())
    (conv,) = [i for c in module.computations.values() for i in c.instructions if i.opcode == "convolution"]
    assert dispatch_only(conv)
    fn, args = convolution_program(module, conv)
    assert [a.shape for a in args] == [(2, 9, 8, 4), (3, 2, 2, 6)]
    np.testing.assert_allclose(np.asarray(jax.jit(fn)(x, w)), np.asarray(_conv(x, w)), rtol=1e-5, atol=1e-5)
    assert AloneTimer(fn, args, calls=2)() >= 0.0
    with pytest.raises(OpAloneError, match="is not a convolution"):
        convolution_program(module, module.entry_computation.instructions[0])
    with pytest.raises(ValueError, match="calls must be a positive integer"):
        AloneTimer(fn, args, calls=0)


def _dot(a, b):  # a batched dot contracting the lhs's leading dimension (Eigen's, not a library fusion, on the CPU)
    return jax.lax.dot_general(a, b, (((1,), (1,)), ((0,), (0,))))


def test_a_dot_rebuilt_from_its_hlo_computes_the_same():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 5, 4), np.float32), rng.standard_normal((3, 5, 6), np.float32)
    module = parse_module(jax.jit(_dot).lower(a, b).compile().as_text())
    dots = [i for c in module.computations.values() for i in c.instructions if i.opcode == "dot"]
    if not dots:
        pytest.skip("this backend fused the dot: nothing is timed alone")
    (dot,) = dots
    assert dispatch_only(dot)
    fn, args = op_program(module, dot)
    assert [tuple(x.shape) for x in args] == [(3, 5, 4), (3, 5, 6)]
    np.testing.assert_allclose(np.asarray(jax.jit(fn)(a, b)), np.asarray(_dot(a, b)), rtol=1e-5, atol=1e-5)
    assert AloneTimer(fn, args, calls=2)() >= 0.0
    with pytest.raises(OpAloneError, match="is not a dot"):
        dot_program(module, module.entry_computation.instructions[0])
    with pytest.raises(OpAloneError, match="is not timed alone"):
        op_program(module, module.entry_computation.instructions[0])
