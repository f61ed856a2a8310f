"""mallocbench agents: the mallocGame, the mapping policies and mallocMuZero."""

from agent.game import Game, GameState, legal_actions, make_game, observe, play, reset, step, to_mapping
from agent.policies import memory_boundedness, policies, solve
from agent.synthetic import synthetic
from agent.mallocmuzero import candidates  # noqa: E402  (after policies: it imports them lazily)

__all__ = [
    "Game", "GameState", "candidates", "legal_actions", "make_game", "memory_boundedness", "observe", "play", "policies",
    "reset", "solve", "step", "synthetic", "to_mapping",
]
