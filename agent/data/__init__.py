"""The agents' data: seeded synthetic instances and the train / held-out split."""

from agent.data.split import Split, default_split, load, read_split
from agent.data.synthesize import synthetic

__all__ = ["Split", "default_split", "load", "read_split", "synthetic"]
