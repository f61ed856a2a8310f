"""The simple policies: all-fast (the floor, no budget), all-slow, and the game played by a rule
(random legal actions; first-fit, each candidate at its lowest free slot)."""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from agent.game import rules as G
from harness.model.mapping import Mapping, padded
from harness.model.profiles import Profile
from harness.model.simulator import cost_tables
from harness.xla.instance import Instance


def all_fast(instance: Instance, profile: Profile, budget, seed, time_limit) -> Mapping:
    """Every candidate fast, first-fit in an unbounded address space (no budget)."""
    cands, _ = cost_tables(instance, profile)
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


def all_slow(instance: Instance, profile: Profile, budget, seed, time_limit) -> Mapping:
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




random_legal = _play(_random_choice, "random")
first_fit = _play(_first_fit_choice, "first-fit")
