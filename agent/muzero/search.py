"""Gumbel MuZero search (mctx) over a batch of states of one mallocGame.

Two models, everything else shared (root, priors, values, masks, policy):

- ``"muzero"``: the learned dynamics. A node's embedding is the latent and the number of
  decisions the real game had made there, so the search knows the episode's end exactly
  (discount 0 on the step that decides the last candidate). Below the root, actions the
  model predicts illegal (legality probability < 0.5) get the prior logit
  `MASKED_LOGIT`; "slow" is always legal.
- ``"alphazero"``: the exact game is the model. A node's embedding is its `GameState`,
  rewards come from `agent.game.rules.step` (in the networks' units, see
  `agent.muzero.networks.reward_scale`), and the exact legal mask is applied at every node.

At the root both use the real game's legal mask (mctx masks invalid actions at the root
only). Priors and values come from the networks. A masked prior logit is finite and so
low that its softmax weight is exactly 0, so Gumbel MuZero's interior selection never
picks it.

`run_search` is a pure function of (params, states, key): jit it with the network, game
and config closed over (`functools.partial`), or call it inside a jitted self-play step.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import mctx

from agent.game.rules import Game, GameState, legal_actions, n_candidates, observe, step
from agent.muzero.networks import MuZeroNet, Params, reward_scale, support_to_scalar

MODES = ("muzero", "alphazero")
MASKED_LOGIT = -1e9  # prior logit of an action masked inside the tree


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Search settings: simulations, actions considered at the root, model, Gumbel noise, discount."""

    num_simulations: int = 32
    max_num_considered_actions: int = 16
    mode: str = "muzero"
    gumbel_scale: float = 1.0  # 0: deterministic (evaluation)
    discount: float = 1.0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown search mode {self.mode!r}; valid modes: {', '.join(MODES)}")
        if self.num_simulations < 1 or self.max_num_considered_actions < 1:
            raise ValueError(f"num_simulations and max_num_considered_actions must be positive, got {self}")


class LatentNode(NamedTuple):
    """A node of the muzero-mode tree: the learned latent and the real game's decision count."""

    latent: jax.Array  # [B, latent_size]
    k: jax.Array  # [B] decisions made


def masked_logits(logits: jax.Array, legal: jax.Array) -> jax.Array:
    """`logits` with `MASKED_LOGIT` where `legal` is false."""
    return jnp.where(legal, logits, MASKED_LOGIT)


def _evaluate(params: Params, net: MuZeroNet, latent: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(policy logits, value, predicted legal mask) of latents; "slow" is always predicted legal."""
    pred = net.predict(params, latent)
    legal = (pred.legal_logits >= 0.0).at[..., -1].set(True)
    return pred.policy_logits, support_to_scalar(pred.value_logits), legal


def _discount(game: Game, config: SearchConfig, k: jax.Array) -> jax.Array:
    """Discount of a step that leads to `k` decisions made: 0 once every candidate is decided."""
    return jnp.where(k >= n_candidates(game), 0.0, config.discount).astype(jnp.float32)


def _learned_model(net: MuZeroNet, game: Game, config: SearchConfig) -> mctx.RecurrentFn:
    """The recurrent_fn of the muzero mode: learned dynamics, predicted legality."""

    def recurrent_fn(params, key, action, node: LatentNode):
        del key
        latent, reward_logits = net.recurrent(params, node.latent, action)
        logits, value, legal = _evaluate(params, net, latent)
        k = node.k + 1
        out = mctx.RecurrentFnOutput(reward=support_to_scalar(reward_logits), discount=_discount(game, config, k),
                                     prior_logits=masked_logits(logits, legal), value=value)
        return out, LatentNode(latent, k)

    return recurrent_fn


def _exact_model(net: MuZeroNet, game: Game, config: SearchConfig) -> mctx.RecurrentFn:
    """The recurrent_fn of the alphazero mode: the exact game, its legal masks at every node."""
    scale = reward_scale(game)

    def recurrent_fn(params, key, action, states: GameState):
        del key
        states, reward, _ = jax.vmap(functools.partial(step, game))(states, action)
        latent = net.represent(params, jax.vmap(functools.partial(observe, game))(states))
        logits, value, _ = _evaluate(params, net, latent)
        legal = jax.vmap(functools.partial(legal_actions, game))(states)
        out = mctx.RecurrentFnOutput(reward=(reward * scale).astype(jnp.float32),
                                     discount=_discount(game, config, states.k),
                                     prior_logits=masked_logits(logits, legal), value=value)
        return out, states

    return recurrent_fn


def run_search(params: Params, net: MuZeroNet, game: Game, states: GameState, key: jax.Array,
               config: SearchConfig, observation: Optional[dict] = None,
               legal: Optional[jax.Array] = None) -> mctx.PolicyOutput:
    """Gumbel MuZero search from each of a batch of `states` ([B] leading axis) of `game`; `observation`
    and `legal` are the states' observations and legal masks where the caller has them already (else computed).

    Returns mctx's `PolicyOutput`: the chosen actions [B] (legal in the real game), the
    improved policies [B, n_actions] (training targets) and the search tree.
    """
    if observation is None:
        observation = jax.vmap(functools.partial(observe, game))(states)
    if legal is None:
        legal = jax.vmap(functools.partial(legal_actions, game))(states)
    latent = net.represent(params, observation)
    logits, value, _ = _evaluate(params, net, latent)
    if config.mode == "alphazero":
        embedding, recurrent_fn = states, _exact_model(net, game, config)
    else:
        embedding, recurrent_fn = LatentNode(latent, states.k), _learned_model(net, game, config)
    root = mctx.RootFnOutput(prior_logits=logits, value=value, embedding=embedding)
    return mctx.gumbel_muzero_policy(
        params, key, root, recurrent_fn, config.num_simulations, invalid_actions=~legal,
        qtransform=mctx.qtransform_completed_by_mix_value,
        max_num_considered_actions=config.max_num_considered_actions, gumbel_scale=config.gumbel_scale)
