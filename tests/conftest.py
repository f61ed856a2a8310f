"""Fixtures of the whole suite: one JAX compilation cache that the tests share."""

import jax
import pytest


@pytest.fixture(scope="session", autouse=True)
def shared_compilation_cache(tmp_path_factory):
    """JAX's persistent compilation cache in a directory of this session, on from the first test: a program that
    several tests compile (the agent's search, self-play, update and networks, the game's steps) is compiled
    once and loaded after. The same programs run; only XLA's work is shared. It is set in this process alone
    (no environment variable), so subprocesses start with the cache they would have had; what the harness
    compiles without the cache (measurement, dumps: `without_persistent_cache`) still compiles. The session's
    own directory keeps the suite off the user's cache (`agent.muzero.compile_cache.enable` keeps a cache the
    process set)."""
    before = jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax-cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    yield
    jax.config.update("jax_compilation_cache_dir", before[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", before[1])
