"""The results store: runs, their tables (parquet part files written once) and their artifacts."""

from harness.results import store

__all__ = ["store"]
