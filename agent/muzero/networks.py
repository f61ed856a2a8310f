"""MuZero's three networks for the mallocGame (Flax linen), and their value and reward scales.

- Representation: the game's observation (`agent.game.rules.observe`: the current and next
  candidates' features, the coarse occupancy picture ahead, progress and fast-memory use)
  -> latent, min-max normalized to [0, 1] per example as MuZero does.
- Dynamics: latent, one-hot action -> next latent (normalized), reward logits.
- Prediction: latent -> policy logits over the actions (offset slots, then "slow"), value
  logits, and legality logits over the actions. The legality head learns the real game's
  masks (a binary cross-entropy on `legal_actions`); the search masks, below its root,
  every action the model predicts illegal (probability < 0.5).

Values and rewards are categorical over the integer support [-n, n] (`support_size` =
2n + 1) of MuZero's scaling transform h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps x, the
target of a scalar the two-hot of h(x). The value and reward heads start at zero, the
legality head predicts every action legal, and the policy gives "slow" half the prior
(the slots share the other half): with a uniform prior over 129 actions the search would
rarely consider "slow" at all, and self-play would only ever learn to fill memory.

Reward scale. The game's rewards are seconds of simulated time saved (microseconds on
small programs). Networks and search see them in percent of the all-slow program's
time: `reward_scale(game)` = 100 / simulate(all-slow), so an episode's return is the
percentage of the all-slow time that the mapping saves, in [0, 100); h(100) ~ 9.05,
so the default support of 21 ([-10, 10]) covers every return.

`MuZeroNet(config)` holds no state: `init(key, observation, n_actions)` returns the
parameters, and `represent`, `recurrent` and `predict` are pure functions of them that
work on any leading batch shape (jit, vmap and grad apply to them as to any function).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from agent.game.rules import Game, reset

Params = Any  # a pytree of arrays: {"representation": ..., "dynamics": ..., "prediction": ...}

REWARD_UNITS = 100.0  # an episode's return is in percent of the all-slow time

_PRESETS = {
    "ci": dict(latent_size=64, representation=(128,), dynamics=(128,), prediction=(128,)),
    "full": dict(latent_size=256, representation=(512, 512), dynamics=(512, 512), prediction=(512, 512)),
}


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Sizes of the networks: latent width, hidden widths of each MLP, categorical support size."""

    latent_size: int = 64
    representation: tuple[int, ...] = (128,)
    dynamics: tuple[int, ...] = (128,)
    prediction: tuple[int, ...] = (128,)
    support_size: int = 21  # 2n + 1 bins: the support [-n, n] of h(value) and h(reward)

    def __post_init__(self):
        widths = (self.latent_size, *self.representation, *self.dynamics, *self.prediction)
        if min(widths) < 1:
            raise ValueError(f"network widths must be positive, got {self}")
        if self.support_size < 3 or self.support_size % 2 == 0:
            raise ValueError(f"support_size must be odd and at least 3, got {self.support_size}")

    @classmethod
    def preset(cls, name: str) -> NetworkConfig:
        """A named configuration: "ci" (trains on a 2-core CPU) or "full"."""
        if name not in _PRESETS:
            raise ValueError(f"unknown network preset {name!r}; valid presets: {', '.join(_PRESETS)}")
        return cls(**_PRESETS[name])


def scaling_transform(x: jax.Array, eps: float = 1e-3) -> jax.Array:
    """MuZero's h(x) = sign(x) (sqrt(|x| + 1) - 1) + eps x."""
    return jnp.sign(x) * (jnp.sqrt(jnp.abs(x) + 1.0) - 1.0) + eps * x


def inverse_scaling_transform(y: jax.Array, eps: float = 1e-3) -> jax.Array:
    """The exact inverse of `scaling_transform`."""
    root = (jnp.sqrt(1.0 + 4.0 * eps * (jnp.abs(y) + 1.0 + eps)) - 1.0) / (2.0 * eps)
    return jnp.sign(y) * (jnp.square(root) - 1.0)


def scalar_to_support(x: jax.Array, support_size: int) -> jax.Array:
    """[..., support_size] two-hot of h(x) on the integer support [-n, n] (clipped to it)."""
    n = support_size // 2
    y = jnp.clip(scaling_transform(x), -n, n)
    low = jnp.floor(y)
    upper = y - low  # weight of the bin above
    index = (low + n).astype(jnp.int32)
    below = jax.nn.one_hot(index, support_size) * (1.0 - upper)[..., None]
    above = jax.nn.one_hot(jnp.minimum(index + 1, support_size - 1), support_size) * upper[..., None]
    return below + above


def support_to_scalar(logits: jax.Array) -> jax.Array:
    """The scalar that categorical logits over [-n, n] stand for: h^-1 of the expected bin."""
    n = logits.shape[-1] // 2
    y = jnp.sum(jax.nn.softmax(logits) * jnp.arange(-n, n + 1, dtype=logits.dtype), axis=-1)
    return inverse_scaling_transform(y)


def reward_scale(game: Game) -> jax.Array:
    """Factor from the game's rewards (seconds) to the networks' (percent of the all-slow time)."""
    return REWARD_UNITS / reset(game).time


def normalize(latent: jax.Array) -> jax.Array:
    """Min-max normalization of each latent to [0, 1] (MuZero's hidden-state scaling)."""
    low = jnp.min(latent, axis=-1, keepdims=True)
    span = jnp.max(latent, axis=-1, keepdims=True) - low
    return (latent - low) / jnp.maximum(span, 1e-5)


class MLP(nn.Module):
    """Dense -> LayerNorm -> ReLU per hidden width."""

    widths: Sequence[int]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.widths:
            x = nn.relu(nn.LayerNorm()(nn.Dense(width)(x)))
        return x


class Representation(nn.Module):
    """Observation dict -> normalized latent."""

    config: NetworkConfig

    @nn.compact
    def __call__(self, observation: dict[str, jax.Array]) -> jax.Array:
        lead = observation["progress"].shape[:-1]
        x = jnp.concatenate([observation[k].reshape(*lead, -1) for k in sorted(observation)], axis=-1)
        return normalize(nn.Dense(self.config.latent_size)(MLP(self.config.representation)(x)))


class Dynamics(nn.Module):
    """(latent, action) -> (next normalized latent, reward logits)."""

    config: NetworkConfig
    n_actions: int

    @nn.compact
    def __call__(self, latent: jax.Array, action: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = MLP(self.config.dynamics)(jnp.concatenate([latent, jax.nn.one_hot(action, self.n_actions)], axis=-1))
        reward = nn.Dense(self.config.support_size, kernel_init=nn.initializers.zeros, name="reward")(x)
        return normalize(nn.Dense(self.config.latent_size)(x)), reward


class Prediction(NamedTuple):
    """The prediction network's outputs (leading batch shape, then the last axis)."""

    policy_logits: jax.Array  # [..., n_actions]
    value_logits: jax.Array  # [..., support_size]
    legal_logits: jax.Array  # [..., n_actions]: sigmoid > 0.5 where the model predicts legal


def _slow_prior(key, shape, dtype=jnp.float32):
    """Policy bias at initialization: "slow" (the last action) as likely as all slots together."""
    del key
    return jnp.zeros(shape, dtype).at[-1].set(jnp.log(shape[-1] - 1.0))


class PredictionNet(nn.Module):
    """Latent -> policy, value and legality logits."""

    config: NetworkConfig
    n_actions: int

    @nn.compact
    def __call__(self, latent: jax.Array) -> Prediction:
        x = MLP(self.config.prediction)(latent)
        zeros = nn.initializers.zeros
        return Prediction(
            policy_logits=nn.Dense(self.n_actions, kernel_init=zeros, bias_init=_slow_prior, name="policy")(x),
            value_logits=nn.Dense(self.config.support_size, kernel_init=zeros, name="value")(x),
            legal_logits=nn.Dense(self.n_actions, kernel_init=zeros, name="legal")(x))


@dataclasses.dataclass(frozen=True)
class MuZeroNet:
    """The three networks as pure functions of one parameter pytree."""

    config: NetworkConfig = NetworkConfig()

    def init(self, key: jax.Array, observation: dict[str, jax.Array], n_actions: int) -> Params:
        """Parameters for games with `n_actions` actions, shaped by one (batched or not) observation."""
        k_rep, k_dyn, k_pred = jax.random.split(key, 3)
        rep = Representation(self.config).init(k_rep, observation)["params"]
        latent = Representation(self.config).apply({"params": rep}, observation)
        action = jnp.zeros(latent.shape[:-1], jnp.int32)
        dyn = Dynamics(self.config, n_actions).init(k_dyn, latent, action)["params"]
        pred = PredictionNet(self.config, n_actions).init(k_pred, latent)["params"]
        return {"representation": rep, "dynamics": dyn, "prediction": pred}

    def represent(self, params: Params, observation: dict[str, jax.Array]) -> jax.Array:
        """Observation -> latent [..., latent_size]."""
        return Representation(self.config).apply({"params": params["representation"]}, observation)

    def recurrent(self, params: Params, latent: jax.Array, action: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(latent, action) -> (next latent, reward logits [..., support_size])."""
        module = Dynamics(self.config, n_actions(params))
        return module.apply({"params": params["dynamics"]}, latent, action)

    def predict(self, params: Params, latent: jax.Array) -> Prediction:
        """Latent -> policy, value and legality logits."""
        return PredictionNet(self.config, n_actions(params)).apply({"params": params["prediction"]}, latent)


def n_actions(params: Params) -> int:
    """The number of actions that `params` were initialized for."""
    return params["prediction"]["policy"]["kernel"].shape[-1]
