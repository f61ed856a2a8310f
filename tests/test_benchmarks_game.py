"""Benchmarks of the game and the cost model (`make bench`; once each, as smoke tests, under `make test`).

- game steps per second: a batch of 256 games stepped under jit, vmap and lax.scan;
- simulate() calls per second, one mapping at a time and a batch of 256 under vmap;
- how both scale with the number of buffers (100, 200, 400, 800);
- cpsat's time to optimality by instance size;
- how long a synthetic instance takes to build (goal: under 0.5 s for 800 buffers).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agent.game import rules as G
from agent import synthetic
from agent.heuristics.cpsat import solve_cpsat
from agent.registry import solve
from harness import load_profile
from harness import simulate
from harness.model.costmodel import total_time
from harness.model.simulator import cost_tables, fast_mask

# 400 and 800 buffers are marked slow: `make bench` runs them, `make test` does not.
SIZES = (100, 200, pytest.param(400, marks=pytest.mark.slow), pytest.param(800, marks=pytest.mark.slow))
BATCH = 256
PROFILES = ("tpu-v4i-cmem", "h100-offload")


def _random_choice(key, game, state, legal):
    return jax.random.categorical(key, jnp.where(legal, 0.0, -jnp.inf))


@pytest.mark.parametrize("profile_name", PROFILES)
@pytest.mark.parametrize("n_buffers", SIZES)
def test_game_steps_per_second(benchmark, profile_name, n_buffers):
    instance = synthetic(0, n_buffers)
    game = G.make_game(instance, load_profile(profile_name), 0.5)
    episodes = jax.jit(jax.vmap(functools.partial(G.play, game, _random_choice)))
    keys = jax.random.split(jax.random.key(0), BATCH)
    if benchmark.enabled:  # compile outside the timing (disabled, the one call below compiles and runs)
        jax.block_until_ready(episodes(keys))
    benchmark.group = f"game {profile_name}"
    benchmark.extra_info["steps_per_round"] = BATCH * game.candidates.n
    states, rewards = benchmark.pedantic(lambda: jax.block_until_ready(episodes(keys)), rounds=3)
    steps_per_second = BATCH * game.candidates.n / benchmark.stats.stats.median if benchmark.stats else None
    benchmark.extra_info["game_steps_per_second"] = steps_per_second
    assert np.all(np.isfinite(np.asarray(rewards)))


@pytest.mark.parametrize("profile_name", PROFILES)
@pytest.mark.parametrize("n_buffers", SIZES)
@pytest.mark.parametrize("batched", [False, True], ids=["single", "batch256"])
def test_simulate_calls_per_second(benchmark, profile_name, n_buffers, batched):
    instance = synthetic(1, n_buffers)
    profile = load_profile(profile_name)
    mapping = solve(instance, profile, 0.5, policy="xla-msa")
    benchmark.group = f"simulate {profile_name} {'batch of 256' if batched else 'single'}"
    if batched:
        cands, tables = cost_tables(instance, profile)
        masks = jnp.asarray(np.random.default_rng(0).integers(0, 2, (BATCH, len(fast_mask(instance, mapping, cands)))),
                            jnp.float32)
        batch = jax.jit(jax.vmap(lambda m: total_time(tables, m, profile.memory_model == "offload")))
        jax.block_until_ready(batch(masks))
        times = benchmark(lambda: jax.block_until_ready(batch(masks)))
        assert times.shape == (BATCH,)
    else:
        simulate(instance, mapping, profile)
        assert benchmark(simulate, instance, mapping, profile) > 0


@pytest.mark.parametrize("n_buffers", [10, 20, 30, 40])
def test_cpsat_time_to_optimality(benchmark, n_buffers):
    instance = synthetic(2, n_buffers)
    profile = load_profile("tpu-v4i-cmem")
    hint = solve(instance, profile, 0.5, policy="xla-msa")
    benchmark.group = "cpsat to optimality (tpu-v4i-cmem, budget 0.5)"
    result = benchmark.pedantic(solve_cpsat, args=(instance, profile, 0.5),
                                kwargs={"time_limit": 60.0, "hint": hint}, rounds=1)
    benchmark.extra_info["candidates"] = len({b.alias_group for b in instance.buffers})
    benchmark.extra_info["optimal"] = result.optimal
    assert result.optimal


@pytest.mark.parametrize("pattern", ["training", "random"])
def test_synthetic_instance_build(benchmark, pattern):
    benchmark.group = "synthetic instance, 800 buffers"
    instance = benchmark(synthetic, 11, 800, pattern=pattern)
    assert len(instance.buffers) == 800
