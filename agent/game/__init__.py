"""The mallocGame in pure JAX (`rules`): place candidates one at a time, fast at a slot or slow."""

from agent.game.rules import (
    Game, GameSpec, GameState, legal_actions, make_game, n_candidates, observe, pad, play, reset, step, to_mapping,
)

__all__ = ["Game", "GameSpec", "GameState", "legal_actions", "make_game", "n_candidates", "observe", "pad", "play",
           "reset", "step", "to_mapping"]
