"""The one cost model: predicted run time of an instance under a memory mapping.

Per op, as XLA's memory-space-assignment cost analysis, with a rate per op kind:

    elapsed  = max(compute, memory + overhead)  (= max(work, memory) + overhead)
    compute  = work + overhead
    work     = by the op's kind (`hlo_costs.OP_KINDS`):
        dot          (matmul flops + matmul_half_flops + (matrices - 1) x batch_half_flops) / flop_rate + rest
                     (an unfused dot: unfused_dot_half_flops and / unfused_dot_flop_rate, on the CPU Eigen's, not a
                     library fusion, with a saturation of its own (a small one runs on one thread, a large one on the pool);
                     matrices: a batched dot's (`dot_batch`), each further one saturating on its own)
        convolution  (matmul flops + conv_half_flops) / conv_flop_rate x (1 + conv_half_channels / channels) + rest
                     (an unfused convolution: / unfused_conv_flop_rate; one of more than one group, fused or not:
                     / grouped_conv_flop_rate; channels: its input channels per group (`conv_groups`): one of
                     conv_half_channels runs at half the rate; 0 when its shapes do not tell: no term)
        elementwise  rest
        reduction    flops / reduction_flop_rate + transcendentals / transcendental_rate
        windowed-reduction  the same at window_flop_rate (reduce-window, select-and-scatter: pooling, cumsum)
        data-movement  bytes / move_bandwidth
        sort         bytes / move_bandwidth + compares x sort_compare_seconds (compares: the op's flops)
        loop         iterations x loop_iteration_seconds (the loop's own control; its body ops are ops)
        free         0 (parameters, tuples, bitcasts: no kernel runs)
      rest = other flops / vector_flop_rate + transcendentals / transcendental_rate
      parallel = 1 + matmul_parallel_gain x matmul flops / (matmul flops + matmul_parallel_flops): a dot's and a
                 convolution's matmul term is divided by it (a large one is split over the thread pool)
    overhead = op_overhead_seconds per op with a kernel, 0 for free ops
               (loop_op_overhead_seconds for an op that runs more than once per run: a loop body's)
    memory   = fast bytes / fast bandwidth + slow bytes / slow bandwidth
               + min(fast bytes, cache_bytes) x (1 / cache bandwidth - 1 / fast bandwidth)
      (an op's fast bytes up to the cache's size move at the cache's bandwidth; cache_bytes 0, as on
      the two-tier profiles: no cache term, and the same bits as without one)

A run adds its launch once: `program_overhead_seconds` (the executor's start) and
`argument_seconds` for each parameter and output buffer of the program (argument
handling, output allocation). The matmul term is a saturating roofline: a dot of f flops runs at
rate x f / (f + matmul_half_flops), a convolution with conv_half_flops, so small ones do not reach the peak rate.

Memory models:

- ``direct``: an op reads and writes a slow buffer at the slow bandwidth.
- ``offload``: ops touch device (fast) memory only; a slow buffer is copied out
  to host memory after its definition and back before each use. The copies
  queue FIFO, out and in, and drain in the slow memory's idle time (the whole
  of every op: ops never touch host memory) at the copy bandwidth, halved while
  both directions have work, as XLA's RuntimeSimulator drains them. A copy in
  starts right after the buffer's previous access; an op whose inputs are not
  back yet waits (a stall) until the queue has delivered them; copies out still
  queued at the end are waited for.

Ops run `trip_count` times (loop bodies), and an op of one branch of a conditional in
1 / (its branches) of the runs (`branch_share`: which branch a run takes is not known
before it runs); their times and copy volumes are weighted by both. Everything
here is pure JAX over the arrays of `Tables`, so it jits, vmaps over batches of
mappings, and is what the game and every policy call; `simulate`/`simulate_ops`
are the NumPy-facing entry points.

`timing` also returns the copy queues' state before every op, so re-pricing a
changed mapping (the game's step) re-runs the queue only from the first op the
change alters, with the bits of a full run. Under vmap it prices the batch as
columns ([rows, batch]) in one pass, one queue run from the batch's earliest such op.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from harness.xla.hlo_costs import FREE, LOOP, OP_KINDS
from harness.xla.hlo_text import ArrayShape, parse_shape
from harness.xla.instance import Instance, Op
from harness.model.profiles import Profile

class Tables(NamedTuple):
    """The arrays the cost model reads: one instance on one profile (a JAX pytree)."""

    weight: jax.Array  # [ops] executions per run
    compute: jax.Array  # [ops] seconds of compute per execution
    op_bytes: jax.Array  # [ops] bytes read + written per execution
    acc_op: jax.Array  # [accesses] op of each (op, candidate) access
    acc_cand: jax.Array  # [accesses] candidate accessed
    acc_bytes: jax.Array  # [accesses] bytes per execution
    pf_cand: jax.Array  # [prefetches] candidate copied in (offload), in queue order
    pf_bytes: jax.Array  # [prefetches] bytes, weighted by executions
    pf_queued: jax.Array  # [ops] prefetches queued by op t (a copy may run from the op after the previous access)
    pf_needed: jax.Array  # [ops] length of the queue prefix that must have arrived before op t
    ev_cand: jax.Array  # [evictions] candidate copied out after its definition, in queue order
    ev_bytes: jax.Array  # [evictions] bytes, weighted
    ev_queued: jax.Array  # [ops] evictions queued by the ops before t
    fast_bw: jax.Array  # scalars
    op_slow_bw: jax.Array  # bandwidth at which an op reaches a slow buffer
    copy_bw: jax.Array
    overhead: jax.Array  # [ops] seconds per execution outside compute and memory (dispatch): 0 for free ops
    launch: jax.Array  # seconds once per run (the program call's own cost)
    cache_bytes: jax.Array  # scalars: an op's fast bytes up to this many move at the cache's bandwidth,
    cache_gain: jax.Array  # saving this many seconds per byte (1 / cache bandwidth - 1 / fast bandwidth, <= 0)


@dataclasses.dataclass(frozen=True)
class Candidates:
    """The units a mapping decides: alias groups of buffers (they must share memory)."""

    members: tuple[tuple[int, ...], ...]  # buffer ids of each candidate
    start: np.ndarray  # [candidates] first step any member is live
    end: np.ndarray  # [candidates] last step
    bytes: np.ndarray  # [candidates] the largest member's bytes
    of_buffer: np.ndarray  # [buffers] candidate of each buffer

    @property
    def n(self) -> int:
        """Number of candidates."""
        return len(self.members)


def candidates(instance: Instance) -> Candidates:
    """Group the instance's buffers by alias group, in order of first step."""
    groups: dict[int, list[int]] = {}
    for b in instance.buffers:
        groups.setdefault(b.alias_group, []).append(b.id)
    members = sorted((tuple(m) for m in groups.values()),
                     key=lambda m: (min(instance.buffers[i].start for i in m), m[0]))
    of_buffer = np.zeros(len(instance.buffers), dtype=np.int32)
    for c, m in enumerate(members):
        of_buffer[list(m)] = c
    start = np.array([min(instance.buffers[i].start for i in m) for m in members], dtype=np.int32)
    end = np.array([max(instance.buffers[i].end for i in m) for m in members], dtype=np.int32)
    size = np.array([max(instance.buffers[i].bytes for i in m) for m in members], dtype=np.int64)
    return Candidates(tuple(members), start, end, size, of_buffer)


class OpWork(NamedTuple):
    """[padded ops] what each op does per execution, whatever the profile (NumPy arrays)."""

    matmul: np.ndarray  # flops of dots and convolutions
    other: np.ndarray  # every other flop
    transcendentals: np.ndarray
    bytes: np.ndarray  # bytes read and written
    iterations: np.ndarray  # a loop's body executions per execution of it
    kind: np.ndarray  # index into OP_KINDS
    unfused: np.ndarray  # 1.0 where the op is a bare convolution or dot (not a fusion)
    channels: np.ndarray  # a convolution's input channels per group (`conv_groups`; 0: not told)
    grouped: np.ndarray  # 1.0 where the op is a convolution of more than one group (`conv_groups`)
    batch: np.ndarray  # the matrices a dot multiplies (`dot_batch`; 1 for every other op)
    repeated: np.ndarray  # 1.0 where the op runs more than once per run (a loop body's)
    arguments: int  # the program's parameter and output buffers (the launch handles each)


def op_kind(op: Op) -> str:
    """The op's kind; for an instance written before kinds were recorded, told from its opcode and flops."""
    if op.kind:
        return op.kind
    if op.opcode in FREE or op.opcode in LOOP or op.opcode == "sort":
        return "free" if op.opcode in FREE else "loop" if op.opcode in LOOP else "sort"
    if op.matmul_flops:
        return "convolution" if op.opcode == "convolution" else "dot"
    return "elementwise" if op.flops or op.transcendentals else "data-movement"


def _dims(instance: Instance, buffer: int) -> tuple[int, ...]:
    """The dimensions of a buffer's array shape; () for a tuple, a scalar or no buffer (-1)."""
    if buffer < 0:
        return ()
    shape = parse_shape(instance.buffers[buffer].shape)
    return shape.dims if isinstance(shape, ArrayShape) else ()


def conv_groups(op: Op, instance: Instance) -> tuple[int, int]:
    """(input channels per group, groups) of a convolution, told by its shapes; (0, 1) when they do not tell.

    In the form XLA's CPU compiler gives every convolution (input [batch, spatial..., channels], kernel
    [spatial..., channels per group, outputs], output [batch, spatial..., outputs]): the kernel's
    next-to-last dimension, and the input's channels over it, of the first operand pair (input, kernel)
    that fits the output and each other. A patch convolution (windows that tile the input without
    overlap, as a vision transformer's embedding) is a dot of the patches: its channels are not told (0).
    """
    if op_kind(op) != "convolution" or not op.writes:
        return 0, 1
    out = _dims(instance, op.writes[0])
    arrays = [d for d in (_dims(instance, b) for b in op.reads) if len(out) >= 3 and len(d) == len(out)]
    for kernel in arrays:
        for x in arrays:
            if (x is not kernel and kernel[-1] == out[-1] and x[0] == out[0] and kernel[-2]
                    and x[-1] % kernel[-2] == 0):
                patches = all(o * k == i for o, k, i in zip(out[1:-1], kernel[:-2], x[1:-1]))
                return 0 if patches else kernel[-2], x[-1] // kernel[-2]
    return 0, 1


def dot_batch(op: Op, instance: Instance) -> int:
    """The matrices a dot multiplies: the product of its output's leading (batch) dimensions where two
    operands of the output's rank share them, else 1."""
    if op_kind(op) != "dot" or not op.writes:
        return 1
    out = _dims(instance, op.writes[0])
    sharing = sum(1 for d in (_dims(instance, b) for b in op.reads) if len(out) >= 3 and len(d) == len(out)
                  and d[:-2] == out[:-2])
    return math.prod(out[:-2]) if sharing >= 2 else 1


def op_work(instance: Instance) -> OpWork:
    """The profile-independent work of every op (padded like the tables: padded ops do nothing)."""
    n = bucket(len(instance.ops))

    def column(values, dtype=np.float64) -> np.ndarray:
        out = np.zeros(n, dtype=dtype)
        out[:len(instance.ops)] = list(values)
        return out

    ops = instance.ops
    groups = [conv_groups(op, instance) for op in ops]  # (channels per group, groups): parsed once per op
    free = OP_KINDS.index("free")
    return OpWork(
        matmul=column(op.matmul_flops for op in ops), other=column(op.flops - op.matmul_flops for op in ops),
        transcendentals=column(op.transcendentals for op in ops),
        bytes=column(sum(op.operand_bytes) + op.output_bytes for op in ops),
        iterations=column((op.iterations or 0) for op in ops),
        unfused=column(op.opcode in ("convolution", "dot") for op in ops),
        channels=column(c for c, _ in groups),
        grouped=column(g > 1 for _, g in groups),
        batch=column(dot_batch(op, instance) for op in ops),
        repeated=column((op.trip_count or 1) > 1 for op in ops),
        arguments=sum(1 for b in instance.buffers if b.is_parameter or b.is_output),
        kind=np.concatenate([[OP_KINDS.index(op_kind(op)) for op in ops], np.full(n - len(ops), free)]).astype(np.int32))


def op_seconds(work: OpWork, profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """([padded ops] work seconds, [padded ops] overhead seconds) per execution of each op on `profile`."""
    kind = {k: work.kind == i for i, k in enumerate(OP_KINDS)}
    rest = work.other / profile.vector_flop_rate + work.transcendentals / profile.transcendental_rate
    half = profile.matmul_half_flops
    dot_rate = np.where(work.unfused > 0, profile.rate("unfused_dot_flop_rate"), profile.flop_rate)
    dot_half = np.where(work.unfused > 0, profile.rate("unfused_dot_half_flops"), half)
    conv_rate = np.where(work.grouped > 0, profile.rate("grouped_conv_flop_rate"),
                         np.where(work.unfused > 0, profile.rate("unfused_conv_flop_rate"), profile.rate("conv_flop_rate")))
    # a convolution of few input channels per group runs below its rate (0 channels: not told, no term)
    narrow = 1.0 + profile.conv_half_channels / np.where(work.channels > 0, work.channels, np.inf)
    # a large dot or convolution is split over threads: up to 1 + matmul_parallel_gain times faster, half that gain
    # at matmul_parallel_flops (gain 0, as on the two-tier profiles: a division by 1, the same bits)
    parallel = 1.0 + profile.matmul_parallel_gain * (work.matmul / np.maximum(
        work.matmul + profile.matmul_parallel_flops, np.finfo(np.float64).tiny))
    move = work.bytes / profile.rate("move_bandwidth")
    reduction = kind["reduction"] | kind["windowed-reduction"]
    reduction_rate = np.where(kind["windowed-reduction"], profile.rate("window_flop_rate"),
                              profile.rate("reduction_flop_rate"))
    seconds = np.select(
        [kind["dot"], kind["convolution"], kind["elementwise"], reduction, kind["data-movement"], kind["loop"],
         kind["sort"]],
        [(work.matmul + dot_half + (work.batch - 1.0) * profile.batch_half_flops) / dot_rate / parallel + rest,
         (work.matmul + profile.rate("conv_half_flops")) / conv_rate * narrow / parallel + rest,
         rest,
         (work.matmul + work.other) / reduction_rate + work.transcendentals / profile.transcendental_rate,
         move,
         work.iterations * profile.loop_iteration_seconds,
         move + work.other * profile.sort_compare_seconds],
        0.0)
    overhead = np.where(kind["free"], 0.0, np.where(work.repeated > 0, profile.rate("loop_op_overhead_seconds"),
                                                     profile.op_overhead_seconds))
    return seconds, overhead


def launch_seconds(profile: Profile, arguments: int | np.ndarray) -> float | np.ndarray:
    """Seconds of a run's launch, paid once per run, for a program of `arguments` parameter and output buffers."""
    return profile.program_overhead_seconds + profile.argument_seconds * arguments


def with_profile(structure: Tables, work: OpWork, profile: Profile) -> Tables:
    """`structure` with the profile's figures filled in: compute and overhead seconds and the scalars.

    Everything else in the tables depends on the instance and the memory model
    alone, so re-pricing one instance on many profiles (calibration) is cheap.
    Padded ops (beyond the instance's) are free: they run zero times anyway.
    """
    seconds, overhead = op_seconds(work, profile)
    offload = profile.memory_model == "offload"
    f32 = np.float32
    priced = jax.device_put((  # one transfer: pricing many profiles (calibration) is dominated by it
        (seconds + overhead).astype(f32), overhead.astype(f32), f32(profile.fast_bandwidth),
        f32(profile.fast_bandwidth if offload else profile.slow_bandwidth), f32(profile.copy_bandwidth),
        f32(launch_seconds(profile, work.arguments)), f32(profile.cache_bytes),
        f32(1.0 / profile.rate("cache_bandwidth") - 1.0 / profile.fast_bandwidth if profile.cache_bytes else 0.0)))
    return structure._replace(**dict(zip(("compute", "overhead", "fast_bw", "op_slow_bw", "copy_bw", "launch",
                                          "cache_bytes", "cache_gain"), priced)))


def build_structure(instance: Instance, memory_model: str, cands: Candidates | None = None) -> Tables:
    """The profile-independent tables (accesses, copy queues); compute and scalars left zero."""
    cands = cands or candidates(instance)
    n_ops = len(instance.ops)
    weight = np.array([op.trip_count or 1 for op in instance.ops], dtype=np.float64) * branch_share(instance)
    accesses: dict[tuple[int, int], int] = {}
    reads: list[tuple[int, int]] = []  # (op, candidate) reads, deduplicated
    defs: list[tuple[int, int]] = []
    for op in instance.ops:
        for b, n in zip(op.reads, op.operand_bytes):
            if b >= 0:
                c = int(cands.of_buffer[b])
                if (op.step, c) not in accesses:
                    reads.append((op.step, c))
                accesses[(op.step, c)] = accesses.get((op.step, c), 0) + n
        for b in op.writes:
            c = int(cands.of_buffer[b])
            # one output: the bytes the op writes (an in-place update writes its slice); several: each whole
            written = op.output_bytes if len(op.writes) == 1 else instance.buffers[b].bytes
            accesses[(op.step, c)] = accesses.get((op.step, c), 0) + written
            defs.append((op.step, c))
    acc = np.array([(t, c, n) for (t, c), n in sorted(accesses.items())], dtype=np.float64).reshape(-1, 3)
    op_bytes = np.zeros(n_ops)
    np.add.at(op_bytes, acc[:, 0].astype(int), acc[:, 2])

    # Offload copies: out after each definition, in before each read, from the previous access on.
    offload = memory_model == "offload"
    last_access = {int(c): -1 for c in range(cands.n)}
    events = sorted({(t, c, "r") for t, c in reads} | {(t, c, "w") for t, c in defs})
    prefetch = []
    for t, c, kind in events:
        if kind == "r":
            prefetch.append((last_access[c] + 1, t, c, cands.bytes[c] * weight[t]))
        last_access[c] = max(last_access[c], t)
    prefetch.sort()
    pf = np.array(prefetch, dtype=np.float64).reshape(-1, 4) if offload else np.zeros((0, 4))
    ev = np.array([(t, c, cands.bytes[c] * weight[t]) for t, c in sorted(set(defs))],
                  dtype=np.float64).reshape(-1, 3) if offload else np.zeros((0, 3))
    # Pad to power-of-two sizes so instances of similar size share one compiled program:
    # padded ops run zero times, padded accesses and copies move zero bytes at the end.
    n_pad = bucket(n_ops)
    weight, op_bytes = (np.pad(a, (0, n_pad - n_ops)) for a in (weight, op_bytes))
    acc = _pad_rows(acc, (0, 0, 0))
    pf = _pad_rows(pf, (n_pad - 1, n_pad - 1, 0, 0))
    ev = _pad_rows(ev, (n_pad - 1, 0, 0))
    # Queue prefixes as counts per op, so the simulation gathers instead of scattering.
    steps = np.arange(n_pad)
    last_due = np.full(n_pad, -1)
    np.maximum.at(last_due, pf[:, 1].astype(int), np.arange(len(pf)))
    needed = np.maximum.accumulate(last_due) + 1
    # Typed in NumPy and moved in one transfer: converting on the device compiles a program per array shape
    # (seconds of a fresh process's first simulation).
    f32, i32 = np.float32, np.int32
    return jax.device_put(Tables(
        weight=f32(weight), compute=np.zeros(n_pad, f32), op_bytes=f32(op_bytes),
        acc_op=i32(acc[:, 0]), acc_cand=i32(acc[:, 1]), acc_bytes=f32(acc[:, 2]),
        pf_cand=i32(pf[:, 2]), pf_bytes=f32(pf[:, 3]),
        pf_queued=i32(np.searchsorted(pf[:, 0], steps, side="right")),
        pf_needed=i32(needed),
        ev_cand=i32(ev[:, 1]), ev_bytes=f32(ev[:, 2]),
        ev_queued=i32(np.searchsorted(ev[:, 0], steps, side="left")),
        fast_bw=f32(0.0), op_slow_bw=f32(0.0), copy_bw=f32(0.0),
        overhead=np.zeros(n_pad, f32), launch=f32(0.0), cache_bytes=f32(0.0), cache_gain=f32(0.0),
    ))


def branch_share(instance: Instance) -> np.ndarray:
    """[ops] the expected share of runs in which each op runs: 1 / (its conditional's branches) for an op of
    one branch (which branch a run takes is not known before it runs: each is taken as equally likely), 1 for
    every other op."""
    labels = [op.branch.rsplit(":", 1) if op.branch is not None else None for op in instance.ops]  # (conditional, k)
    branches: dict[str, int] = {}
    for label in filter(None, labels):
        branches[label[0]] = max(branches.get(label[0], 0), int(label[1]) + 1)
    return np.array([1.0 if label is None else 1.0 / branches[label[0]] for label in labels])


def bucket(n: int) -> int:
    """The padded size for `n` items: the next power of two, at least 8."""
    return max(8, 1 << max(0, n - 1).bit_length())


def _pad_rows(rows: np.ndarray, fill: tuple) -> np.ndarray:
    pad = np.tile(np.array(fill, dtype=np.float64), (bucket(len(rows)) - len(rows), 1))
    return np.concatenate([rows, pad.reshape(-1, rows.shape[1])])


# The formula below reads its arrays along axis 0 (ops, accesses, copies, candidates) and
# broadcasts any trailing axes: with `_columns(tables)` it prices a batch of mappings held as
# columns ([candidates, batch]) in one pass, which is how `timing` runs under vmap.

def fast_bytes(tables: Tables, fast: jax.Array) -> jax.Array:
    """[ops] bytes each op moves to and from fast buffers, for a [candidates] 0/1 mask."""
    per_access = tables.acc_bytes * fast[tables.acc_cand]
    return jnp.zeros(tables.weight.shape[:1] + per_access.shape[1:], per_access.dtype).at[tables.acc_op].add(per_access)


def op_memory(tables: Tables, fast_op_bytes: jax.Array) -> jax.Array:
    """[ops] seconds per execution each op moves its bytes, given its fast bytes (the memory term)."""
    slow_op_bytes = tables.op_bytes - fast_op_bytes
    memory = fast_op_bytes / tables.fast_bw + slow_op_bytes / tables.op_slow_bw
    return memory + jnp.minimum(fast_op_bytes, tables.cache_bytes) * tables.cache_gain


def op_elapsed(tables: Tables, fast_op_bytes: jax.Array) -> jax.Array:
    """[ops] seconds per execution of each op, given its fast bytes."""
    return jnp.maximum(tables.compute, op_memory(tables, fast_op_bytes) + tables.overhead)


def _drain(idle, reads, writes, bw):
    """Bytes of the in and out queues drained in `idle` seconds at `bw` shared while both have work."""
    both = jnp.minimum(reads, writes)
    t_both = 2.0 * both / bw
    shared = jnp.minimum(idle, t_both) * bw / 2.0
    rest = jnp.maximum(idle - t_both, 0.0) * bw
    return shared + jnp.minimum(reads - shared, rest), shared + jnp.minimum(writes - shared, rest)


class CopyQueue(NamedTuple):
    """The offload copy queues through one run, before each op t ([ops + 1]; index ops: after the last op)."""

    copied_in: jax.Array  # bytes of the in-queue delivered before op t
    copied_out: jax.Array  # bytes of the out-queue written before op t
    stalls: jax.Array  # seconds of waiting for copies before op t; at ops, for the copies out left at the end


def _queue_step(bw, copied, demand):
    """One op of the queue: waits for its inputs, then drains the queues in its idle time.

    `copied`: bytes (in, out) done before the op; `demand`: bytes (needed in, queued in,
    queued out) by the op, and its idle seconds. Returns bytes done after it and its stall.
    """
    r_done, w_done = copied
    need_t, avail_t, out_t, idle_t = demand
    wait_in = jnp.maximum(need_t - r_done, 0.0)
    out_while_waiting = jnp.minimum(wait_in, out_t - w_done)
    stall = (wait_in + out_while_waiting) / bw
    r_done, w_done = r_done + wait_in, w_done + out_while_waiting
    dr, dw = _drain(idle_t, avail_t - r_done, out_t - w_done, bw)
    return (r_done + dr, w_done + dw), stall


def _demand(tables: Tables, fast: jax.Array, elapsed: jax.Array):
    """What each op asks of the queues (`_queue_step`'s demand, four [ops] arrays), and the bytes copied out in all."""
    slow = 1.0 - fast
    zero = jnp.zeros((1,) + fast.shape[1:], jnp.float32)
    # Cumulative bytes of the in-queue: queued by op t (avail) and due before op t (need).
    pf_cum = jnp.concatenate([zero, jnp.cumsum(tables.pf_bytes * slow[tables.pf_cand], axis=0)])
    avail, need = pf_cum[tables.pf_queued], pf_cum[tables.pf_needed]
    out_cum = jnp.concatenate([zero, jnp.cumsum(tables.ev_bytes * slow[tables.ev_cand], axis=0)])
    return (need, avail, out_cum[tables.ev_queued], elapsed * tables.weight), out_cum[-1]  # out: queued by ops before t


def _first_changed_op(tables: Tables, changed: jax.Array) -> jax.Array:
    """The first op whose time or copy demand a change of the [candidates] `changed` mask can alter
    (ops when it alters none): one that accesses a changed candidate, or sees one's bytes in a queue."""
    n = tables.weight.shape[0]
    changed = jnp.any(changed.reshape(changed.shape[0], -1), axis=1)  # columns: any mapping of the batch

    def first_row(cand):  # first row of a table that belongs to a changed candidate (rows when none)
        return jnp.min(jnp.where(changed[cand], jnp.arange(cand.shape[0]), cand.shape[0]))

    pf, ev = first_row(tables.pf_cand), first_row(tables.ev_cand)
    return jnp.min(jnp.stack([
        jnp.min(jnp.where(changed[tables.acc_cand], tables.acc_op, n)),
        jnp.sum(tables.pf_queued <= pf), jnp.sum(tables.pf_needed <= pf),  # queue prefixes that hold row pf
        jnp.sum(tables.ev_queued <= ev),
    ]))


def copy_queue(tables: Tables, fast: jax.Array, elapsed: jax.Array,
               before: Optional[tuple[CopyQueue, jax.Array]] = None) -> CopyQueue:
    """The copy queues through one run of a [candidates] 0/1 mask of fast candidates (offload).

    `before`: the queues of another mask and that mask. The ops before the first one the
    difference alters keep its figures and only the rest is run: the same bits as a full run.
    """
    demand, out_total = _demand(tables, fast, elapsed)
    n, bw = tables.weight.shape[0], tables.copy_bw
    if before is None:
        queue, first = CopyQueue(*(jnp.zeros((n + 1,) + fast.shape[1:], jnp.float32) for _ in range(3))), 0
    else:
        queue, first = before[0], _first_changed_op(tables, before[1] != fast)
    take, put = jax.lax.dynamic_index_in_dim, jax.lax.dynamic_update_index_in_dim

    def body(t, carry):  # the bytes done ride in the carry: the arrays are only written, in place
        copied, q = carry
        copied, stall = _queue_step(bw, copied, tuple(take(d, t, 0, False) for d in demand))
        return copied, CopyQueue(put(q.copied_in, copied[0], t + 1, 0), put(q.copied_out, copied[1], t + 1, 0),
                                 put(q.stalls, stall, t, 0))

    start = (take(queue.copied_in, first, 0, False), take(queue.copied_out, first, 0, False))
    copied, queue = jax.lax.fori_loop(first, n, body, (start, queue))
    return queue._replace(stalls=put(queue.stalls, (out_total - copied[1]) / bw, n, 0))


def copy_stalls(tables: Tables, fast: jax.Array, elapsed: jax.Array) -> jax.Array:
    """[ops + 1] seconds of waiting for copies before each op, and for the last copies out at the end."""
    return copy_queue(tables, fast, elapsed).stalls


def exact_sum(x: jax.Array) -> jax.Array:
    """Sum along axis 0 by a fixed pairwise tree of elementwise adds.

    Unlike a reduction, whose order XLA may choose differently in each program,
    this gives the same bits wherever it is compiled, so a time computed inside
    the game equals the one `simulate` computes.
    """
    n = 1 << max(0, (x.shape[0] - 1).bit_length())
    x = jnp.pad(x, ((0, n - x.shape[0]),) + ((0, 0),) * (x.ndim - 1))
    while x.shape[0] > 1:
        x = x[0::2] + x[1::2]
    return x[0] if x.shape[0] else jnp.zeros(x.shape[1:], jnp.float32)


class Timing(NamedTuple):
    """A mapping's predicted time with the parts that re-pricing a change of the mapping reuses."""

    fast_op_bytes: jax.Array  # [ops] bytes each op moves to and from fast buffers
    copies: CopyQueue  # offload: the copy queues; direct: empty arrays
    time: jax.Array  # seconds of one run


def timing(tables: Tables, fast: jax.Array, offload: bool,
           before: Optional[tuple[Timing, jax.Array]] = None) -> Timing:
    """The `Timing` of a [candidates] 0/1 mask of fast candidates.

    `before`: the timing of another mask and that mask; the copy queues up to the first op
    the difference alters are taken from it (`copy_queue`). The result has the same bits either way.
    """
    return _TIMING[offload](tables, fast, None if before is None else (before[0].copies, before[1]))


def _timing(tables: Tables, fast: jax.Array, offload: bool, before: Optional[tuple[CopyQueue, jax.Array]]) -> Timing:
    # Tables closed over by a jitted caller (the game) are constants, and XLA would turn a division
    # by a constant into a product by its reciprocal: the barrier keeps the arithmetic of `simulate`.
    tables = jax.lax.optimization_barrier(tables)
    fb = fast_bytes(tables, fast)
    elapsed = op_elapsed(tables, fb)
    parts = elapsed * tables.weight
    if offload:
        copies = copy_queue(tables, fast, elapsed, before)
        parts = jnp.concatenate([parts, copies.stalls])
    else:
        copies = CopyQueue(*(jnp.zeros((0,) + fast.shape[1:], jnp.float32) for _ in range(3)))
    return Timing(fb, copies, exact_sum(parts) + tables.launch)


def _columns(tables: Tables) -> Tables:
    """`tables` with each per-row number as a column ([rows, 1]), to broadcast over mappings held as columns."""
    return Tables(*(x[:, None] if x.ndim == 1 and jnp.issubdtype(x.dtype, jnp.floating) else x for x in tables))


def _batched_timing(offload: bool):
    """`_timing` for one memory model, which under vmap prices the batch as columns in one pass.

    vmap's own rules would gather, scatter and cumulate one scalar at a time and run the
    queue of every mapping until the last one is done, copying the carried arrays each op.
    """
    plain = jax.custom_batching.custom_vmap(lambda tables, fast, before: _timing(tables, fast, offload, before))

    @plain.def_vmap
    def rule(axis_size, in_batched, tables, fast, before):
        if any(jax.tree.leaves(in_batched[0])):  # tables differ across the batch: vmap's rules
            axes = jax.tree.map(lambda b: 0 if b else None, in_batched)
            out = jax.vmap(plain.fun, in_axes=axes)(tables, fast, before)
            return out, jax.tree.map(lambda _: True, out)
        columns = lambda x, b: jnp.moveaxis(x, 0, -1) if b else jnp.broadcast_to(  # noqa: E731
            x[..., None], x.shape + (axis_size,))
        fast, before = jax.tree.map(columns, (fast, before), tuple(in_batched[1:]))
        out = _timing(_columns(tables), fast, offload, before)
        out = jax.tree.map(lambda x: jnp.moveaxis(x, -1, 0), out)
        return out, jax.tree.map(lambda _: True, out)

    return plain


_TIMING = {offload: _batched_timing(offload) for offload in (False, True)}


def total_time(tables: Tables, fast: jax.Array, offload: bool) -> jax.Array:
    """Predicted seconds of one run for a [candidates] 0/1 mask of fast candidates."""
    return timing(tables, fast, offload).time
