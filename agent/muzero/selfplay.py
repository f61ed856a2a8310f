"""Batched self-play under jit: a batch of episodes of one (padded) game, searched at every step.

`self_play(params, net, game, key, config, batch)` vmaps the games and scans over the
decisions; every step runs `agent.muzero.search.run_search` on the whole batch, except where
no game of the batch has a choice ("slow" is the only legal action, as for a padded
game's dummy candidates), which costs one network evaluation instead of a search.

The jitted program depends on the game's shapes only: the game's arrays are an
argument (`game.spec`), its sizes static (`GameShape`), so every padded game of one
size shares one compiled program.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from agent.game import rules as G
from agent.muzero.networks import MuZeroNet, Params, reward_scale, support_to_scalar
from agent.muzero.search import SearchConfig, run_search


@dataclasses.dataclass(frozen=True)
class GameShape:
    """The static sizes of a game (with its arrays, `game.spec`, they rebuild it inside jit)."""

    n_slots: int
    offload: bool

    @classmethod
    def of(cls, game: G.Game) -> GameShape:
        """The shape of `game`."""
        return cls(game.n_slots, game.offload)

    def game(self, spec: G.GameSpec) -> G.Game:
        """A game of this shape over `spec` (enough for every jitted game function)."""
        return G.Game(spec, self.n_slots, 0, self.offload, None, 0)


class Trajectory(NamedTuple):
    """A batch of episodes, time-major: [T, B, ...]."""

    observation: dict  # each [T, B, ...]
    action: jax.Array  # [T, B] int32
    policy: jax.Array  # [T, B, A] the search's improved policy (the policy target)
    reward: jax.Array  # [T, B] in the networks' units (percent of the all-slow time)
    value: jax.Array  # [T, B] the search's value of the root
    legal: jax.Array  # [T, B, A] the real game's legal actions


def self_play(params: Params, net: MuZeroNet, game: G.Game, key: jax.Array, config: SearchConfig,
              batch: int) -> tuple[Trajectory, G.GameState]:
    """`batch` episodes of `game` played by search; returns their trajectory and final states."""
    return _self_play(params, game.spec, key, net=net, shape=GameShape.of(game), config=config, batch=batch)


@functools.partial(jax.jit, static_argnames=("net", "shape", "config", "batch"))
def _self_play(params, spec, key, *, net: MuZeroNet, shape: GameShape, config: SearchConfig, batch: int):
    game = shape.game(spec)
    scale = reward_scale(game)
    states = jax.vmap(lambda _: G.reset(game))(jnp.arange(batch))
    observe = jax.vmap(functools.partial(G.observe, game))
    legal_of = jax.vmap(functools.partial(G.legal_actions, game))
    step = jax.vmap(functools.partial(G.step, game))
    slow = game.n_slots

    def searched(states, key, obs, legal):
        out = run_search(params, net, game, states, key, config, observation=obs, legal=legal)
        value = out.search_tree.node_values[:, 0]
        return out.action, out.action_weights, value

    def forced(states, key, obs, legal):
        del key, legal
        latent = net.represent(params, obs)
        value = support_to_scalar(net.predict(params, latent).value_logits)
        action = jnp.full(batch, slow, jnp.int32)
        return action, jax.nn.one_hot(action, game.n_actions), value

    def body(states, key):
        obs, legal = observe(states), legal_of(states)
        choice = jnp.any(legal[:, :-1])
        action, policy, value = jax.lax.cond(choice, searched, forced, states, key, obs, legal)
        states, reward, _ = step(states, action)
        return states, Trajectory(obs, action, policy, reward * scale, value, legal)

    keys = jax.random.split(key, G.n_candidates(game))
    return jax.lax.scan(body, states, keys)[::-1]
