"""The `mallocmuzero` policies: a trained checkpoint's network playing the instance's game.

- `mallocmuzero`: rollout search (`agent.muzero.rollout`) over the exact game. The network's
  policy proposes the slots the search scores beside the placement rules' slots; every
  action is chosen by the exact returns of the completed episodes (leaves) it scored.
- `mallocmuzero-fortified`: the same search, fortified (it keeps the best episode scored
  so far): never slower than the completion of the empty state, which is xla-msa's
  mapping; reported under its own name.
- `mallocmuzero-greedy`: the network alone, each decision its most likely legal action.

`candidates(instance, profile, budget, k)` gives the distinct mappings of these three,
fastest (simulated) first: the top-K to hand to `harness.select`, which measures them and
keeps the fastest on the hardware. The shipped checkpoint (`SHIPPED`) is used unless
another is named. The first play turns on JAX's persistent compilation cache
(`agent.muzero.compile_cache`): a fresh process then loads the programs an earlier
one compiled.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Optional

import numpy as np

from agent.game.rules import make_game
from agent.heuristics.xla_msa import memory_boundedness_order
from agent.muzero import checkpoint, compile_cache, rollout
from agent.muzero.learner import pad_game
from agent.muzero.netprior import NetworkPolicy, greedy
from harness.model.mapping import Mapping
from harness.model.profiles import Profile
from harness.model.simulator import simulate
from harness.xla.instance import Instance

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "ci"
SIMULATIONS = 8  # leaves scored per decision by default
MODES = ("search", "fortified", "greedy")


@functools.lru_cache(maxsize=4)
def load_agent(path: Optional[str] = None) -> checkpoint.Checkpoint:
    """The checkpoint at `path` (default: the shipped one), without its replay buffer."""
    return checkpoint.load(Path(path) if path else SHIPPED, with_replay=False)


def play(instance: Instance, profile: Profile, budget: float, mode: str = "search",
         simulations: Optional[int] = None, checkpoint_path: Optional[str] = None,
         seconds: Optional[float] = None) -> tuple[Mapping, dict]:
    """The mapping the checkpoint's network plays in `mode` (`MODES`), and counts of what the search did.

    `seconds` (None: no limit) bounds the searching modes' wall time from this call on: the rollout stops at
    that deadline with its best episode so far (`rollout.play`; its first decision is always searched, and
    loading the checkpoint and compiling count). The network alone (greedy) takes no limit."""
    start = time.perf_counter()
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    if seconds is not None and not seconds >= 0:
        raise ValueError(f"seconds: expected a non-negative number of seconds or None, got {seconds!r}")
    compile_cache.enable()
    agent = load_agent(str(checkpoint_path) if checkpoint_path else None)
    game = make_game(instance, profile, budget)
    policy = NetworkPolicy(agent.state.params, agent.config.network(), game, pad_game(game))
    board = rollout.Board.of(game, memory_boundedness_order(game, profile))
    if mode == "greedy":
        slots, stats = np.full(game.candidates.n, rollout.SLOW), {"leaves": 0, "kept_incumbent": 0}
        slots[board.order] = greedy(policy, game.candidates.n)
    else:
        config = rollout.RolloutConfig(SIMULATIONS if simulations is None else simulations,
                                       fortified=mode == "fortified")
        slots, stats = rollout.play(game, board, config, policy, None if seconds is None else start + seconds)
    offsets = {b: int(s) * game.slot_bytes for c, s in enumerate(slots) if s != rollout.SLOW
               for b in game.candidates.members[c]}
    return Mapping(offsets, len(instance.buffers), instance.name, "mallocmuzero", budget), stats


def candidates(instance: Instance, profile: Profile, budget: float, k: int = 3, simulations: Optional[int] = None,
               checkpoint_path: Optional[str] = None, policy: str = "mallocmuzero") -> list[Mapping]:
    """Up to `k` distinct mappings of the agent's modes (search, fortified, greedy), fastest (simulated) first."""
    if k < 1:
        raise ValueError(f"k: must be at least 1, got {k}")
    found = [play(instance, profile, budget, m, simulations, checkpoint_path)[0] for m in MODES]
    found.sort(key=lambda m: simulate(instance, m, profile))
    out, seen = [], set()
    for m in found:
        key = tuple(sorted(m.offsets.items()))
        if key not in seen:
            seen.add(key)
            out.append(Mapping(m.offsets, m.n_buffers, m.instance, policy, budget))
    return out[:k]
