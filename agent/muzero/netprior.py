"""A trained network's policy followed along one episode: the prior of the rollout search, and
the network alone (greedy).

`NetworkPolicy` keeps the padded game's state in step with the decisions played (one
jitted call per decision: apply the last action, observe, represent, predict) and
returns the policy logits of the current decision over the unpadded game's actions
(its slots, then "slow").
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import numpy as np

from agent.game import rules as G
from agent.muzero.networks import MuZeroNet, Params
from agent.muzero.search import masked_logits
from agent.muzero.selfplay import GameShape


@functools.partial(jax.jit, static_argnames=("net", "shape"))
def _advance(params: Params, spec: G.GameSpec, state: G.GameState, action: jax.Array, *, net: MuZeroNet,
             shape: GameShape) -> tuple[G.GameState, jax.Array]:
    """The state after `action` (none where `action` < 0) and the masked policy logits there."""
    game = shape.game(spec)
    state = jax.lax.cond(action >= 0, lambda: G.step(game, state, action)[0], lambda: state)
    logits = net.predict(params, net.represent(params, G.observe(game, state))).policy_logits
    return state, masked_logits(logits, G.legal_actions(game, state))


@functools.partial(jax.jit, static_argnames="shape")
def _reset(spec: G.GameSpec, *, shape: GameShape) -> G.GameState:
    """The game's initial state, compiled as one program (run eagerly, its cost model dispatches and
    compiles dozens of small ones: seconds on a cold start)."""
    return G.reset(shape.game(spec))


class NetworkPolicy:
    """The network's logits at each decision of one episode of `game` (unpadded), as played."""

    def __init__(self, params: Params, net: MuZeroNet, game: G.Game, padded: G.Game):
        if padded.n_slots < game.n_slots:
            raise ValueError(f"padded: {padded.n_slots} slots, fewer than the game's {game.n_slots}")
        self._params, self._net, self._padded = params, net, padded
        self._shape = GameShape.of(padded)
        self._state = _reset(padded.spec, shape=self._shape)
        self.n_slots = game.n_slots

    def __call__(self, played: Optional[int]) -> np.ndarray:
        """[n_slots + 1] logits of the current decision after playing `played` (a slot, -1 for slow; None
        at the first decision); illegal actions get a masked logit."""
        action = -1 if played is None else (self._padded.n_slots if played < 0 else played)
        self._state, logits = _advance(self._params, self._padded.spec, self._state, np.int32(action),
                                       net=self._net, shape=self._shape)
        logits = np.asarray(logits)
        return np.concatenate([logits[: self.n_slots], logits[-1:]])


def greedy(policy: NetworkPolicy, n_decisions: int) -> np.ndarray:
    """[decisions] the action (a slot, -1 for slow) the network ranks first at each decision, played."""
    played, out = None, []
    for _ in range(n_decisions):
        logits = policy(played)
        a = int(np.argmax(logits))
        played = -1 if a == policy.n_slots else a
        out.append(played)
    return np.asarray(out)
