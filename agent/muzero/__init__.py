"""mallocMuZero: networks, search, self-play, replay, training and the policy that plays a checkpoint."""

from agent.muzero.checkpoint import Checkpoint, CheckpointError
from agent.muzero.learner import TrainConfig
from agent.muzero.policy import SHIPPED, candidates, load_agent, play

__all__ = ["SHIPPED", "Checkpoint", "CheckpointError", "TrainConfig", "candidates", "load_agent", "play"]
