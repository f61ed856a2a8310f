"""The cost model against hand computations, for both memory models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness import Buffer, CompilerFigures, Instance, Mapping, Op, Profile, simulate_ops
from harness import simulate
from harness.model.costmodel import total_time
from harness.model.simulator import cost_tables, fast_mask


def _buffer(i, name, nbytes, start, end, uses, parameter=False, output=False):
    return Buffer(id=i, hlo_name=name, index=(), shape=f"u8[{nbytes}]", bytes=nbytes, start=start, end=end,
                  uses=uses, is_parameter=parameter, is_output=output, is_phi=False, is_constant=False,
                  alias_group=i, reuses=-1, op_name=name)


def _op(step, name, reads=(), nbytes=(), writes=(), out=0, flops=0.0, trans=0.0):
    return Op(step=step, name=name, opcode="fusion", computation="main", flops=flops, transcendentals=trans,
              reads=reads, operand_bytes=nbytes, writes=writes, output_bytes=out, trip_count=1, branch=None,
              op_name=name)


# op0 defines parameter b0 (1024 B); op1 reads b0, writes b1 (128 B), 1024 flops;
# op2 reads b1 and b0, writes output b2 (256 B), 64 transcendentals.
THREE_OPS = Instance(
    name="three-ops", hlo_module="hand", backend="none", jax_version="", jaxlib_version="",
    ops=(_op(0, "p"), _op(1, "a", (0,), (1024,), (1,), 128, flops=1024.0),
         _op(2, "b", (1, 0), (128, 1024), (2,), 256, trans=64.0)),
    buffers=(_buffer(0, "b0", 1024, 0, 3, (1, 2), parameter=True), _buffer(1, "b1", 128, 1, 2, (2,)),
             _buffer(2, "b2", 256, 2, 3, (), output=True)),
    left_out=(), compiler=CompilerFigures(1024.0, 64.0, 0.0, 1024, 256, 128, 0))


def _profile(model):
    return Profile(name=f"hand-{model}", description="hand computation", backend="cpu", memory_model=model,
                   fast_capacity_bytes=4096, granule_bytes=128, fast_bandwidth=1024.0, slow_bandwidth=128.0,
                   copy_bandwidth=128.0, flop_rate=1024.0, vector_flop_rate=1024.0, transcendental_rate=16.0, op_overhead_seconds=0.5,
                   realizable=False, sources={})


def _mapping(fast):
    return Mapping({b: 128 * k for k, b in enumerate(fast)}, 3)


def test_direct_model_by_hand():
    # op0: 0.5 (overhead). op1: max(1, 1024/128 + 128/1024 + 0.5) = 8.625.
    # op2: max(64/16, 128/1024 + 1024/128 + 256/128 + 0.5) = 10.625.
    assert simulate(THREE_OPS, _mapping([1]), _profile("direct")) == pytest.approx(19.75, rel=1e-9, abs=1e-9)
    # all fast: 0.5 + max(1, 1152/1024 + .5) + max(4, 1408/1024 + .5) = 0.5 + 1.625 + 4
    assert simulate(THREE_OPS, _mapping([0, 1, 2]), _profile("direct")) == pytest.approx(6.125, abs=1e-9)


def test_offload_model_by_hand_with_the_copy_queue_as_bottleneck():
    # Ops run from device memory: 0.5, max(1, 1.125 + .5) = 1.625, max(4, 1.375 + .5) = 4.
    # In-queue (FIFO): b0 for op1 (from op0 on), b0 again for op2 and b1 for op2 (from op2 on).
    # op0 idles 0.5 s: 64 B of b0 arrive. Before op1: 960 B left, stall 7.5 s.
    # b1 goes out after op1 (128 B). Before op2: 1152 B in while 128 B go out, sharing
    # the link: stall (1152 + 128) / 128 = 10 s. Total 6.125 + 7.5 + 10.
    profile = _profile("offload")
    assert simulate(THREE_OPS, _mapping([2]), profile) == pytest.approx(23.625, abs=1e-9)
    ops = simulate_ops(THREE_OPS, _mapping([2]), profile)
    assert list(ops["stall"]) == [0.0, 7.5, 10.0]
    assert list(ops["elapsed"]) == [0.5, 1.625, 4.0]
    # b2 slow as well: its 256 B go out after the last op, waited for at the end: + 2 s.
    assert simulate(THREE_OPS, _mapping([]), profile) == pytest.approx(25.625, abs=1e-9)
    # b0 fast: b1 out (128 B) and in (128 B) share the link before op2: 2 s; b2 out at the end: 2 s.
    assert simulate(THREE_OPS, _mapping([0]), profile) == pytest.approx(10.125, abs=1e-9)


def test_per_op_breakdown_adds_up():
    for model in ("direct", "offload"):
        profile = _profile(model)
        ops = simulate_ops(THREE_OPS, _mapping([1]), profile)
        total = ops["elapsed"].sum() + ops["stall"].sum() + ops["final_stall"].sum()
        assert total == pytest.approx(simulate(THREE_OPS, _mapping([1]), profile), rel=1e-6)


def test_cost_model_jits_and_vmaps_over_mappings():
    profile = _profile("offload")
    cands, tables = cost_tables(THREE_OPS, profile)
    masks = np.array([fast_mask(THREE_OPS, _mapping(f), cands) for f in ([], [0], [2], [0, 1, 2])])
    batched = jax.jit(jax.vmap(lambda m: total_time(tables, m, True)))(jnp.asarray(masks))
    singles = [simulate(THREE_OPS, _mapping(f), profile) for f in ([], [0], [2], [0, 1, 2])]
    np.testing.assert_allclose(np.asarray(batched), singles, rtol=1e-6)
