"""MuZero's three networks for the mallocGame (Flax linen), and their value and reward scales.

The latent has two parts: a context vector (`latent_size`) and one embedding per slot
(`slot_size` each), flattened into one array [..., latent_size + n_slots x slot_size] so
that the search and the loss treat it as one vector; each part is min-max normalized to
[0, 1] per example as MuZero does.

- Representation: the game's observation (`agent.game.rules.observe`) -> latent. A candidate
  encoder (one MLP shared over the LOOKAHEAD candidates) embeds each candidate; the current
  one and the mean of the real ones, with the occupancy picture, the progress (marginal gain
  included) and the profile's figures, make the context. Each slot's embedding comes from that
  slot's features (`rules.slot_features`) and the current candidate's embedding, by one MLP
  shared over slots.
- Dynamics: latent, action -> next latent, reward logits. The context is updated from itself,
  the chosen slot's embedding and a "slow" flag; each slot's embedding from itself, the new
  context, whether it was chosen and its distance from the chosen slot (shared over slots).
- Prediction (pointer-style): the context and the mean slot embedding give the value, the
  logit of "slow" and a query; each slot's policy and legality logits come from that slot's
  embedding and the query by one MLP shared over slots, so the slots' logits are
  permutation-equivariant in the slot embeddings. The legality head learns the real game's
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
    "ci": dict(latent_size=64, slot_size=16, candidate=(64,), representation=(128,), dynamics=(128,),
               prediction=(128,), slot_hidden=(32,)),
    "full": dict(latent_size=256, slot_size=32, candidate=(128, 128), representation=(512, 512),
                 dynamics=(512, 512), prediction=(512, 512), slot_hidden=(64, 64)),
}


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Sizes of the networks: the context and per-slot latent widths, hidden widths of each MLP
    (the candidate encoder, the context's networks, the MLPs shared over slots), categorical support size."""

    latent_size: int = 64
    slot_size: int = 16
    candidate: tuple[int, ...] = (64,)
    representation: tuple[int, ...] = (128,)
    dynamics: tuple[int, ...] = (128,)
    prediction: tuple[int, ...] = (128,)
    slot_hidden: tuple[int, ...] = (32,)
    support_size: int = 21  # 2n + 1 bins: the support [-n, n] of h(value) and h(reward)

    def __post_init__(self):
        widths = (self.latent_size, self.slot_size, *self.candidate, *self.representation, *self.dynamics,
                  *self.prediction, *self.slot_hidden)
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


class SlotDense(nn.Module):
    """`nn.Dense` (the same parameters) over each slot's inputs [..., n_slots, a] concatenated with
    inputs [..., b] that every slot shares, without copying the shared ones to every slot: the shared
    part of the product is taken once and added to each slot's."""

    features: int

    @nn.compact
    def __call__(self, per_slot: jax.Array, shared: jax.Array) -> jax.Array:
        width = per_slot.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (width + shared.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return per_slot @ kernel[:width] + (shared @ kernel[width:] + bias)[..., None, :]


class SlotMLP(nn.Module):
    """`MLP` (the same parameters) over each slot's inputs concatenated with shared ones (`SlotDense`)."""

    widths: Sequence[int]

    @nn.compact
    def __call__(self, per_slot: jax.Array, shared: jax.Array) -> jax.Array:
        x = per_slot
        for i, width in enumerate(self.widths):
            x = SlotDense(width, name=f"Dense_{i}")(x, shared) if i == 0 else nn.Dense(width, name=f"Dense_{i}")(x)
            x = nn.relu(nn.LayerNorm(name=f"LayerNorm_{i}")(x))
        return x


def split_latent(latent: jax.Array, config: NetworkConfig) -> tuple[jax.Array, jax.Array]:
    """(context [..., latent_size], slot embeddings [..., n_slots, slot_size]) of a flat latent."""
    context, slots = latent[..., :config.latent_size], latent[..., config.latent_size:]
    return context, slots.reshape(*slots.shape[:-1], -1, config.slot_size)


def join_latent(context: jax.Array, slots: jax.Array) -> jax.Array:
    """The flat latent of normalized (context, slot embeddings): `split_latent`'s inverse."""
    flat = normalize(slots.reshape(*slots.shape[:-2], -1))
    return jnp.concatenate([normalize(context), flat], axis=-1)


class Representation(nn.Module):
    """Observation dict -> latent (context and slot embeddings)."""

    config: NetworkConfig

    @nn.compact
    def __call__(self, observation: dict[str, jax.Array]) -> jax.Array:
        cfg = self.config
        cands = observation["candidates"]
        embedded = MLP(cfg.candidate, name="candidate")(cands)  # [..., LOOKAHEAD, width]
        real = cands[..., -1:]
        pooled = jnp.sum(embedded * real, axis=-2) / jnp.maximum(jnp.sum(real, axis=-2), 1.0)
        current = embedded[..., 0, :]
        lead = observation["progress"].shape[:-1]
        state = jnp.concatenate([observation["progress"], observation["profile"]], axis=-1)
        x = jnp.concatenate([current, pooled, observation["occupancy"].reshape(*lead, -1), state], axis=-1)
        context = nn.Dense(cfg.latent_size)(MLP(cfg.representation)(x))
        slots = observation["slots"]
        shared = jnp.concatenate([nn.Dense(cfg.slot_size)(current), state], axis=-1)
        return join_latent(context, nn.Dense(cfg.slot_size)(SlotMLP(cfg.slot_hidden, name="slot")(slots, shared)))


class Dynamics(nn.Module):
    """(latent, action) -> (next latent, reward logits)."""

    config: NetworkConfig

    @nn.compact
    def __call__(self, latent: jax.Array, action: jax.Array) -> tuple[jax.Array, jax.Array]:
        cfg = self.config
        context, slots = split_latent(latent, cfg)
        n_slots = slots.shape[-2]
        chosen = jax.nn.one_hot(action, n_slots + 1)
        is_slow = chosen[..., -1:]
        picked = jnp.sum(slots * chosen[..., :-1, None], axis=-2)
        x = MLP(cfg.dynamics)(jnp.concatenate([context, picked, is_slow], axis=-1))
        reward = nn.Dense(cfg.support_size, kernel_init=nn.initializers.zeros, name="reward")(x)
        new_context = nn.Dense(cfg.latent_size)(x)
        distance = (jnp.arange(n_slots) - action[..., None]) / n_slots * (1.0 - is_slow)
        per_slot = jnp.concatenate([slots, chosen[..., :-1, None], distance[..., None]], axis=-1)
        shared = nn.Dense(cfg.slot_size)(x)
        new_slots = nn.Dense(cfg.slot_size)(SlotMLP(cfg.slot_hidden, name="slot")(per_slot, shared))
        return join_latent(new_context, new_slots), reward


class Prediction(NamedTuple):
    """The prediction network's outputs (leading batch shape, then the last axis)."""

    policy_logits: jax.Array  # [..., n_actions]
    value_logits: jax.Array  # [..., support_size]
    legal_logits: jax.Array  # [..., n_actions]: sigmoid > 0.5 where the model predicts legal


class PredictionNet(nn.Module):
    """Latent -> policy, value and legality logits: one logit per slot from that slot's embedding
    and the context's query (weights shared over slots), and one for "slow" from the context."""

    config: NetworkConfig

    @nn.compact
    def __call__(self, latent: jax.Array) -> Prediction:
        cfg = self.config
        context, slots = split_latent(latent, cfg)
        n_slots = slots.shape[-2]
        x = MLP(cfg.prediction)(jnp.concatenate([context, jnp.mean(slots, axis=-2)], axis=-1))
        zeros = nn.initializers.zeros
        query = nn.Dense(cfg.slot_size, name="query")(x)
        h = SlotMLP(cfg.slot_hidden, name="pointer")(slots, query)
        slot_policy = nn.Dense(1, kernel_init=zeros, name="policy")(h)[..., 0]
        slot_legal = nn.Dense(1, kernel_init=zeros, name="legal")(h)[..., 0]
        slow = nn.Dense(1, kernel_init=zeros, bias_init=nn.initializers.constant(jnp.log(n_slots)),
                        name="slow")(x)
        slow_legal = nn.Dense(1, kernel_init=zeros, name="slow_legal")(x)
        return Prediction(
            policy_logits=jnp.concatenate([slot_policy, slow], axis=-1),
            value_logits=nn.Dense(cfg.support_size, kernel_init=zeros, name="value")(x),
            legal_logits=jnp.concatenate([slot_legal, slow_legal], axis=-1))


@dataclasses.dataclass(frozen=True)
class MuZeroNet:
    """The three networks as pure functions of one parameter pytree."""

    config: NetworkConfig = NetworkConfig()

    def init(self, key: jax.Array, observation: dict[str, jax.Array], n_actions: int) -> Params:
        """Parameters for games with `n_actions` actions (n_actions - 1 slots), shaped by one (batched or
        not) observation."""
        n_slots = observation["slots"].shape[-2]
        if n_actions != n_slots + 1:
            raise ValueError(f"n_actions: {n_actions}, but the observation has {n_slots} slots (+ slow)")
        k_rep, k_dyn, k_pred = jax.random.split(key, 3)
        rep = Representation(self.config).init(k_rep, observation)["params"]
        latent = Representation(self.config).apply({"params": rep}, observation)
        action = jnp.zeros(latent.shape[:-1], jnp.int32)
        dyn = Dynamics(self.config).init(k_dyn, latent, action)["params"]
        pred = PredictionNet(self.config).init(k_pred, latent)["params"]
        return {"representation": rep, "dynamics": dyn, "prediction": pred}

    def represent(self, params: Params, observation: dict[str, jax.Array]) -> jax.Array:
        """Observation -> latent [..., latent_size + n_slots x slot_size]."""
        return Representation(self.config).apply({"params": params["representation"]}, observation)

    def recurrent(self, params: Params, latent: jax.Array, action: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(latent, action) -> (next latent, reward logits [..., support_size])."""
        return Dynamics(self.config).apply({"params": params["dynamics"]}, latent, action)

    def predict(self, params: Params, latent: jax.Array) -> Prediction:
        """Latent -> policy, value and legality logits."""
        return PredictionNet(self.config).apply({"params": params["prediction"]}, latent)
