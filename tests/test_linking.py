"""Linking buffers to program values: loops, branches, sorts and cumsums, and the reasons for what stays
unlinked."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import workloads

from harness.device.realization import extract_linked
from harness.xla.extraction import extract
from harness.xla.linking import UNLINKED_KINDS, link, step_of


def _rnn(h0, xs, w):
    def step(h, x):
        h = jnp.tanh(h @ w + x)
        return h, h * 2.0
    return jax.lax.scan(step, h0, xs)


def _rnn_grad(h0, xs, w):
    return jax.grad(lambda w: _rnn(h0, xs, w)[1].sum())(w)


def _while(h, w):
    def body(carry):
        i, h = carry
        return i + 1, jnp.tanh(h @ w) + h
    return jax.lax.while_loop(lambda c: c[0] < 5, body, (0, h))[1]


def _cond(x, w):
    y = x @ w
    return jax.lax.cond(y.sum() > 0, lambda a: jnp.tanh(a @ w), lambda a: jnp.sin(a) @ w, y)


def _five_outputs(x):
    return jnp.sort(x, axis=-1), jnp.cumsum(x, axis=0), x.max(axis=1), jnp.exp(x).sum(), {"gram": x.T @ x}


def _multi_output(x, i):
    values, indices = jax.lax.top_k(x, 4)
    keys, perm = jax.lax.sort((x, i), num_keys=1)
    return values, indices, keys, perm


def _nested(xs, w):
    def outer(c, x):
        inner = jax.lax.scan(lambda d, y: (jnp.tanh(d @ w + y),) * 2, c, x)
        return inner[0], jax.lax.switch(jnp.int32(x.sum() > 0), [jnp.sin, jnp.cos, jnp.tanh], inner[1])
    return jax.lax.scan(outer, jnp.zeros(xs.shape[2:]), xs)


_F = lambda *shape: np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
PROGRAMS = {
    "rnn": (_rnn, (_F(8, 64), _F(16, 8, 64), _F(64, 64) * 0.1)),
    "rnn-grad": (_rnn_grad, (_F(8, 64), _F(16, 8, 64), _F(64, 64) * 0.1)),
    "while": (_while, (_F(16, 64), _F(64, 64) * 0.1)),
    "cond": (_cond, (_F(16, 64), _F(64, 64))),
    "five-outputs": (_five_outputs, (_F(64, 64),)),
    "multi-output": (_multi_output, (_F(32, 32), np.arange(32 * 32, dtype=np.int32).reshape(32, 32))),
    "nested": (_nested, (_F(3, 4, 8, 32), _F(32, 32) * 0.1)),
}


@pytest.mark.parametrize("name", ["rnn", "rnn-grad", "while", "cond", "multi-output", "nested"])
def test_loops_branches_and_multi_output_primitives_are_linked_to_95_percent_of_bytes(name):
    fn, args = PROGRAMS[name]
    instance, program, _ = extract_linked(fn, args, name)
    linked = link(program, instance)
    assert linked.linked_share >= 0.95, linked.unlinked_bytes
    inside = [b for b in instance.buffers if b.id in linked.value_of and "/while/body/" in b.op_name]
    assert name in ("cond", "multi-output") or inside, "a loop body's buffers should be linked"


def test_each_output_of_a_multi_output_primitive_holds_its_own_value():
    fn, args = PROGRAMS["multi-output"]
    instance, program, _ = extract_linked(fn, args, "multi-output")
    value_of = link(program, instance).value_of
    multi = [op for op in instance.ops if op.opcode in ("sort", "custom-call") and len(op.writes) > 1]
    assert len(multi) == 2  # top_k and the sort of two operands
    for op in multi:
        held = [value_of[b] for b in op.writes]
        assert [program.avals[v].dtype for v in held] == [args[0].dtype, np.dtype(np.int32)]


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_every_unlinked_buffer_has_a_reason_of_a_known_kind(name):
    fn, args = PROGRAMS[name]
    instance, program, _ = extract_linked(fn, args, name)
    linked = link(program, instance)
    assert set(linked.reasons) == set(linked.unlinked)
    assert {r.split(":", 1)[0] for r in linked.reasons.values()} <= set(UNLINKED_KINDS)
    assert sum(linked.unlinked_bytes.values()) == sum(instance.buffers[b].bytes for b in linked.unlinked)
    assert linked.linked_bytes + sum(linked.unlinked_bytes.values()) == linked.total_bytes


def test_each_output_of_a_five_output_function_is_linked():
    fn, args = PROGRAMS["five-outputs"]
    instance, program, _ = extract_linked(fn, args, "five-outputs")
    linked = link(program, instance)
    outputs = {linked.value_of.get(b.id) for b in instance.buffers if b.is_output}
    assert {a for a in program.outputs if isinstance(a, int)} <= outputs


def test_a_linked_buffer_holds_a_value_of_its_size():
    fn, args = PROGRAMS["rnn-grad"]
    instance, program, _ = extract_linked(fn, args, "rnn-grad")
    for b, v in link(program, instance).value_of.items():
        assert program.nbytes(v) == instance.buffers[b].bytes


def test_innermost_scope_names_the_step():
    assert step_of("jit(f)/eqn24/while/body/closed_call/eqn7/dot_general") == 7
    assert step_of("jit(f)/eqn24/while") == 24
    assert step_of("reduce_window_sum") is None


@pytest.mark.parametrize("name", ["rnn-grad", "while", "cond", "five-outputs", "lstm-scan"])
def test_the_scoped_program_compiles_to_the_instance_of_the_plain_one(name):
    fn, args = PROGRAMS[name] if name in PROGRAMS else workloads.get(name).build("ci")
    plain = extract(fn, *args, name=name)
    scoped, _, _ = extract_linked(fn, args, name)
    assert [(o.opcode, o.flops, o.operand_bytes, o.output_bytes, o.trip_count) for o in scoped.ops] == \
           [(o.opcode, o.flops, o.operand_bytes, o.output_bytes, o.trip_count) for o in plain.ops]
    assert [(b.shape, b.start, b.end, b.uses, b.is_phi) for b in scoped.buffers] == \
           [(b.shape, b.start, b.end, b.uses, b.is_phi) for b in plain.buffers]


def test_an_instance_of_another_program_is_refused():
    fn, args = PROGRAMS["while"]
    _, program, _ = extract_linked(fn, args, "while")
    other, _, _ = extract_linked(*PROGRAMS["five-outputs"], "five-outputs")
    with pytest.raises(ValueError, match="not extracted from"):
        link(program, other)
