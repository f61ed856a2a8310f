"""mallocbench agents: the mallocGame and the mapping policies."""

from agent.game import Game, GameState, legal_actions, make_game, observe, play, reset, step, to_mapping
from agent.policies import memory_boundedness, policies, solve
from agent.synthetic import synthetic

__all__ = [
    "Game", "GameState", "legal_actions", "make_game", "memory_boundedness", "observe", "play", "policies",
    "reset", "solve", "step", "synthetic", "to_mapping",
]
