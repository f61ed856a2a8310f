"""The agent's persistent compilation cache: where it goes, off when asked, a cache the process set is kept, and
XLA dumps are never served from it."""

from pathlib import Path

import jax

from agent.muzero import compile_cache as CC


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(CC.CACHE_ENV, "off")
    assert CC.cache_dir() is None
    monkeypatch.setenv(CC.CACHE_ENV, str(tmp_path / "mine"))
    assert CC.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(CC.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert CC.cache_dir() == tmp_path / "mallocbench" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert CC.cache_dir() == Path.home() / ".cache" / "mallocbench" / "jax"


def test_enable_keeps_the_processs_own_cache_and_is_off_when_asked(monkeypatch, tmp_path):
    before = jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs
    try:
        jax.config.update("jax_compilation_cache_dir", str(tmp_path / "theirs"))
        CC.enable.cache_clear()
        monkeypatch.setenv(CC.CACHE_ENV, str(tmp_path / "ours"))
        assert CC.enable() == str(tmp_path / "theirs")
        assert not (tmp_path / "ours").exists()
        jax.config.update("jax_compilation_cache_dir", None)
        CC.enable.cache_clear()
        monkeypatch.setenv(CC.CACHE_ENV, "off")
        assert CC.enable() is None and jax.config.jax_compilation_cache_dir is None
        CC.enable.cache_clear()
        monkeypatch.setenv(CC.CACHE_ENV, str(tmp_path / "ours"))
        assert CC.enable() == str(tmp_path / "ours") == jax.config.jax_compilation_cache_dir
        assert (tmp_path / "ours").is_dir()
    finally:
        jax.config.update("jax_compilation_cache_dir", before[0])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", before[1])
        CC.enable.cache_clear()


def test_a_dump_compile_is_never_loaded_from_the_persistent_cache(tmp_path):
    """The cache's key leaves XLA's dump flags out: with the cache on and the program compiled into it
    before, `compile_with_dump` must still compile (and so dump) it."""
    import jax.numpy as jnp
    from jax._src import compilation_cache

    from harness.xla.dump import compile_with_dump

    def f(x):
        return jnp.tanh(x @ x.T).sum(axis=0) * 3.0 + 0.125

    x = jnp.ones((24, 40))
    before = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
    jax.config.update("jax_compilation_cache_dir", str(tmp_path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    compilation_cache.reset_cache()
    try:
        jax.jit(f).lower(x).compile()
        assert any(tmp_path.iterdir()), "the program was not written to the cache, so the test proves nothing"
        for _ in range(2):
            _, dump = compile_with_dump(f, x)
            assert dump.sequence and dump.sizes
        assert jax.config.jax_enable_compilation_cache  # the cache is on again after the dump
    finally:
        jax.config.update("jax_compilation_cache_dir", before[0])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", before[1])
        compilation_cache.reset_cache()
