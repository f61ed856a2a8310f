"""Extracted instances equal what XLA compiled: live ranges, sizes, flops and footprint."""

import jax
import jax.numpy as jnp
import pytest
from extraction_checks import check_against_xla

import workloads
from harness import compile_with_dump, from_compiled
from harness import extract


def _check(fn, *args, name="f"):
    compiled, dump = compile_with_dump(fn, *args)
    instance = from_compiled(compiled, name)
    ratios = check_against_xla(instance, dump)
    print(f"{name}: peak live / XLA footprint = {ratios['peak_ratio']:.3f}, flops / XLA = {ratios['flops_ratio']:.4f}")
    return instance


@pytest.mark.parametrize("name", workloads.names("ci"))
def test_ci_workload_matches_xla(name):
    fn, args = workloads.get(name).build("ci")
    instance = _check(fn, *args, name=name)
    assert instance.buffers and instance.ops


def _scan(x, w):
    def body(carry, _):
        carry = jnp.tanh(carry @ w)
        return carry, carry.sum()

    return jax.lax.scan(body, x, None, length=5)


def test_scan_matches_xla_and_records_trip_count():
    instance = _check(_scan, jnp.ones((8, 16)), jnp.ones((16, 16)), name="scan")
    body_ops = [op for op in instance.ops if op.trip_count == 5]
    assert any(op.flops >= 2 * 8 * 16 * 16 for op in body_ops), "the loop's dot should run 5 times"
    assert any(b.is_phi for b in instance.buffers)
    assert any(v.reason == "tuple index table" for v in instance.left_out)


def _conv(x, k):
    y = jax.lax.conv_general_dilated(x, k, (2, 2), "SAME", rhs_dilation=(1, 1))
    return jax.nn.relu(y).mean()


def test_convolution_and_its_gradient_match_xla():
    x, k = jnp.ones((2, 3, 16, 16)), jnp.ones((8, 3, 3, 3))
    _check(_conv, x, k, name="conv")
    _check(jax.grad(_conv, argnums=(0, 1)), x, k, name="conv-grad")


def _many_outputs(x):
    return tuple(jnp.sin(x * i) for i in range(12)) + ({"sum": x.sum(), "max": x.max()},)


def test_many_outputs_match_xla():
    instance = _check(_many_outputs, jnp.ones((32, 32)), name="many-outputs")
    assert sum(b.is_output for b in instance.buffers) >= 12


def _nested_loops(x):
    def inner(c, _):
        return c * 1.5 + 1.0, None

    def outer(c, _):
        c, _ = jax.lax.scan(inner, c, None, length=3)
        return jnp.sin(c), c.sum()

    return jax.lax.scan(outer, x, None, length=4)


def test_nested_loops_match_xla():
    instance = _check(_nested_loops, jnp.ones((4096,)), name="nested")
    assert {op.trip_count for op in instance.ops} >= {1, 4, 12}


def _cond(p, x):
    return jax.lax.cond(p, lambda v: jnp.exp(v) @ v, lambda v: v @ v.T, x)


def test_conditional_matches_xla():
    _check(_cond, True, jnp.ones((16, 16)), name="cond")


def test_donated_arguments_match_xla():
    step = jax.jit(lambda w, g: (w - 0.1 * g, (g * g).sum()), donate_argnums=(0,))
    instance = _check(step, jnp.ones((64, 64)), jnp.ones((64, 64)), name="donated")
    assert instance.compiler.alias_bytes > 0


def test_instance_links_ops_and_buffers():
    instance = _check(_conv, jnp.ones((2, 3, 16, 16)), jnp.ones((8, 3, 3, 3)), name="conv")
    by_id = {b.id: b for b in instance.buffers}
    for op in instance.ops:
        for b in op.writes:
            assert by_id[b].start == op.step or by_id[b].is_parameter
        for b, n in zip(op.reads, op.operand_bytes):
            if b >= 0:
                assert by_id[b].bytes == n
                assert by_id[b].start <= op.step <= by_id[b].end
    conv = [op for op in instance.ops if op.opcode == "convolution" or "conv" in op.op_name]
    assert conv and max(op.flops for op in conv) > 0


def _relu_chain(x, w1, w2):
    return jax.nn.relu(jax.nn.relu(x @ w1) @ w2) @ w2.T


def test_in_place_reuse_is_what_xla_assigns():
    compiled, dump = compile_with_dump(_relu_chain, jnp.ones((64, 128)), jnp.ones((128, 128)), jnp.ones((128, 128)))
    instance = from_compiled(compiled, "relu-chain")
    check_against_xla(instance, dump)
    pairs = [(b, instance.buffers[b.reuses]) for b in instance.buffers if b.reuses >= 0]
    assert pairs, "the ReLUs should be written over the dot outputs"
    for b, source in pairs:
        assert dump.placements[b.key] == dump.placements[source.key], f"XLA placed {b.key} apart from {source.key}"


def test_matmul_flops_are_the_dots_and_convolutions():
    def f(x, w, k):
        y = jnp.tanh(x @ w) + 1.0
        z = jax.lax.conv_general_dilated(y[None, None], k, (1, 1), "SAME")
        return z.sum()

    x, w, k = jnp.ones((16, 32)), jnp.ones((32, 8)), jnp.ones((4, 1, 3, 3))
    instance = extract(f, x, w, k)
    matmul = sum(op.matmul_flops for op in instance.ops)
    dot = 2 * 16 * 32 * 8
    conv = 2 * 4 * 16 * 8 * 9  # output elements x taps, less the padding taps
    assert dot < matmul <= dot + conv
    assert instance.flops > matmul  # the tanh's add, the +1 and the sum are vector flops
    assert all(op.matmul_flops <= op.flops for op in instance.ops)


def test_sorts_and_windowed_reductions_are_kinds_of_their_own():
    instance = extract(lambda x: jnp.sort(x, axis=-1), jnp.ones((4, 8), jnp.float32))
    (sort,) = [op for op in instance.ops if op.kind == "sort"]
    assert sort.flops == 4 * 8 * 3  # n ceil(log2 n) compares per row of n = 8
    pool = extract(lambda x: jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (2, 2), (2, 2), "VALID"),
                   jnp.ones((8, 8), jnp.float32))
    assert [op.flops for op in pool.ops if op.kind == "windowed-reduction"] == [16 * 3]  # 3 maxes per window


def test_an_operand_read_only_through_a_slice_counts_the_slice():
    xs = jnp.ones((64, 32), jnp.float32)
    instance = extract(lambda xs, i: jax.lax.dynamic_index_in_dim(xs, i, keepdims=False) * 2.0 + 1.0, xs, 3)
    (param,) = [b.id for b in instance.buffers if b.is_parameter and b.bytes == 64 * 32 * 4]
    reads = [n for op in instance.ops for b, n in zip(op.reads, op.operand_bytes) if b == param]
    assert reads and all(n == 32 * 4 for n in reads)  # one row, not the whole array
