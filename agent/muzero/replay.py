"""Training targets from self-play trajectories, and the replay buffer that holds them.

`unroll_targets(trajectory, unroll, td_steps, discount)` turns a batch of episodes
([T, B] time-major, `agent.muzero.selfplay.Trajectory`) into one `Sample` per position: the
observation there and, for the `unroll` steps that follow, the actions taken, the
rewards, the n-step value targets (`td_steps` rewards, then the search's value,
zero past the end of the episode), the search policies and the legal masks, with a
mask of the steps that lie inside the episode.

`Replay` is a ring of samples in NumPy arrays. Only positions where the game had a
choice (a legal slot besides "slow") are kept: the others teach nothing.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Sample(NamedTuple):
    """Training data of one position (or a batch of them, leading axis)."""

    observation: dict  # the observation at the position
    action: jax.Array  # [K] actions taken at the position and after it
    reward: jax.Array  # [K] their rewards (networks' units)
    value: jax.Array  # [K + 1] n-step value targets
    policy: jax.Array  # [K + 1, A] search policies
    legal: jax.Array  # [K + 1, A] the real game's legal actions
    mask: jax.Array  # [K + 1] 1 where the step lies inside the episode


def n_step_values(reward: jax.Array, value: jax.Array, td_steps: int, discount: float) -> jax.Array:
    """[T, B] z_t = sum_{i < n} discount^i r_{t+i} + discount^n v_{t+n}, zero past the end. With `td_steps`
    at least the episode's length T this is the Monte-Carlo return (no bootstrap)."""
    t = reward.shape[0]
    if td_steps >= t:
        return jax.lax.scan(lambda g, r: (r + discount * g, r + discount * g), jnp.zeros_like(reward[0]),
                            reward, reverse=True)[1]
    r = jnp.concatenate([reward, jnp.zeros((td_steps,) + reward.shape[1:], reward.dtype)])
    v = jnp.concatenate([value, jnp.zeros((td_steps,) + value.shape[1:], value.dtype)])
    z = discount ** td_steps * v[td_steps: td_steps + t]
    for i in range(td_steps):
        z = z + discount ** i * r[i: i + t]
    return z


@functools.partial(jax.jit, static_argnames=("unroll", "td_steps", "discount"))
def unroll_targets(trajectory, unroll: int, td_steps: int, discount: float) -> tuple[Sample, jax.Array]:
    """One `Sample` per [T, B] position, and [T, B] whether the position offered a choice."""
    t = trajectory.action.shape[0]
    z = n_step_values(trajectory.reward, trajectory.value, td_steps, discount)

    def window(x, k):  # x[t + k] for every t, zeros past the end
        pad = jnp.zeros((k,) + x.shape[1:], x.dtype)
        return jnp.concatenate([x[k:], pad])[:t]

    steps = range(unroll + 1)

    def stack(xs, like):  # [T, B, len(xs), ...]; an empty axis when there is no unroll
        return jnp.stack(xs, axis=2) if xs else jnp.zeros(like.shape[:2] + (0,) + like.shape[2:], like.dtype)

    inside = jnp.arange(t)[:, None] + jnp.arange(unroll + 1)[None, :] < t  # [T, K+1]
    sample = Sample(
        observation=trajectory.observation,
        action=stack([window(trajectory.action, k) for k in steps[:-1]], trajectory.action),
        reward=stack([window(trajectory.reward, k) for k in steps[:-1]], trajectory.reward),
        value=jnp.stack([window(z, k) for k in steps], axis=2),
        policy=jnp.stack([window(trajectory.policy, k) for k in steps], axis=2),
        legal=jnp.stack([window(trajectory.legal, k) for k in steps], axis=2),
        mask=jnp.broadcast_to(inside[:, None, :], trajectory.action.shape + (unroll + 1,)).astype(jnp.float32))
    choice = jnp.any(trajectory.legal[..., :-1], axis=-1)
    return sample, choice


@dataclasses.dataclass
class Replay:
    """A ring buffer of samples (NumPy arrays with a leading capacity axis)."""

    capacity: int
    data: dict = dataclasses.field(default_factory=dict)  # flattened Sample leaves by path
    size: int = 0
    cursor: int = 0
    added: int = 0  # samples ever added

    def add(self, trajectory, unroll: int, td_steps: int, discount: float) -> int:
        """Add the positions of a self-play batch that offered a choice; returns how many."""
        flat = choice_samples(trajectory, unroll, td_steps, discount)
        n = added = len(flat["mask"])
        if n == 0:
            return 0
        if n > self.capacity:
            flat, n = {k: v[-self.capacity:] for k, v in flat.items()}, self.capacity
        if not self.data:
            self.data = {k: np.zeros((self.capacity,) + v.shape[1:], v.dtype) for k, v in flat.items()}
        index = (self.cursor + np.arange(n)) % self.capacity
        for k, v in flat.items():
            self.data[k][index] = v
        self.cursor = int((self.cursor + n) % self.capacity)
        self.size = min(self.capacity, self.size + n)
        self.added += added
        return added

    @classmethod
    def of(cls, parts: list[dict]) -> Replay:
        """A full buffer of exactly the samples of `parts` (each `choice_samples`' output), in order."""
        parts = [p for p in parts if len(p["mask"])]
        if not parts:
            return cls(1)
        data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        n = len(data["mask"])
        return cls(n, data, n, 0, n)

    def sample(self, key: jax.Array, batch: int) -> Sample:
        """`batch` samples drawn uniformly (with replacement) by `key`."""
        if self.size == 0:
            raise ValueError("the replay buffer is empty")
        index = np.asarray(jax.random.randint(key, (batch,), 0, self.size))
        return _unflatten({k: jnp.asarray(v[index]) for k, v in self.data.items()})

    def state(self) -> dict[str, np.ndarray]:
        """Everything the buffer holds, as named arrays (for `numpy.savez`)."""
        meta = np.array([self.capacity, self.size, self.cursor, self.added], np.int64)
        return {"meta": meta, **{f"data/{k}": v[: self.size] for k, v in self.data.items()}}

    @classmethod
    def from_state(cls, arrays) -> Replay:
        """The buffer of `state()`."""
        capacity, size, cursor, added = (int(x) for x in arrays["meta"])
        data = {}
        for k in arrays:
            if k.startswith("data/"):
                filled = np.asarray(arrays[k])
                data[k[len("data/"):]] = np.concatenate(
                    [filled, np.zeros((capacity - len(filled),) + filled.shape[1:], filled.dtype)])
        return cls(capacity, data, size, cursor, added)


def choice_samples(trajectory, unroll: int, td_steps: int, discount: float) -> dict[str, np.ndarray]:
    """The samples (`unroll_targets`) of the positions of `trajectory` that offered a choice, as flat NumPy
    leaves with a leading sample axis."""
    sample, choice = unroll_targets(trajectory, unroll, td_steps, discount)
    keep = np.asarray(choice).reshape(-1)
    n_positions = keep.shape[0]
    return {k: np.asarray(v).reshape((n_positions,) + v.shape[2:])[keep] for k, v in _leaves(sample).items()}


def _leaves(sample: Sample) -> dict[str, jax.Array]:
    out = {f"observation/{k}": v for k, v in sample.observation.items()}
    out.update({f: getattr(sample, f) for f in Sample._fields if f != "observation"})
    return out


def _unflatten(flat: dict) -> Sample:
    obs = {k[len("observation/"):]: v for k, v in flat.items() if k.startswith("observation/")}
    return Sample(observation=obs, **{f: flat[f] for f in Sample._fields if f != "observation"})
