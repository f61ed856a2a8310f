"""The mallocGame in pure JAX: decide, one candidate buffer at a time, fast (at an offset) or slow.

Fast memory is a plane of schedule steps x address slots (capacity / slot
granule). A candidate (an alias group of buffers, which must share memory)
placed at slot `a` occupies steps [start, end] x slots [a, a + size). The
action is a slot, or `n_slots` for "slow", which is always legal; a slot is
legal only where its rectangle is free, so no illegal state can arise.

Order: candidates are decided by start of live interval, ties by size
descending. Because every earlier candidate starts no later than the current
one, the plane is held exactly by `busy_until[slot]`, the last step at which
the slot is taken: a rectangle starting at `start` is free iff `busy_until < start`
on all its slots.

Reward of a step: the decrease of the simulated program time (the cost model
of `harness.costmodel`, the same code `harness.simulate` runs), so an episode's
rewards sum to simulate(all-slow) - simulate(final mapping), and the state's time
is simulate's to the bit. The state keeps the cost model's copy queues (offload),
so a step re-runs them only from the first op the placement alters.

Everything is jit-able and vmaps over a batch of games (`jax.vmap(step, (None, 0, 0))`).

`pad(game)` gives the same game in a fixed action space (`MAX_SLOTS` slots, slots
beyond the real ones taken forever) and a bucketed number of decisions (dummy
candidates at the end, for which only "slow" is legal), so that one network and one
compiled program serve many instances. The functions here read the number of
decisions from the arrays (`n_candidates`), so they work on a `Game` rebuilt inside
`jit` from its `spec` and its static sizes alone (`candidates=None`).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from harness.model.costmodel import Candidates, CopyQueue, Tables, Timing, timing
from harness.xla.instance import Instance
from harness.model.mapping import Mapping, capacity
from harness.model.profiles import Profile
from harness.model.simulator import cost_tables

MAX_SLOTS = 128
LOOKAHEAD = 8  # candidates described in the observation: the current one and the next ones
PICTURE = (16, 16)  # coarse occupancy picture: future time bins x address bins
N_FEATURES = 12
NEVER_FREE = np.iinfo(np.int32).max  # busy_until of a padding slot


class GameSpec(NamedTuple):
    """Static description of one game: instance x profile x budget (a pytree of arrays)."""

    tables: Tables
    order: jax.Array  # [C] candidate id decided at each step
    start: jax.Array  # [C] by candidate id
    end: jax.Array
    slots: jax.Array  # [C] size in slots
    features: jax.Array  # [C, N_FEATURES] by decision step
    n_steps: jax.Array  # scalar: schedule length (for the picture)
    busy0: jax.Array  # [S] busy_until at the start: -1, or NEVER_FREE for padding slots


class GameState(NamedTuple):
    """One game's state."""

    busy_until: jax.Array  # [S] last step at which each slot is taken (-1: free)
    k: jax.Array  # decisions made
    fast: jax.Array  # [C] 1.0 for candidates placed fast
    offset: jax.Array  # [C] slot of fast candidates, -1 otherwise
    fast_op_bytes: jax.Array  # [ops] bytes each op moves to/from fast buffers
    time: jax.Array  # simulated seconds of the mapping so far (undecided = slow)
    copies: CopyQueue  # the offload copy queues of that mapping (empty arrays for direct)


class Game(NamedTuple):
    """A game with its static sizes (Python values) and the arrays of `spec`."""

    spec: GameSpec
    n_slots: int
    slot_bytes: int
    offload: bool
    candidates: Candidates
    capacity: int

    @property
    def n_actions(self) -> int:
        """Slots plus the "slow" action."""
        return self.n_slots + 1


def make_game(instance: Instance, profile: Profile, budget: float, max_slots: int = MAX_SLOTS) -> Game:
    """The game of placing `instance`'s candidates in `budget` x peak bytes of fast memory."""
    cands, tables = cost_tables(instance, profile)
    cap = capacity(instance, profile, budget)
    granule = profile.granule_bytes
    per_slot = max(granule, -(-cap // max_slots)) if cap else granule
    slot_bytes = -(-per_slot // granule) * granule
    n_slots = max(1, cap // slot_bytes)
    size_slots = np.maximum(1, -(-cands.bytes // slot_bytes)).astype(np.int32)
    if cap // slot_bytes == 0:  # less than one slot of fast memory: nothing fits
        size_slots[:] = 2
    order = np.array(sorted(range(cands.n), key=lambda c: (cands.start[c], -cands.bytes[c], c)), dtype=np.int32)
    offload = profile.memory_model == "offload"
    features = _features(instance, cands, tables, order, size_slots, n_slots, offload)
    spec = GameSpec(
        tables=tables, order=jnp.asarray(order), start=jnp.asarray(cands.start, jnp.int32),
        end=jnp.asarray(cands.end, jnp.int32), slots=jnp.asarray(size_slots), features=jnp.asarray(features),
        n_steps=jnp.int32(len(instance.ops) + 1), busy0=jnp.full(int(n_slots), -1, jnp.int32))
    return Game(spec, int(n_slots), int(slot_bytes), offload, cands, int(cap or 0))


def _features(instance, cands, tables, order, size_slots, n_slots, offload) -> np.ndarray:
    """Per decision step: log2 bytes, size in slots / slots, start, end, duration (over schedule
    length), accesses, the share of bytes it moves, the share of the all-slow time it saves
    alone (`_saving_alone`), that saving per share of fast memory, and three views of the
    saving per share of the fast time x address plane that the candidate would take (its
    density): the density, its percentile among the candidates, and the plane a greedy
    packer that takes candidates by density would have filled (over the whole plane) when
    it reaches this one: below 1, a greedy-by-density mapping could still hold it."""
    n = max(len(instance.ops), 1)
    acc_cand = np.asarray(tables.acc_cand)
    counts = np.bincount(acc_cand, minlength=cands.n)
    moved = np.bincount(acc_cand, weights=np.asarray(tables.acc_bytes), minlength=cands.n)
    saving = _saving_alone(tables, cands.n, offload)
    share = np.minimum(size_slots / n_slots, 2.0)
    duration = (cands.end - cands.start + 1) / (n + 1)
    density = saving / np.maximum(share * duration, 1e-9)
    rank = np.argsort(np.argsort(-density, kind="stable"), kind="stable")
    percentile = 1.0 - rank / max(cands.n - 1, 1)
    filled = np.cumsum((share * duration)[np.argsort(-density, kind="stable")])[rank]
    f = np.stack([
        np.log2(np.maximum(cands.bytes, 1)) / 32.0,
        share,
        cands.start / n, cands.end / n, (cands.end - cands.start) / n,
        np.log1p(counts) / 8.0,
        moved / max(moved.sum(), 1.0),
        saving,
        np.minimum(saving / share, 4.0),
        np.minimum(density, 16.0) / 4.0,
        percentile,
        np.minimum(filled, 4.0),
    ], axis=1).astype(np.float32)
    return f[order]


def _saving_alone(tables: Tables, n: int, offload: bool) -> np.ndarray:
    """[candidates] share of the all-slow time that making one candidate fast saves, by the cost
    model's op times (direct) or the copy time it avoids (offload; overlap with compute ignored)."""
    t = {k: np.asarray(v, np.float64) for k, v in tables._asdict().items()}
    acc_op, acc_cand = t["acc_op"].astype(int), t["acc_cand"].astype(int)
    slow_elapsed = np.maximum(t["compute"], t["op_bytes"] / t["op_slow_bw"] + t["overhead"])
    total = float(np.sum(slow_elapsed * t["weight"]))
    if offload:
        copies = np.bincount(t["pf_cand"].astype(int), t["pf_bytes"], n) + np.bincount(
            t["ev_cand"].astype(int), t["ev_bytes"], n)
        saved = copies / t["copy_bw"]
        total += float(copies.sum() / t["copy_bw"])
    else:
        fast_mem = t["op_bytes"][acc_op] - t["acc_bytes"] * (1.0 - t["op_slow_bw"] / t["fast_bw"])
        with_fast = np.maximum(t["compute"][acc_op], fast_mem / t["op_slow_bw"] + t["overhead"][acc_op])
        saved = np.bincount(acc_cand, (slow_elapsed[acc_op] - with_fast) * t["weight"][acc_op], n)
    return np.clip(saved / max(total, 1e-30), 0.0, 1.0)


def pad(game: Game, n_slots: int = MAX_SLOTS, n_candidates_to: Optional[int] = None) -> Game:
    """`game` with `n_slots` slots (the extra ones never free) and `n_candidates_to` decisions
    (default: the next multiple of 32; the extra ones decide dummy candidates that only fit "slow").

    The simulated time of every mapping is unchanged: dummy candidates are never accessed.
    """
    c = n_candidates(game)
    target = n_candidates_to or -(-c // 32) * 32
    if n_slots < game.n_slots or target < c:
        raise ValueError(f"cannot pad a game of {game.n_slots} slots and {c} candidates to {n_slots} and {target}")
    extra, s = target - c, game.spec
    after = jnp.full(extra, s.n_steps, jnp.int32)
    spec = s._replace(
        order=jnp.concatenate([s.order, jnp.arange(c, target, dtype=jnp.int32)]),
        start=jnp.concatenate([s.start, after]), end=jnp.concatenate([s.end, after]),
        slots=jnp.concatenate([s.slots, jnp.full(extra, n_slots + 1, jnp.int32)]),
        features=jnp.concatenate([s.features, jnp.zeros((extra, N_FEATURES), jnp.float32)]),
        busy0=jnp.concatenate([s.busy0, jnp.full(n_slots - game.n_slots, NEVER_FREE, jnp.int32)]))
    return game._replace(spec=spec, n_slots=n_slots)


def n_candidates(game: Game) -> int:
    """Number of decisions of an episode (dummy candidates of a padded game included)."""
    return game.spec.order.shape[0]


def _time(game: Game, fast: jax.Array, state: Optional[GameState] = None) -> Timing:
    """The cost model's `timing` of a mask; from `state`'s, re-running only what the change alters."""
    before = None if state is None else (Timing(state.fast_op_bytes, state.copies, state.time), state.fast)
    return timing(game.spec.tables, fast, game.offload, before)


def reset(game: Game) -> GameState:
    """The initial state: nothing decided, everything slow."""
    c = n_candidates(game)
    fast = jnp.zeros(c, jnp.float32)
    t = _time(game, fast)
    return GameState(busy_until=game.spec.busy0, k=jnp.int32(0), fast=fast, offset=jnp.full(c, -1, jnp.int32),
                     fast_op_bytes=t.fast_op_bytes, time=t.time, copies=t.copies)


def current(game: Game, state: GameState) -> jax.Array:
    """Candidate id decided now (the last one once the game is over)."""
    return game.spec.order[jnp.minimum(state.k, n_candidates(game) - 1)]


def legal_actions(game: Game, state: GameState) -> jax.Array:
    """[n_slots + 1] bool: slots where the current candidate's rectangle is free, then "slow"."""
    c = current(game, state)
    width = game.spec.slots[c]
    free = (state.busy_until < game.spec.start[c]).astype(jnp.int32)
    runs = jnp.concatenate([jnp.zeros(1, jnp.int32), jnp.cumsum(free)])
    first = jnp.arange(game.n_slots)
    last = first + width
    fits = (last <= game.n_slots) & (runs[jnp.minimum(last, game.n_slots)] - runs[first] == width)
    fits = fits & (state.k < n_candidates(game))
    return jnp.concatenate([fits, jnp.ones(1, bool)])


def step(game: Game, state: GameState, action: jax.Array) -> tuple[GameState, jax.Array, jax.Array]:
    """Apply `action` (a legal slot, or n_slots for slow); returns (state, reward, done)."""
    c = current(game, state)
    place = (action < game.n_slots) & legal_actions(game, state)[action] & (state.k < n_candidates(game))
    slots = jnp.arange(game.n_slots)
    covered = place & (slots >= action) & (slots < action + game.spec.slots[c])
    busy = jnp.where(covered, jnp.maximum(state.busy_until, game.spec.end[c]), state.busy_until)
    fast = state.fast.at[c].set(jnp.where(place, 1.0, state.fast[c]))
    offset = state.offset.at[c].set(jnp.where(place, action, state.offset[c]))
    t = _time(game, fast, state)  # unchanged mask: the same bits, nothing re-run
    k = jnp.minimum(state.k + 1, n_candidates(game))
    new = GameState(busy, k, fast, offset, t.fast_op_bytes, t.time, t.copies)
    return new, state.time - t.time, k >= n_candidates(game)


def observe(game: Game, state: GameState) -> dict[str, jax.Array]:
    """Agent inputs: features of the current and next LOOKAHEAD-1 candidates, a coarse picture
    of the occupied plane ahead of the current step, per slot whether the current candidate
    may start there and how long ago the slot was freed, and the progress and fast-memory use."""
    n = n_candidates(game)
    idx = state.k + jnp.arange(LOOKAHEAD)
    valid = idx < n
    feats = jnp.where(valid[:, None], game.spec.features[jnp.minimum(idx, n - 1)], 0.0)
    now = game.spec.start[current(game, state)]
    rows, cols = PICTURE
    horizon = now + (jnp.arange(rows) * game.spec.n_steps) // rows
    taken = (state.busy_until[None, :] >= horizon[:, None]).astype(jnp.float32)
    bins = (jnp.arange(game.n_slots) * cols) // game.n_slots
    picture = jax.ops.segment_sum(taken.T, bins, num_segments=cols).T / jnp.maximum(
        jnp.bincount(bins, length=cols), 1)
    return {
        "candidates": jnp.concatenate([feats, valid[:, None].astype(jnp.float32)], axis=1),
        "occupancy": picture,
        "progress": jnp.stack([state.k / n, jnp.mean(state.busy_until >= now)]),
        "slots": jnp.stack([legal_actions(game, state)[:-1].astype(jnp.float32),
                            jnp.clip((now - state.busy_until) / game.spec.n_steps, 0.0, 1.0)], axis=1),
    }


def to_mapping(game: Game, state: GameState, instance: Instance, policy: str = "",
               budget: Optional[float] = None) -> Mapping:
    """The mapping a (finished) game state describes."""
    offsets = {}
    for c, slot in enumerate(np.asarray(state.offset)):
        if slot >= 0:
            for b in game.candidates.members[c]:
                offsets[b] = int(slot) * game.slot_bytes
    return Mapping(offsets, len(instance.buffers), instance.name, policy, budget)


def play(game: Game, choose, key: jax.Array, state: Optional[GameState] = None):
    """Play one whole episode with `choose(key, game, state, legal) -> action` under lax.scan.

    Returns the final state and the rewards of every step.
    """
    state = reset(game) if state is None else state

    def body(carry, key):
        s = carry
        action = choose(key, game, s, legal_actions(game, s))
        s, reward, _ = step(game, s, action)
        return s, reward

    keys = jax.random.split(key, n_candidates(game))
    return jax.lax.scan(body, state, keys)
