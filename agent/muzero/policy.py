"""The `mallocmuzero` policy: a trained checkpoint plays the instance's game with search.

`candidates(instance, profile, budget, ...)` plays `episodes` searched episodes (Gumbel
noise makes them differ) and returns the distinct mappings, fastest first by the
simulator: the top-K to hand to `harness.select`, which measures them and keeps the
fastest on the hardware. `solve_mallocmuzero` keeps the first, the best of K by
simulated time. The shipped checkpoint (`SHIPPED`) is used unless another is named.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional

import jax
import numpy as np

from agent.muzero import checkpoint
from agent.game.rules import to_mapping
from agent.muzero.learner import best_of, padded_game
from harness.xla.instance import Instance
from harness.model.mapping import Mapping
from harness.model.profiles import Profile

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "ci"
EPISODES = 8


@functools.lru_cache(maxsize=4)
def load_agent(path: Optional[str] = None) -> checkpoint.Checkpoint:
    """The checkpoint at `path` (default: the shipped one), without its replay buffer."""
    return checkpoint.load(Path(path) if path else SHIPPED, with_replay=False)


def candidates(instance: Instance, profile: Profile, budget: float, k: int = 4, episodes: int = EPISODES,
               simulations: Optional[int] = None, checkpoint_path: Optional[str] = None, seed: int = 0,
               policy: str = "mallocmuzero") -> list[Mapping]:
    """Up to `k` distinct mappings from `episodes` searched episodes, fastest (simulated) first."""
    if k < 1 or episodes < 1:
        raise ValueError(f"k and episodes must be at least 1, got k={k}, episodes={episodes}")
    if simulations is not None and simulations < 1:
        raise ValueError(f"simulations: must be at least 1, got {simulations}")
    agent = load_agent(str(checkpoint_path) if checkpoint_path else None)
    game = padded_game(instance, profile, budget)
    final, times = best_of(agent.state.params, agent.config, game, jax.random.PRNGKey(seed), episodes, simulations)
    offsets = np.asarray(final.offset)
    seen, out = set(), []
    for i in np.argsort(times, kind="stable"):
        key = offsets[i].tobytes()
        if key in seen:
            continue
        seen.add(key)
        state = jax.tree_util.tree_map(lambda x: x[i], final)
        out.append(to_mapping(game, state, instance, policy, budget))
        if len(out) == k:
            break
    return out


def solve_mallocmuzero(instance: Instance, profile: Profile, budget: float, seed: int = 0,
                       time_limit: Optional[float] = None, simulations: Optional[int] = None,
                       checkpoint_path: Optional[str] = None, episodes: int = EPISODES) -> Mapping:
    """The best of `episodes` searched episodes by simulated time (`time_limit` is not used)."""
    del time_limit
    return candidates(instance, profile, budget, 1, episodes, simulations, checkpoint_path, seed)[0]
