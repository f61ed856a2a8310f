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

import functools

import jax
import jax.numpy as jnp
import numpy as np

from harness.model.costmodel import Candidates, CopyQueue, Tables, Timing, bucket, timing, total_time
from harness.xla.instance import Instance
from harness.model.mapping import Mapping, capacity
from harness.model.profiles import Profile
from harness.model.simulator import cost_tables

MAX_SLOTS = 128
LOOKAHEAD = 8  # candidates described in the observation: the current one and the next ones
PICTURE = (16, 16)  # coarse occupancy picture: future time bins x address bins
N_FEATURES = 12
N_SLOT_FEATURES = 10  # per slot: see `slot_features`
N_PROGRESS = 5  # see `observe`
N_PROFILE = 7  # see `profile_features`
RANK_CAP = 16  # slot ranks at or past it look alike
SAVING_CHUNK = 256  # one-candidate mappings priced per call of the cost model (`_saving_alone`)
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
    slow_time: jax.Array  # scalar: simulated seconds of the all-slow mapping
    profile: jax.Array  # [N_PROFILE] the profile's and the budget's figures (`profile_features`)


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
    slow_time, saving = _saving_alone(tables, cands.n, offload)
    features = _features(instance, cands, tables, order, size_slots, n_slots, saving)
    spec = GameSpec(
        tables=tables, order=jnp.asarray(order), start=jnp.asarray(cands.start, jnp.int32),
        end=jnp.asarray(cands.end, jnp.int32), slots=jnp.asarray(size_slots), features=jnp.asarray(features),
        n_steps=jnp.int32(len(instance.ops) + 1), busy0=jnp.full(int(n_slots), -1, jnp.int32),
        slow_time=jnp.float32(slow_time),
        profile=jnp.asarray(profile_features(profile, budget, int(n_slots), int(slot_bytes), slow_time)))
    return Game(spec, int(n_slots), int(slot_bytes), offload, cands, int(cap or 0))


def profile_features(profile: Profile, budget: float, n_slots: int, slot_bytes: int, slow_time: float) -> np.ndarray:
    """[N_PROFILE] what one network needs to tell games of several profiles apart: the memory model
    (1 offload), log10 of the fast/slow and fast/copy bandwidth ratios (over 2), the budget (share
    of the peak bytes), the real slots over MAX_SLOTS, log2 of a slot's bytes (over 32) and
    log10 of the all-slow time in microseconds (over 6)."""
    slow_bw = profile.fast_bandwidth if profile.memory_model == "offload" else profile.slow_bandwidth
    return np.array([
        float(profile.memory_model == "offload"),
        np.log10(profile.fast_bandwidth / slow_bw) / 2.0,
        np.log10(profile.fast_bandwidth / profile.copy_bandwidth) / 2.0,
        budget, n_slots / MAX_SLOTS, np.log2(max(slot_bytes, 1)) / 32.0,
        np.log10(max(slow_time, 1e-12) * 1e6) / 6.0,
    ], np.float32)


def _features(instance, cands, tables, order, size_slots, n_slots, saving) -> np.ndarray:
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


def _saving_alone(tables: Tables, n: int, offload: bool) -> tuple[float, np.ndarray]:
    """(simulated seconds of the all-slow mapping, [candidates] the share of it that making one
    candidate fast, all others slow, saves): the cost model's `total_time` of each such mapping."""
    width = bucket(n)
    chunk = min(width, SAVING_CHUNK)
    parts = [_savings(tables, jnp.int32(first), offload=offload, width=width, chunk=chunk)
             for first in range(0, max(n, 1), chunk)]
    slow = float(parts[0][0])
    saved = np.concatenate([np.asarray(part, np.float64) for _, part in parts])[:n]
    return slow, np.clip(saved / max(slow, 1e-30), 0.0, 1.0)


@functools.partial(jax.jit, static_argnames=("offload", "width", "chunk"))
def _savings(tables: Tables, first: jax.Array, *, offload: bool, width: int, chunk: int):
    """(all-slow seconds, [chunk] seconds saved by candidates first.. first+chunk-1 alone fast)."""
    slow = total_time(tables, jnp.zeros(width, jnp.float32), offload)
    masks = jax.nn.one_hot(first + jnp.arange(chunk), width, dtype=jnp.float32)
    return slow, slow - jax.vmap(lambda m: total_time(tables, m, offload))(masks)


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


def marginal_gain(game: Game, state: GameState) -> jax.Array:
    """Share of the all-slow time that placing the current candidate fast saves now, given every
    decision so far (the cost model's `timing`, re-run from the state's as `step` does); 0 once the
    game is over."""
    c = current(game, state)
    t = _time(game, state.fast.at[c].set(1.0), state)
    return jnp.where(state.k < n_candidates(game), (state.time - t.time) / game.spec.slow_time, 0.0)


def slot_features(game: Game, state: GameState) -> jax.Array:
    """[n_slots, N_SLOT_FEATURES] per slot, what placing the current candidate there would leave:
    legal (1/0), how long ago the slot was freed (over the schedule), the free run the rectangle
    falls in, its waste (run - width), the free slots left below and above it (each over n_slots),
    whether it is the best fit (the smallest run, lowest slot of equals), its rank in best-fit order
    among the legal slots (over RANK_CAP, capped at 1), and whether it is the first or last legal slot.
    Every feature but the second is 0 on an illegal slot."""
    c = current(game, state)
    legal = legal_actions(game, state)[:-1]
    width = game.spec.slots[c]
    free = state.busy_until < game.spec.start[c]
    idx = jnp.arange(game.n_slots)
    below = jax.lax.cummax(jnp.where(free, -1, idx))  # last taken slot at or below each slot
    above = jax.lax.cummin(jnp.where(free, game.n_slots, idx), reverse=True)
    run = above - below - 1
    order = jnp.where(legal, run * (game.n_slots + 1) + idx, jnp.iinfo(jnp.int32).max)
    rank = jnp.sum(order[None, :] < order[:, None], axis=1)  # among legal slots, unique orders: argsort's ranks
    first = jnp.argmax(legal)
    last = game.n_slots - 1 - jnp.argmax(legal[::-1])
    now = game.spec.start[c]
    per_slot = jnp.stack([
        run, run - width, idx - below - 1, above - idx - width,
    ], axis=1) / game.n_slots
    flags = jnp.stack([rank == 0, jnp.minimum(rank, RANK_CAP) / RANK_CAP, idx == first, idx == last], axis=1)
    on_legal = jnp.concatenate([per_slot, flags.astype(jnp.float32)], axis=1) * legal[:, None]
    freed = jnp.clip((now - state.busy_until) / game.spec.n_steps, 0.0, 1.0)
    return jnp.concatenate([legal[:, None].astype(jnp.float32), freed[:, None], on_legal], axis=1)


def observe(game: Game, state: GameState) -> dict[str, jax.Array]:
    """Agent inputs: features of the current and next LOOKAHEAD-1 candidates ([LOOKAHEAD,
    N_FEATURES + 1], the last column 1 for real decisions), a coarse picture of the occupied plane
    ahead of the current step ([PICTURE]), per slot what a placement there would leave
    (`slot_features`), the profile's figures (`GameSpec.profile`) and [N_PROGRESS] progress: decisions
    made (share), fast-memory use now (share of slots), the current candidate's marginal gain
    (`marginal_gain`, x10 and as log1p(1000 x gain) / 4) and the time left (share of the all-slow time)."""
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
    gain = marginal_gain(game, state)
    return {
        "candidates": jnp.concatenate([feats, valid[:, None].astype(jnp.float32)], axis=1),
        "occupancy": picture,
        "progress": jnp.stack([state.k / n, jnp.mean(state.busy_until >= now), jnp.clip(10.0 * gain, -1.0, 1.0),
                               jnp.sign(gain) * jnp.log1p(1000.0 * jnp.abs(gain)) / 4.0,
                               state.time / game.spec.slow_time]).astype(jnp.float32),
        "slots": slot_features(game, state),
        "profile": game.spec.profile,
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
