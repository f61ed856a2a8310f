"""JAX's persistent compilation cache for the agent's programs.

Playing a game compiles a handful of programs (the network's step, the game's
reset, the rollout's batched cost model: their shapes are bucketed, so games of
similar sizes share them) and, before those, a few dozen small ones. Compiling
them is most of a first `agent.solve(..., policy="mallocmuzero")` in a fresh
process (seconds on a 2-core CPU); with JAX's persistent compilation cache a
fresh process loads the programs an earlier one compiled instead.

`enable()` turns the cache on at the first play, in `CACHE_ENV`'s directory or
else `~/.cache/mallocbench/jax` (`$XDG_CACHE_HOME` honoured), and caches every
program whatever its compile time (the agent's each take under JAX's default
threshold of one second). It leaves a cache directory the process already set
(``JAX_COMPILATION_CACHE_DIR`` or ``jax.config``) as it is, and does nothing
when `CACHE_ENV` is ``off``. The cache is trusted code: keep it private to the
user (JAX's warning), as the default directory is.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Optional

import jax

CACHE_ENV = "MALLOCBENCH_JAX_CACHE"  # a directory, or "off"


def cache_dir() -> Optional[Path]:
    """The directory `enable` would use: `CACHE_ENV`'s, else the user's cache directory; None when off."""
    chosen = os.environ.get(CACHE_ENV, "")
    if chosen.lower() == "off":
        return None
    if chosen:
        return Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mallocbench" / "jax"


@functools.lru_cache(maxsize=1)
def enable() -> Optional[str]:
    """Turn JAX's persistent compilation cache on (once per process; module docstring); the directory in
    use, None when off."""
    current = jax.config.jax_compilation_cache_dir
    if current:
        return str(current)  # the process chose its own cache: keep it
    path = cache_dir()
    if path is None:
        return None
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return str(path)
