"""Realizations checked without the hardware: exported for cuda and tpu, run on the CPU."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import workloads
from harness import Mapping
from harness.device.placements import check_export, read_placements
from harness.device.realization import NATIVE, extract_linked, realize
from harness.xla.linking import link, used_values


def _scan_fn(xs, w):
    def body(h, x):
        h = jnp.tanh(h @ w + x)
        return h, h * 2.0
    return jax.lax.scan(body, jnp.zeros(xs.shape[1:]), xs)


def _cond_fn(x, y):
    z = jnp.sin(x) @ y
    return jax.lax.cond(z.sum() > 0, lambda a: a * 2, lambda a: a - 1, z) + jnp.cos(z)


def _custom_jvp_fn(x, w):
    h = jax.nn.relu(x @ w)  # relu is a custom_jvp
    g = jax.grad(lambda w: jnp.sum(jax.nn.softplus(x @ w) ** 2))(w)
    return h.sum() + g


def _scan_grad_fn(xs, w):
    return jax.grad(lambda w: _scan_fn(xs, w)[1].sum())(w)


def _while_fn(h, w):
    body = lambda c: (c[0] + 1, jnp.tanh(h @ w) * 0.5 + c[1] @ w)
    return jax.lax.while_loop(lambda c: c[0] < 4, body, (0, h))[1]


OUTSIDE = {
    "scan": (_scan_fn, (np.ones((6, 4, 8), np.float32), np.eye(8, dtype=np.float32))),
    "cond": (_cond_fn, (np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8), np.ones((8, 8), np.float32))),
    "scan-grad": (_scan_grad_fn, (np.ones((6, 4, 8), np.float32), np.eye(8, dtype=np.float32) * 0.5)),
    "while": (_while_fn, (np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8), np.eye(8, dtype=np.float32) * 0.5)),
    "custom-jvp-grad": (_custom_jvp_fn, (np.ones((4, 8), np.float32), np.full((8, 8), 0.1, np.float32))),
}


def _program(name):
    if name in OUTSIDE:
        return OUTSIDE[name]
    return workloads.get(name).build("ci")


def _every_other_slow(instance):
    """A mapping with every other buffer (by id) in slow memory, parameters and outputs included."""
    return Mapping({b.id: 0 for b in instance.buffers if b.id % 2}, len(instance.buffers), instance.name, "test")


@pytest.mark.parametrize("name", workloads.names("ci") + sorted(OUTSIDE))
def test_exported_placements_are_the_slow_set_minus_unlinked(name):
    fn, args = _program(name)
    instance, program, _ = extract_linked(fn, args, name)
    mapping = _every_other_slow(instance)
    realized = realize(fn, args, instance, mapping, backend="cuda", program=program)
    report = realized.report
    linked_slow = set(report.slow_buffers) - set(report.unlinked)
    assert linked_slow, "the test mapping should send something to slow memory"
    print(f"{name}: linked share of buffer bytes {report.linked_share:.3f}, "
          f"{len(report.unlinked)} slow buffers unlinked ({report.unlinked_bytes} bytes)")
    for platform in ("cuda", "tpu"):
        placements = check_export(realized, args, platform)
        assert placements.problems == ()
        assert placements.host_values == set(report.offloaded_values)
        assert placements.fetched_values <= placements.host_values
        # every offloaded value comes back where it is used (a loop's unused carry out is not)
        assert not (placements.host_values - placements.fetched_values) & used_values(program)
    value_of = link(program, instance).value_of
    assert set(report.offloaded_values) == {value_of[b] for b in linked_slow}


@pytest.mark.parametrize("name", ["mlp-train", "lstm-scan", "alphatensor-strassen", "scan", "scan-grad", "while", "cond"])
def test_realized_program_computes_the_same_outputs_on_cpu(name):
    fn, args = _program(name)
    instance, program, _ = extract_linked(fn, args, name)
    realized = realize(fn, args, instance, _every_other_slow(instance), backend="cuda", program=program)
    assert realized.report.offloaded_values
    got, want = jax.tree.leaves(realized.fn(*args)), jax.tree.leaves(jax.jit(fn)(*args))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-6)


def test_cpu_reports_not_realizable_and_runs_untouched():
    fn, args = _program("matmul-chain")
    instance, program, _ = extract_linked(fn, args, "matmul-chain")
    realized = realize(fn, args, instance, _every_other_slow(instance), backend="cpu", program=program)
    assert not realized.report.realizable
    assert "one memory tier" in realized.report.reason
    assert realized.report.offloaded_values == ()
    assert read_placements(jax.jit(realized.fn).lower(*args).as_text(), program).host_values == frozenset()


def test_xla_native_is_untouched_on_any_backend():
    fn, args = _program("matmul-chain")
    instance, program, _ = extract_linked(fn, args, "matmul-chain")
    native = Mapping({}, len(instance.buffers), instance.name, NATIVE)
    realized = realize(fn, args, instance, native, backend="cuda", program=program)
    assert realized.report.offloaded_values == () and realized.report.slow_buffers == ()
    assert check_export(realized, args, "cuda").host_values == frozenset()


def test_mapping_of_another_program_is_refused():
    fn, args = _program("matmul-chain")
    instance, program, _ = extract_linked(fn, args, "matmul-chain")
    with pytest.raises(ValueError, match="made for another program"):
        realize(fn, args, instance, Mapping({}, len(instance.buffers) + 1, "x", "test"), program=program)


def test_unlinked_buffers_are_reported_with_their_bytes():
    # a long cumsum: XLA rewrites its reduce-window into steps of its own, values of no equation
    fn, args = (lambda x: jnp.cumsum(x, axis=0) * 2.0), (np.ones((512, 64), np.float32),)
    instance, program, _ = extract_linked(fn, args, "cumsum")
    realized = realize(fn, args, instance, Mapping({}, len(instance.buffers), "cumsum", "test"), backend="cuda",
                       program=program)
    report = realized.report
    assert report.unlinked
    assert report.unlinked_bytes == sum(instance.buffers[b].bytes for b in report.unlinked)
    assert report.linked_share < 1.0
