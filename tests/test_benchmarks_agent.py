"""Benchmarks of mallocMuZero at the CI preset (`make bench`; once each, as smoke tests, under `make test`).

- search simulations per second: one Gumbel MuZero search over a batch of 8 states;
- self-play game steps per second: a batch of 8 searched episodes under jit;
- rollout search leaves per second: one episode of the `mallocmuzero` policy's search (`agent.muzero.rollout`).
"""

import functools

import jax
import numpy as np
import pytest

from agent.game import rules as G
from agent import synthetic
from agent.heuristics.xla_msa import memory_boundedness_order
from agent.muzero import rollout
from agent.muzero.search import run_search
from agent.muzero.selfplay import self_play
from agent.muzero.learner import TrainConfig, init_state, padded_game
from harness import load_profile

BATCH = 8


@pytest.mark.parametrize("mode", ["muzero", "alphazero"])
def test_search_simulations_per_second(benchmark, mode):
    config = TrainConfig(mode=mode)
    game = padded_game(synthetic(0, 100), "tpu-v4i-cmem", 0.5)
    params, net = init_state(config).params, config.network()
    states = jax.vmap(lambda _: G.reset(game))(np.arange(BATCH))
    search = jax.jit(functools.partial(run_search, net=net, game=game, config=config.search()))
    key = jax.random.PRNGKey(0)
    jax.block_until_ready(search(params, states=states, key=key))  # compile outside the timing
    benchmark.group = "mallocmuzero search"
    out = benchmark.pedantic(lambda: jax.block_until_ready(search(params, states=states, key=key)), rounds=5)
    if benchmark.stats:
        benchmark.extra_info["simulations_per_second"] = BATCH * config.simulations / benchmark.stats.stats.median
    assert np.all(np.asarray(G.legal_actions(game, G.reset(game)))[np.asarray(out.action)])


@pytest.mark.parametrize("mode", ["muzero", "alphazero"])
def test_self_play_steps_per_second(benchmark, mode):
    config = TrainConfig(mode=mode)
    game = padded_game(synthetic(0, 100), "tpu-v4i-cmem", 0.5)
    params, net = init_state(config).params, config.network()
    key = jax.random.PRNGKey(0)
    play = lambda: jax.block_until_ready(self_play(params, net, game, key, config.search(), BATCH))  # noqa: E731
    play()  # compile outside the timing
    benchmark.group = "mallocmuzero self-play"
    trajectory, final = benchmark.pedantic(play, rounds=3)
    steps = BATCH * G.n_candidates(game)
    if benchmark.stats:
        benchmark.extra_info["game_steps_per_second"] = steps / benchmark.stats.stats.median
    assert trajectory.action.shape == (G.n_candidates(game), BATCH)
    assert np.all(np.asarray(final.k) == G.n_candidates(game))


@pytest.mark.parametrize("simulations", [8, 64])
def test_rollout_leaves_per_second(benchmark, simulations):
    profile = load_profile("tpu-v4i-cmem")
    game = G.make_game(synthetic(0, 100), profile, 0.5)
    board = rollout.Board.of(game, memory_boundedness_order(game, profile))
    config = rollout.RolloutConfig(simulations)
    rollout.play(game, board, config)  # compile the cost model outside the timing
    benchmark.group = "mallocmuzero rollout search"
    slots, stats = benchmark.pedantic(lambda: rollout.play(game, board, config), rounds=2)
    if benchmark.stats:
        benchmark.extra_info["leaves_per_second"] = stats["leaves"] / benchmark.stats.stats.median
    assert slots.shape == (game.candidates.n,) and stats["leaves"] >= game.candidates.n
