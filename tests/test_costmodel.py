"""The cost model against hand computations, for both memory models."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import synthetic
from harness import Buffer, CompilerFigures, Instance, Mapping, Op, Profile, simulate_ops
from harness import load_profile, simulate
from harness.model.costmodel import (_drain, branch_share, conv_groups, copy_stalls, dot_batch, fast_bytes, op_elapsed,
                                     timing, total_time)
from harness.model.simulator import batch, cost_tables, fast_mask, simulate_batch


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
    # max(work, memory) + overhead. op0: 0.5 (overhead). op1: max(1, 1024/128 + 128/1024) + 0.5 = 8.625.
    # op2: max(64/16, 128/1024 + 1024/128 + 256/128) + 0.5 = 10.625.
    assert simulate(THREE_OPS, _mapping([1]), _profile("direct")) == pytest.approx(19.75, rel=1e-9, abs=1e-9)
    # all fast: 0.5 + max(1, 1152/1024) + .5 + max(4, 1408/1024) + .5 = 0.5 + 1.625 + 4.5
    assert simulate(THREE_OPS, _mapping([0, 1, 2]), _profile("direct")) == pytest.approx(6.625, abs=1e-9)


def test_an_op_of_one_branch_counts_as_often_as_its_branch_is_taken_by_hand():
    # op1 and op2 in branches 0 and 1 of one conditional (two branches): each runs in half the runs.
    # all fast: 0.5 + (1.625 + 4.5) / 2
    branched = dataclasses.replace(THREE_OPS, ops=(THREE_OPS.ops[0],) + tuple(
        dataclasses.replace(op, branch=f"cond.1:{k}") for k, op in enumerate(THREE_OPS.ops[1:])))
    assert branch_share(branched).tolist() == [1.0, 0.5, 0.5]
    assert simulate(branched, _mapping([0, 1, 2]), _profile("direct")) == pytest.approx(3.5625, abs=1e-9)
    np.testing.assert_allclose(simulate_ops(branched, _mapping([0, 1, 2]), _profile("direct"))["elapsed"],
                               [0.5, 0.8125, 2.25], rtol=1e-6)
    # three branches (op2 in the last), beside a program of the same conditional's name with two: apart in a batch
    three = dataclasses.replace(branched, ops=branched.ops[:2] + (
        dataclasses.replace(branched.ops[2], branch="cond.1:2"),))
    assert branch_share(three).tolist() == pytest.approx([1.0, 1 / 3, 1 / 3])
    pairs = [(branched, _mapping([0, 1, 2])), (three, _mapping([0, 1, 2]))]
    whole, _ = simulate_batch(batch(pairs), _profile("direct"))
    np.testing.assert_allclose(whole, [3.5625, 0.5 + 6.125 / 3], rtol=1e-6)


def test_offload_model_by_hand_with_the_copy_queue_as_bottleneck():
    # Ops run from device memory: 0.5, max(1, 1.125) + .5 = 1.625, max(4, 1.375) + .5 = 4.5.
    # In-queue (FIFO): b0 for op1 (from op0 on), b0 again for op2 and b1 for op2 (from op2 on).
    # op0 idles 0.5 s: 64 B of b0 arrive. Before op1: 960 B left, stall 7.5 s.
    # b1 goes out after op1 (128 B). Before op2: 1152 B in while 128 B go out, sharing
    # the link: stall (1152 + 128) / 128 = 10 s. Total 6.625 + 7.5 + 10.
    profile = _profile("offload")
    assert simulate(THREE_OPS, _mapping([2]), profile) == pytest.approx(24.125, abs=1e-9)
    ops = simulate_ops(THREE_OPS, _mapping([2]), profile)
    assert list(ops["stall"]) == [0.0, 7.5, 10.0]
    assert list(ops["elapsed"]) == [0.5, 1.625, 4.5]
    # b2 slow as well: its 256 B go out after the last op, waited for at the end: + 2 s.
    assert simulate(THREE_OPS, _mapping([]), profile) == pytest.approx(26.125, abs=1e-9)
    # b0 fast: b1 out (128 B) and in (128 B) share the link before op2: 2 s; b2 out at the end: 2 s.
    assert simulate(THREE_OPS, _mapping([0]), profile) == pytest.approx(10.625, abs=1e-9)


def test_per_op_breakdown_adds_up():
    for model in ("direct", "offload"):
        profile = _profile(model)
        ops = simulate_ops(THREE_OPS, _mapping([1]), profile)
        total = ops["elapsed"].sum() + ops["stall"].sum() + ops["final_stall"].sum() + ops["launch"]
        assert total == pytest.approx(simulate(THREE_OPS, _mapping([1]), profile), rel=1e-6)


def test_cost_model_jits_and_vmaps_over_mappings():
    profile = _profile("offload")
    cands, tables = cost_tables(THREE_OPS, profile)
    masks = np.array([fast_mask(THREE_OPS, _mapping(f), cands) for f in ([], [0], [2], [0, 1, 2])])
    batched = jax.jit(jax.vmap(lambda m: total_time(tables, m, True)))(jnp.asarray(masks))
    singles = [simulate(THREE_OPS, _mapping(f), profile) for f in ([], [0], [2], [0, 1, 2])]
    np.testing.assert_allclose(np.asarray(batched), singles, rtol=1e-6)


def _kind_op(step, kind, flops=0.0, matmul=0.0, nbytes=0, iterations=None):
    return Op(step=step, name=f"{kind}{step}", opcode="fusion", computation="main", flops=flops, transcendentals=0.0,
              reads=(0,) if nbytes else (), operand_bytes=(nbytes,) if nbytes else (), writes=(), output_bytes=0,
              trip_count=1, branch=None, op_name="", matmul_flops=matmul, kind=kind, iterations=iterations)


KINDS = Instance(
    name="kinds", hlo_module="hand", backend="none", jax_version="", jaxlib_version="",
    ops=(_kind_op(0, "free"), _kind_op(1, "dot", 3000.0, 2000.0), _kind_op(2, "convolution", 2000.0, 2000.0),
         _kind_op(3, "elementwise", 200.0), _kind_op(4, "reduction", 200.0), _kind_op(5, "data-movement", nbytes=256),
         _kind_op(6, "loop", iterations=8)),
    buffers=(_buffer(0, "b0", 256, 0, 6, (5,), parameter=True),), left_out=(),
    compiler=CompilerFigures(0.0, 0.0, 0.0, 256, 0, 0, 0))


def test_each_op_kind_has_its_own_rate_by_hand():
    profile = dataclasses.replace(
        _profile("direct"), fast_bandwidth=1024.0, slow_bandwidth=1024.0, flop_rate=1000.0, vector_flop_rate=100.0,
        conv_flop_rate=500.0, reduction_flop_rate=50.0, move_bandwidth=64.0, matmul_half_flops=1000.0,
        loop_iteration_seconds=0.25, program_overhead_seconds=1.0)
    elapsed = simulate_ops(KINDS, _mapping([0]), profile)["elapsed"]
    # free: 0. dot: (2000 + 1000)/1000 + 1000/100 + .5. conv: (2000 + 1000)/500 + .5. elementwise: 200/100 + .5.
    # reduction: 200/50 + .5. data movement: max(256/64, 256/1024) + .5. loop: 8 x .25 + .5.
    np.testing.assert_allclose(elapsed, [0.0, 13.5, 6.5, 2.5, 4.5, 4.5, 2.5], rtol=1e-6)
    # the run's launch, once
    assert simulate(KINDS, _mapping([0]), profile) == pytest.approx(34.0 + 1.0, rel=1e-6)


def test_general_figures_stand_in_for_the_optional_ones():
    profile = _profile("direct")  # no kind rates: convolutions at flop_rate, reductions at vector_flop_rate
    elapsed = simulate_ops(KINDS, _mapping([0]), profile)["elapsed"]
    # Every rate is 1024 flop/s; data movement is memory time only (256 B from the fast tier at 1024 B/s);
    # loops cost their overhead.
    expected = [0.0, 3000 / 1024 + .5, 2000 / 1024 + .5, 200 / 1024 + .5, 200 / 1024 + .5, 256 / 1024 + .5, 0.5]
    np.testing.assert_allclose(elapsed, expected, rtol=1e-6)


def test_cost_model_vmaps_over_tables_too():
    profiles = (_profile("offload"), dataclasses.replace(_profile("offload"), copy_bandwidth=64.0))
    cands, tables = zip(*(cost_tables(THREE_OPS, p) for p in profiles))
    mask = jnp.asarray(fast_mask(THREE_OPS, _mapping([2]), cands[0]))
    batched = jax.jit(jax.vmap(lambda t: total_time(t, mask, True)))(jax.tree.map(lambda *x: jnp.stack(x), *tables))
    assert list(np.asarray(batched)) == [simulate(THREE_OPS, _mapping([2]), p) for p in profiles]
    assert batched[1] > batched[0]  # half the copy bandwidth: longer stalls


def _sequential_copy_stalls(tables, fast, elapsed):
    """The copy queue as the cost model ran it before the incremental re-runs: one lax.scan over all ops.
    Kept here only as the oracle of the test below."""
    slow = 1.0 - fast
    zero = jnp.zeros(1, jnp.float32)
    pf_cum = jnp.concatenate([zero, jnp.cumsum(tables.pf_bytes * slow[tables.pf_cand])])
    avail, need = pf_cum[tables.pf_queued], pf_cum[tables.pf_needed]
    ev_bytes = tables.ev_bytes * slow[tables.ev_cand]
    out_avail = jnp.concatenate([zero, jnp.cumsum(ev_bytes)])[tables.ev_queued]
    bw = tables.copy_bw
    idle = elapsed * tables.weight

    def step(carry, x):
        r_done, w_done = carry
        need_t, avail_t, out_t, idle_t = x
        wait_in = jnp.maximum(need_t - r_done, 0.0)
        out_while_waiting = jnp.minimum(wait_in, out_t - w_done)
        stall = (wait_in + out_while_waiting) / bw
        r_done, w_done = r_done + wait_in, w_done + out_while_waiting
        dr, dw = _drain(idle_t, avail_t - r_done, out_t - w_done, bw)
        return (r_done + dr, w_done + dw), stall

    start = (jnp.float32(0.0), jnp.float32(0.0))
    (r_done, w_done), stalls = jax.lax.scan(step, start, (need, avail, out_avail, idle))
    final = (jnp.sum(ev_bytes) - w_done) / bw
    return jnp.concatenate([stalls, final[None]])


def _random_problem(seed, n, pattern):
    instance = synthetic(seed, n, pattern=pattern)
    cands, tables = cost_tables(instance, load_profile("h100-offload"))
    rng = np.random.default_rng(seed)
    masks = (rng.random((4, len(fast_mask(instance, Mapping({}, len(instance.buffers)), cands))))
             < rng.random((4, 1))).astype(np.float32)
    return tables, jnp.asarray(masks)


_PROBLEMS = dict(seed=st.integers(0, 10_000), n=st.integers(2, 60),
                 pattern=st.sampled_from(["training", "inference", "random"]))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**_PROBLEMS)
def test_copy_stalls_match_the_sequential_scan(seed, n, pattern):
    tables, masks = _random_problem(seed, n, pattern)
    for fast in masks:
        elapsed = op_elapsed(tables, fast_bytes(tables, fast))
        np.testing.assert_array_equal(np.asarray(jax.jit(copy_stalls)(tables, fast, elapsed)),
                                      np.asarray(jax.jit(_sequential_copy_stalls)(tables, fast, elapsed)))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])  # each compiles 4 programs (~3.5 s)
@given(**_PROBLEMS, offload=st.booleans())
def test_retiming_a_change_and_batches_give_the_bits_of_a_full_run(seed, n, pattern, offload):
    tables, masks = _random_problem(seed, n, pattern)
    full = jax.jit(lambda m: timing(tables, m, offload))
    retime = jax.jit(lambda m, before, before_mask: timing(tables, m, offload, (before, before_mask)))
    singles = [full(m) for m in masks]
    before = masks[::-1]  # in the batch, mask i is re-timed from mask 3 - i
    batched = jax.jit(jax.vmap(retime))(masks, jax.jit(jax.vmap(full))(before), before)
    for i, mask in enumerate(masks):
        for got in (retime(mask, singles[3 - i], masks[3 - i]), retime(mask, singles[i], mask),
                    jax.tree.map(lambda x: x[i], batched)):
            jax.tree.map(np.testing.assert_array_equal, got, singles[i])
        # simulate's own program (jitted total_time) gives the same bits; eager op-by-op evaluation need not
        assert float(jax.jit(total_time, static_argnums=2)(tables, mask, offload)) == float(singles[i].time)


def _cpu_op(step, opcode, kind, flops=0.0, matmul=0.0, nbytes=0):
    return dataclasses.replace(_kind_op(step, kind, flops, matmul, nbytes), opcode=opcode)


# A sort of 96 compares moving 256 B, a convolution XLA left unfused and the same one fused, two
# elementwise ops of 1 flop each: one of 256 B (inside the cache), one of 4096 B (beyond it), and a
# windowed reduction (pooling) of 64 flops.
CPU_KINDS = Instance(
    name="cpu-kinds", hlo_module="hand", backend="none", jax_version="", jaxlib_version="",
    ops=(_cpu_op(0, "sort", "sort", 96.0, nbytes=256), _cpu_op(1, "convolution", "convolution", 2000.0, 2000.0),
         _cpu_op(2, "fusion", "convolution", 2000.0, 2000.0), _cpu_op(3, "fusion", "elementwise", 1.0, nbytes=256),
         _cpu_op(4, "fusion", "elementwise", 1.0, nbytes=4096), _cpu_op(5, "fusion", "windowed-reduction", 64.0)),
    buffers=(_buffer(0, "b0", 4096, 0, 6, (0, 3, 4), parameter=True),), left_out=(),
    compiler=CompilerFigures(0.0, 0.0, 0.0, 4096, 0, 0, 0))


def test_sorts_unfused_convolutions_windows_and_the_cache_by_hand():
    profile = dataclasses.replace(
        _profile("direct"), fast_bandwidth=1024.0, slow_bandwidth=1024.0, move_bandwidth=128.0, conv_flop_rate=500.0,
        unfused_conv_flop_rate=250.0, matmul_half_flops=1000.0, conv_half_flops=500.0, sort_compare_seconds=0.125,
        cache_bytes=1024.0, cache_bandwidth=4096.0, vector_flop_rate=1e9, reduction_flop_rate=64.0, window_flop_rate=32.0)
    elapsed = simulate_ops(CPU_KINDS, _mapping([0]), profile)["elapsed"]
    # sort: 256/128 + 96 x .125 + .5. unfused conv: (2000 + 500)/250 + .5; fused: (2000 + 500)/500 + .5.
    # elementwise, memory-bound: 256 B all in the cache: 256/4096 + .5; 4096 B: 1024/4096 + 3072/1024 + .5.
    # windowed reduction: 64/32 + .5.
    np.testing.assert_allclose(elapsed, [14.5, 10.5, 5.5, 0.5625, 3.75, 2.5], rtol=1e-6)
    # the launch, once per run: 1 + .25 for each parameter and output buffer (one parameter here)
    launched = dataclasses.replace(profile, program_overhead_seconds=1.0, argument_seconds=0.25)
    assert simulate(CPU_KINDS, _mapping([0]), launched) == pytest.approx(sum(elapsed) + 1.25, rel=1e-6)
    # without the CPU's figures (as on the two-tier profiles): a sort moves data, one convolution rate with the
    # dots' saturation, no cache, one reduction rate: 256/128 + .5; (2000 + 1000)/500 + .5 twice; 256/1024 + .5;
    # 4096/1024 + .5; 64/64 + .5
    plain = dataclasses.replace(profile, unfused_conv_flop_rate=None, conv_half_flops=None, sort_compare_seconds=0.0,
                                cache_bytes=0.0, cache_bandwidth=None, window_flop_rate=None)
    np.testing.assert_allclose(simulate_ops(CPU_KINDS, _mapping([0]), plain)["elapsed"],
                               [2.5, 6.5, 6.5, 0.75, 4.5, 1.5], rtol=1e-6)


def _shaped(i, shape, parameter=False):
    return dataclasses.replace(_buffer(i, f"s{i}", 0, 0, 5, (), parameter=parameter), shape=shape)


def _matmul_op(step, opcode, kind, reads, write, trip_count=1, flops=2000.0, matmul=2000.0):
    return Op(step=step, name=f"{kind}{step}", opcode=opcode, computation="main", flops=flops, transcendentals=0.0,
              reads=reads, operand_bytes=(0,) * len(reads), writes=(write,), output_bytes=0, trip_count=trip_count,
              branch=None, op_name="", matmul_flops=matmul, kind=kind)


# Shapes in XLA's CPU form: a bare convolution of 4 input channels (input [2,8,8,4], kernel [3,3,4,8]), a fused
# depthwise one (kernel [3,3,1,4]: one channel per group), a fused dot of 4 matrices ([4,8,16] x [4,16,8]),
# a bare (unfused) dot of one matrix, and an elementwise op of 100 flops run 8 times (a loop body's).
SHAPED = Instance(
    name="shaped", hlo_module="hand", backend="none", jax_version="", jaxlib_version="",
    ops=(_matmul_op(0, "convolution", "convolution", (0, 1), 2), _matmul_op(1, "fusion", "convolution", (0, 3), 4),
         _matmul_op(2, "fusion", "dot", (5, 6), 7), _matmul_op(3, "dot", "dot", (9, 10), 8),
         _matmul_op(4, "fusion", "elementwise", (8,), 11, trip_count=8, flops=100.0, matmul=0.0)),
    buffers=tuple(_shaped(i, s, parameter=i in (0, 1, 3, 5, 6, 9, 10)) for i, s in enumerate(
        ("f32[2,8,8,4]", "f32[3,3,4,8]", "f32[2,8,8,8]", "f32[3,3,1,4]", "f32[2,8,8,4]", "f32[4,8,16]",
         "f32[4,16,8]", "f32[4,8,8]", "f32[8,8]", "f32[8,16]", "f32[16,8]", "f32[8,8]"))),
    left_out=(), compiler=CompilerFigures(0.0, 0.0, 0.0, 0, 0, 0, 0))


def test_channels_batches_unfused_dots_and_loop_bodies_by_hand():
    assert [conv_groups(op, SHAPED) for op in SHAPED.ops] == [(4, 1), (1, 4), (0, 1), (0, 1), (0, 1)]
    assert [dot_batch(op, SHAPED) for op in SHAPED.ops] == [1, 1, 4, 1, 1]
    # a patch convolution (4x4 windows tiling an 8x8 input: output 2x2) is a dot of its patches: channels not told
    patch = dataclasses.replace(SHAPED, buffers=SHAPED.buffers[:1] + (
        dataclasses.replace(SHAPED.buffers[1], shape="f32[4,4,4,8]"), dataclasses.replace(SHAPED.buffers[2], shape="f32[2,2,2,8]"))
        + SHAPED.buffers[3:])
    assert conv_groups(patch.ops[0], patch) == (0, 1)
    profile = dataclasses.replace(
        _profile("direct"), flop_rate=1000.0, conv_flop_rate=500.0, unfused_conv_flop_rate=250.0,
        unfused_dot_flop_rate=200.0, matmul_half_flops=1000.0, conv_half_flops=500.0, batch_half_flops=250.0,
        conv_half_channels=4.0, vector_flop_rate=100.0, loop_op_overhead_seconds=0.125, grouped_conv_flop_rate=100.0)
    elapsed = simulate_ops(SHAPED, _mapping([]), profile)["elapsed"]
    # bare conv: (2000 + 500)/250 x (1 + 4/4) + .5; depthwise (4 groups): (2000 + 500)/100 x (1 + 4/1) + .5;
    # 4 matrices: (2000 + 1000 + 3 x 250)/1000 + .5; bare dot: (2000 + 1000)/200 + .5; loop body: 8 x (100/100 + .125)
    np.testing.assert_allclose(elapsed, [20.5, 125.5, 4.25, 15.5, 9.0], rtol=1e-6)
    # the new figures at their defaults (as on the two-tier profiles): the model without them
    plain = dataclasses.replace(profile, unfused_dot_flop_rate=None, batch_half_flops=0.0, conv_half_channels=0.0,
                                loop_op_overhead_seconds=None, grouped_conv_flop_rate=None)
    np.testing.assert_allclose(simulate_ops(SHAPED, _mapping([]), plain)["elapsed"], [10.5, 5.5, 3.5, 3.5, 12.0],
                               rtol=1e-6)


def test_split_over_threads_and_unfused_dots_without_saturation_by_hand():
    profile = dataclasses.replace(
        _profile("direct"), flop_rate=1000.0, conv_flop_rate=500.0, unfused_conv_flop_rate=250.0,
        unfused_dot_flop_rate=200.0, matmul_half_flops=1000.0, conv_half_flops=500.0, batch_half_flops=250.0,
        conv_half_channels=4.0, vector_flop_rate=100.0, loop_op_overhead_seconds=0.125, grouped_conv_flop_rate=100.0,
        unfused_dot_half_flops=0.0, matmul_parallel_gain=1.0, matmul_parallel_flops=2000.0)
    # every matmul op has 2000 flops: split over threads, 1 + 1 x 2000 / (2000 + 2000) = 1.5 times faster.
    # bare conv: 20 / 1.5 + .5; depthwise: 125 / 1.5 + .5; 4 matrices: 3.75 / 1.5 + .5;
    # bare dot, no saturation: 2000 / 200 / 1.5 + .5; the loop body's elementwise op has no matmul term: 9
    np.testing.assert_allclose(simulate_ops(SHAPED, _mapping([]), profile)["elapsed"],
                               [13.5 + 1 / 3, 83.5 + 1 / 3, 3.0, 7.0 + 1 / 6, 9.0], rtol=1e-6)
    # a larger gain at a larger size: 1 + 3 x 2000 / (2000 + 6000) = 1.75 times faster
    wider = dataclasses.replace(profile, matmul_parallel_gain=3.0, matmul_parallel_flops=6000.0)
    np.testing.assert_allclose(simulate_ops(SHAPED, _mapping([]), wider)["elapsed"][2:4],
                               [3.75 / 1.75 + 0.5, 10.0 / 1.75 + 0.5], rtol=1e-6)


def test_the_two_tier_profiles_price_as_without_the_cpu_figures():
    # their new figures are neutral: the same bits as a profile that sets each to its neutral value explicitly
    for name in ("tpu-v4i-cmem", "h100-offload", "h200-offload", "tpu-v5e-offload"):
        p = load_profile(name)
        assert (p.unfused_dot_flop_rate, p.batch_half_flops, p.conv_half_channels, p.loop_op_overhead_seconds,
                p.grouped_conv_flop_rate, p.unfused_dot_half_flops, p.matmul_parallel_gain) == (
                    None, 0.0, 0.0, None, None, None, 0.0)
        spelled = dataclasses.replace(p, unfused_dot_flop_rate=p.flop_rate, loop_op_overhead_seconds=p.op_overhead_seconds,
                                      grouped_conv_flop_rate=p.rate("conv_flop_rate"),
                                      unfused_dot_half_flops=p.matmul_half_flops, matmul_parallel_flops=1e6)
        for mapping in (_mapping([]), _mapping(range(12))):
            assert simulate(SHAPED, mapping, p) == simulate(SHAPED, mapping, spelled)
