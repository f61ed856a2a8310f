"""XLA's memory space assignment greedy on the game's plane, and the memory-boundedness
score it orders candidates by."""

from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from agent.game import rules as G
from harness.model.costmodel import Tables, op_elapsed
from harness.model.mapping import Mapping
from harness.model.profiles import Profile
from harness.xla.instance import Instance


def memory_boundedness(game: G.Game, profile: Profile) -> np.ndarray:
    """[candidates] XLA's memory-boundedness: the fast tier's benefit at the definition and the
    uses, combined as XLA combines them, divided by sqrt(size).

    Per access (cost_analysis.cc, GetAlternateMemoryBenefit): for a memory-bound op,
    the memory time saved by that operand (or output) being fast, times the op's
    executions; for a compute-bound op, memory - compute (negative). Benefits add
    while positive; otherwise the larger is kept (GetMemoryBoundedness). In the
    offload model an op's own time does not change, so the benefit of an access is
    the copy time it avoids.
    """
    t = game.spec.tables
    acc_op, acc_cand, acc_bytes = (np.asarray(a) for a in (t.acc_op, t.acc_cand, t.acc_bytes))
    weight = np.asarray(t.weight)
    slow_elapsed = np.asarray(_slow_elapsed(t))
    compute, memory, with_fast = _access_times(t)
    if profile.memory_model == "offload":
        benefit_acc = acc_bytes * weight[acc_op] / profile.copy_bandwidth
    else:
        bound = memory > compute
        benefit_acc = np.where(bound, (slow_elapsed[acc_op] - with_fast) * weight[acc_op], memory - compute)
    n = game.candidates.n
    benefit = np.full(n, np.nan)
    for c, b in sorted(zip(acc_cand, benefit_acc), key=lambda x: x[0]):
        prev = benefit[c]
        if math.isnan(prev):
            benefit[c] = b
        elif prev > 0 and b > 0:
            benefit[c] = prev + b
        else:
            benefit[c] = max(prev, b)
    benefit = np.nan_to_num(benefit, nan=0.0)
    return benefit / np.sqrt(np.maximum(game.candidates.bytes, 1))


@jax.jit
def _slow_elapsed(tables: Tables) -> jax.Array:
    """[ops] seconds per execution of each op with every operand slow (the cost model's `op_elapsed`), one
    compiled program (run eagerly, it dispatches and compiles several small ones)."""
    return op_elapsed(tables, jnp.zeros_like(tables.op_bytes))


def _access_times(tables: Tables) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[accesses] float64 seconds per execution of the op of each access, by the cost model (`op_elapsed`):
    its compute, its memory time with every operand slow (compute left out) and its elapsed time
    with that access's bytes alone fast. Evaluated in float64 on float64 copies of the tables, as the
    XLA cost analysis this score follows computes in double, and op by op: a compiled program of these
    steps fuses them into a multiply-add and rounds differently (XLA's near-tie order would change)."""
    as64 = [np.asarray(x, np.float64) if np.issubdtype(np.asarray(x).dtype, np.floating) else np.asarray(x)
            for x in tables]
    t = Tables(*as64)
    acc_op = t.acc_op
    per_access = t._replace(compute=t.compute[acc_op], op_bytes=t.op_bytes[acc_op], overhead=t.overhead[acc_op])
    no_compute = per_access._replace(compute=np.zeros_like(per_access.compute))
    with jax.enable_x64(True):  # the gathers and zeros above in NumPy (exact): each jnp one is a program to compile
        per_access, no_compute = jax.device_put((per_access, no_compute))
        memory = op_elapsed(no_compute, no_compute.compute)
        with_fast = op_elapsed(per_access, per_access.acc_bytes)
        return (np.asarray(per_access.compute, np.float64), np.asarray(memory, np.float64),
                np.asarray(with_fast, np.float64))


def memory_boundedness_order(game: G.Game, profile: Profile) -> np.ndarray:
    """[candidates] candidate ids in XLA's order: memory boundedness (descending), then size
    (descending), duration (descending), start and id."""
    cands = game.candidates
    score = memory_boundedness(game, profile)
    duration = cands.end - cands.start
    return np.array(sorted(range(cands.n), key=lambda c: (-score[c], -cands.bytes[c], -duration[c], cands.start[c], c)),
                    dtype=np.int64)


def xla_msa(instance: Instance, profile: Profile, budget, seed, time_limit) -> Mapping:
    """XLA's memory space assignment greedy, re-implemented on the game's plane.

    Candidates are sorted by memory boundedness (descending), then size
    (descending), duration (descending) and start, as XLA's
    MemoryBoundednessBufferIntervalComparator sorts them, and each is placed
    best-fit (the smallest free run of slots over its live range that holds it)
    if it still fits. Where it differs from XLA: a live range is placed whole
    (XLA may split it into prefetched segments and evict between uses); no
    cross-program prefetch; aliased values are placed as one candidate; the
    benefit comes from this project's cost model rather than HloCostAnalysis.
    """
    return xla_msa_of_game(G.make_game(instance, profile, budget), instance, profile, budget)


def xla_msa_of_game(game: G.Game, instance: Instance, profile: Profile, budget) -> Mapping:
    """`xla_msa`'s mapping from the (unpadded) game of `instance` on `profile` at `budget`, already built."""
    cands = game.candidates
    order = memory_boundedness_order(game, profile)
    size = np.asarray(game.spec.slots)
    plane = np.zeros((len(instance.ops) + 1, game.n_slots), dtype=bool)
    offsets = {}
    for c in order:
        taken = plane[cands.start[c]: cands.end[c] + 1].any(axis=0)
        slot = _best_fit(taken, int(size[c]))
        if slot is None:
            continue
        plane[cands.start[c]: cands.end[c] + 1, slot: slot + size[c]] = True
        offsets.update({b: slot * game.slot_bytes for b in cands.members[c]})
    return Mapping(offsets, len(instance.buffers), instance.name, "xla-msa", budget)


def _best_fit(taken: np.ndarray, width: int) -> Optional[int]:
    """Start of the smallest free run of `taken` that holds `width` slots (None if none does)."""
    best, best_len, run_start = None, None, None
    for j, t in enumerate(np.append(taken, True)):
        if not t and run_start is None:
            run_start = j
        elif t and run_start is not None:
            length = j - run_start
            if length >= width and (best_len is None or length < best_len):
                best, best_len = run_start, length
            run_start = None
    return best


