"""Episodes replayed as demonstrations, and the archive of the best episode known per training game.

`episode(game, actions)` replays a sequence of actions in a game and returns it as a one-episode
trajectory whose policy targets are those actions (one-hot) and whose values are the returns to go,
with the final state's simulated seconds: a demonstration of the teacher's mapping, or of a
self-play episode.

`Archive` is self-imitation (expert iteration with a best-so-far memory): per training game it
holds the best episode known, at first the teacher's demonstration; a self-play episode that ends
with a lower simulated time (the game's own seconds) replaces it, so the demonstrations the
learner keeps replaying get better than the teacher wherever the agent's search beat it. Only
episodes the agent played itself ever replace a demonstration.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from agent.game import rules as G
from agent.muzero.networks import reward_scale
from agent.muzero.replay import Replay, choice_samples
from agent.muzero.selfplay import GameShape, Trajectory

IMPROVEMENT = 1e-6  # relative decrease of the simulated time that counts as a better episode (float32 noise below)


def episode(game: G.Game, actions) -> tuple[Trajectory, float]:
    """`actions` (one per candidate, in the game's order; an action the game refuses is recorded as "slow")
    played in `game`: the one-episode trajectory ([T, 1]) and the final simulated seconds."""
    trajectory, seconds = _episode(game.spec, jnp.asarray(actions, jnp.int32), shape=GameShape.of(game))
    return trajectory, float(seconds)


@functools.partial(jax.jit, static_argnames=("shape",))
def _episode(spec, actions, *, shape: GameShape):
    game = shape.game(spec)

    def body(state, action):
        obs, legal = G.observe(game, state), G.legal_actions(game, state)
        action = jnp.where(legal[action], action, game.n_slots)
        state, reward, _ = G.step(game, state, action)
        return state, (obs, action, jax.nn.one_hot(action, game.n_actions), reward * reward_scale(game), legal)

    final, (obs, action, policy, reward, legal) = jax.lax.scan(body, G.reset(game), actions)
    value = jnp.cumsum(reward[::-1])[::-1]
    trajectory = jax.tree_util.tree_map(lambda x: x[:, None], Trajectory(obs, action, policy, reward, value, legal))
    return trajectory, final.time


class Archive:
    """The best episode known of each game of a list of training games (objects with `game` and `demo`, a
    teacher's trajectory or None), its simulated seconds, and a replay of them all (`replay`)."""

    def __init__(self, games, unroll: int, td_steps: int, discount: float):
        self._games = [g.game for g in games]
        self._targets = (unroll, td_steps, discount)
        self._parts, teacher = [], []
        for g in games:
            if g.demo is None:
                self._parts.append(None)
                teacher.append(np.inf)
                continue
            actions = np.asarray(g.demo.action)[:, 0]
            self._parts.append(choice_samples(g.demo, *self._targets))
            teacher.append(episode(g.game, actions)[1])
        self.teacher = np.array(teacher, np.float64)  # seconds of each game's teacher episode (inf: none)
        self.seconds = self.teacher.copy()  # seconds of each game's best episode known
        self.actions: dict[int, np.ndarray] = {}  # game index -> actions of the self-play episode that is its best
        self.replay = self._rebuild()

    def offer(self, index: int, actions, seconds: float) -> bool:
        """Keep `actions` (a self-play episode of game `index` that ended at `seconds`) as that game's best
        episode if it is faster than the best known by more than `IMPROVEMENT`; returns whether it was."""
        if not seconds < self.seconds[index] * (1.0 - IMPROVEMENT):
            return False
        actions = np.asarray(actions, np.int32)
        trajectory, replayed = episode(self._games[index], actions)
        if not replayed < self.seconds[index] * (1.0 - IMPROVEMENT):
            return False
        self.actions[index] = actions
        self.seconds[index] = replayed
        self._parts[index] = choice_samples(trajectory, *self._targets)
        self.replay = self._rebuild()
        return True

    def summary(self) -> dict:
        """Games where self-play beat the teacher, and the geometric-mean and largest speedups over it there."""
        better = sorted(self.actions)
        gain = self.teacher[better] / self.seconds[better]
        return {"archive_improved": len(better),
                "archive_geomean_gain": float(np.exp(np.mean(np.log(gain)))) if better else 1.0,
                "archive_max_gain": float(gain.max()) if better else 1.0}

    def state(self) -> dict:
        """The archive's self-play entries (JSON-able): game index -> actions."""
        return {str(i): a.tolist() for i, a in sorted(self.actions.items())}

    def restore(self, entries: dict) -> None:
        """Put back the entries of `state()`."""
        for i, actions in entries.items():
            if not self.offer(int(i), actions, -np.inf):
                raise ValueError(f"archive: the saved episode of game {i} is no better than its teacher's")

    def _rebuild(self) -> Replay:
        return Replay.of([p for p in self._parts if p is not None])
