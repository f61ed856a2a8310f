"""Mapping policies behind one interface: `solve(instance, profile, budget, policy=...)`.

| policy      | what |
|-------------|------|
| all-fast    | every buffer fast, no budget: the floor any mapping can reach |
| all-slow    | nothing fast |
| random      | the game with uniformly random legal actions |
| first-fit   | the game, each candidate at its lowest free slot |
| xla-msa     | XLA's memory space assignment greedy (see `xla_msa`) |
| cpsat       | OR-Tools CP-SAT: the game's optimum, warm-started with xla-msa |
| mallocmuzero| a trained checkpoint's network playing the game with rollout search (`agent.mallocmuzero`) |
| mallocmuzero-fortified | the same search, fortified: never slower than xla-msa by construction |
| mallocmuzero-greedy | the network alone: its most likely legal action at each decision |

Policy options (keyword arguments of `solve`, None meaning the default): the mallocmuzero
policies take `checkpoint` (a checkpoint directory), the searching ones `simulations`
(leaves scored per decision).
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from agent import game as G
from harness.costmodel import op_elapsed
from harness.instance import Instance
from harness.mapping import Mapping, check_budget, padded
from harness.profiles import Profile
from harness.simulate import problem


def _all_fast(instance: Instance, profile: Profile, budget, seed, time_limit) -> Mapping:
    """Every candidate fast, first-fit in an unbounded address space (no budget)."""
    cands, _ = problem(instance, profile)
    granule = profile.granule_bytes
    placed: list[tuple[int, int, int]] = []  # (end, lo, hi)
    offsets = {}
    for c in np.argsort(cands.start, kind="stable"):
        placed = [p for p in placed if p[0] >= cands.start[c]]
        size = padded(int(cands.bytes[c]), granule)
        lo = 0
        for _, a, b in sorted(placed, key=lambda p: p[1]):
            if a >= lo + size:
                break
            lo = max(lo, b)
        placed.append((int(cands.end[c]), lo, lo + size))
        offsets.update({b: lo for b in cands.members[c]})
    return Mapping(offsets, len(instance.buffers), instance.name, "all-fast", None)


def _all_slow(instance: Instance, profile: Profile, budget, seed, time_limit) -> Mapping:
    return Mapping({}, len(instance.buffers), instance.name, "all-slow", budget)


def _random_choice(key, game, state, legal):
    return jax.random.categorical(key, jnp.where(legal, 0.0, -jnp.inf))


def _first_fit_choice(key, game, state, legal):
    return jnp.argmax(legal)  # the lowest legal slot; "slow" is last and always legal


def _play(choose: Callable, name: str) -> Callable:
    def policy(instance: Instance, profile: Profile, budget, seed, time_limit) -> Mapping:
        game = G.make_game(instance, profile, budget)
        state, _ = jax.jit(functools.partial(G.play, game, choose))(jax.random.key(seed))
        return G.to_mapping(game, state, instance, name, budget)

    policy.__doc__ = f"The game played by the {name} rule."
    return policy


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
    weight, compute = np.asarray(t.weight), np.asarray(t.compute)
    slow_elapsed = np.asarray(op_elapsed(t, jnp.zeros_like(t.op_bytes)))
    memory = np.asarray(t.op_bytes) / float(t.op_slow_bw) + float(t.overhead)
    if profile.memory_model == "offload":
        benefit_acc = acc_bytes * weight[acc_op] / profile.copy_bandwidth
    else:
        saved = acc_bytes * (1.0 / float(t.op_slow_bw) - 1.0 / float(t.fast_bw))
        bound = memory[acc_op] > compute[acc_op]
        with_fast = np.maximum(compute[acc_op], memory[acc_op] - saved)
        benefit_acc = np.where(bound, (slow_elapsed[acc_op] - with_fast) * weight[acc_op],
                               memory[acc_op] - compute[acc_op])
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


def memory_boundedness_order(game: G.Game, profile: Profile) -> np.ndarray:
    """[candidates] candidate ids in XLA's order: memory boundedness (descending), then size
    (descending), duration (descending), start and id."""
    cands = game.candidates
    score = memory_boundedness(game, profile)
    duration = cands.end - cands.start
    return np.array(sorted(range(cands.n), key=lambda c: (-score[c], -cands.bytes[c], -duration[c], cands.start[c], c)),
                    dtype=np.int64)


def _xla_msa(instance: Instance, profile: Profile, budget, seed, time_limit) -> Mapping:
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
    game = G.make_game(instance, profile, budget)
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


def _cpsat(instance: Instance, profile: Profile, budget, seed, time_limit) -> Mapping:
    """CP-SAT's best mapping, warm-started with (and never worse than) xla-msa's."""
    from agent.cpsat import solve_cpsat

    hint = _xla_msa(instance, profile, budget, seed, time_limit)
    return solve_cpsat(instance, profile, budget, time_limit=time_limit, hint=hint, seed=seed).mapping


def _mallocmuzero(mode: str) -> Callable:
    def policy(instance: Instance, profile: Profile, budget, seed, time_limit, simulations=None,
               checkpoint=None) -> Mapping:
        from agent.mallocmuzero import play

        return play(instance, profile, budget, mode, simulations, checkpoint)[0]

    policy.__doc__ = f"The shipped (or the named) mallocMuZero checkpoint's network, mode {mode!r} (agent.mallocmuzero)."
    return policy


_POLICIES: dict[str, Callable] = {
    "all-fast": _all_fast,
    "all-slow": _all_slow,
    "random": _play(_random_choice, "random"),
    "first-fit": _play(_first_fit_choice, "first-fit"),
    "xla-msa": _xla_msa,
    "cpsat": _cpsat,
    "mallocmuzero": _mallocmuzero("search"),
    "mallocmuzero-fortified": _mallocmuzero("fortified"),
    "mallocmuzero-greedy": _mallocmuzero("greedy"),
}
_OPTIONS = {"mallocmuzero": ("simulations", "checkpoint"), "mallocmuzero-fortified": ("simulations", "checkpoint"),
            "mallocmuzero-greedy": ("checkpoint",)}


def policies() -> list[str]:
    """Names of the available policies."""
    return list(_POLICIES)


def solve(instance: Instance, profile: Profile, budget: Optional[float], policy: str = "xla-msa",
          seed: int = 0, time_limit: Optional[float] = None, **options) -> Mapping:
    """A mapping of `instance` on `profile` within `budget` x peak live bytes of fast memory
    (`options`: the policy's own settings, see the module docstring)."""
    if policy not in _POLICIES:
        raise ValueError(f"unknown policy {policy!r}; valid policies: {', '.join(_POLICIES)}")
    options = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(options) - set(_OPTIONS.get(policy, ())))
    if unknown:
        valid = ", ".join(_OPTIONS.get(policy, ())) or "none"
        raise ValueError(f"policy {policy!r} has no option {', '.join(unknown)} (its options: {valid})")
    if policy != "all-fast":
        check_budget(budget)
        if budget is None:
            raise ValueError(f"policy {policy!r} needs a budget in (0, 1]")
    mapping = _POLICIES[policy](instance, profile, budget, seed, time_limit, **options)
    return Mapping(mapping.offsets, mapping.n_buffers, instance.name, policy, mapping.budget)
