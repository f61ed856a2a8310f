"""mallocbench agents: the mallocGame, the mapping policies and mallocMuZero.

Layers, each importing only those before it: `game` (the rules), `data` (instances to
train on), `heuristics` (policies that are not learned), `muzero` (the learned agent),
`registry` (every policy behind `solve`), `evaluation` (an agent against the others).
"""

from agent.data.synthesize import synthetic
from agent.game.rules import Game, GameState, legal_actions, make_game, observe, play, reset, step, to_mapping
from agent.heuristics.xla_msa import memory_boundedness
from agent.muzero.policy import candidates
from agent.registry import policies, solve

__all__ = [
    "Game", "GameState", "candidates", "legal_actions", "make_game", "memory_boundedness", "observe", "play", "policies",
    "reset", "solve", "step", "synthetic", "to_mapping",
]
