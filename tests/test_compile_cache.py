"""The agent's persistent compilation cache: where it goes, off when asked, and a cache the process set is kept."""

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
