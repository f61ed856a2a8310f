"""Benchmarks of mallocMuZero at the CI preset (`make bench`; once each, as smoke tests, under `make test`).

- search simulations per second: one Gumbel MuZero search over a batch of 8 states;
- self-play game steps per second: a batch of 8 searched episodes under jit;
- rollout search leaves per second: one episode of the `mallocmuzero` policy's search (`agent.muzero.rollout`);
- `agent.solve(..., policy="mallocmuzero")` on a program outside the suite (the gradient of a 6-layer MLP, extracted
  with `harness.extract`): warm (in this process, after a first solve) and cold (the first solve of a fresh process,
  with JAX's persistent compilation cache empty, then filled by an earlier process; marked slow: not in `make test`).
"""

import functools
import os
import subprocess
import sys

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
from agent import solve
from harness import load_profile
from harness.model.mapping import validate

BATCH = 8


@pytest.mark.parametrize("mode", ["muzero", "alphazero"])
def test_search_simulations_per_second(benchmark, mode):
    config = TrainConfig(mode=mode)
    game = padded_game(synthetic(0, 100), "tpu-v4i-cmem", 0.5)
    params, net = init_state(config).params, config.network()
    states = jax.vmap(lambda _: G.reset(game))(np.arange(BATCH))
    search = jax.jit(functools.partial(run_search, net=net, game=game, config=config.search()))
    key = jax.random.PRNGKey(0)
    if benchmark.enabled:  # compile outside the timing (disabled, the one call below compiles and runs)
        jax.block_until_ready(search(params, states=states, key=key))
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
    if benchmark.enabled:  # compile outside the timing (disabled, the one call below compiles and runs)
        play()
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
    if benchmark.enabled:  # compile the cost model outside the timing
        rollout.play(game, board, config)
    benchmark.group = "mallocmuzero rollout search"
    slots, stats = benchmark.pedantic(lambda: rollout.play(game, board, config), rounds=2)
    if benchmark.stats:
        benchmark.extra_info["leaves_per_second"] = stats["leaves"] / benchmark.stats.stats.median
    assert slots.shape == (game.candidates.n,) and stats["leaves"] >= game.candidates.n


OUTSIDE = """
import time, jax, jax.numpy as jnp, numpy as np
from harness import extract, load_profile
from harness.model.mapping import validate

def mlp6_grad(ws, x):
    def loss(ws):
        h = x
        for w in ws:
            h = jax.nn.relu(h @ w)
        return (h ** 2).sum()
    return jax.grad(loss)(ws)

r = np.random.default_rng(0)
instance = extract(mlp6_grad, [jnp.asarray(r.standard_normal((256, 256)), jnp.float32) * 0.05 for _ in range(6)],
                   jnp.asarray(r.standard_normal((128, 256)), jnp.float32), name="mlp6-grad")
profile = load_profile("tpu-v4i-cmem")
"""
COLD = OUTSIDE + """
import sys
from agent import solve
print("ready", flush=True)
sys.stdin.readline()
mapping = solve(instance, profile, 0.5, policy="mallocmuzero")
validate(instance, mapping, profile, 0.5)
print("solved", flush=True)
"""


def _fresh_process(cache) -> subprocess.Popen:
    """A fresh Python process with the outside program extracted and `agent` imported, its compilation cache
    `cache`, waiting for a line on stdin to solve (the process's start and imports stay out of the timing)."""
    env = {**os.environ, "MALLOCBENCH_JAX_CACHE": str(cache)}
    proc = subprocess.Popen([sys.executable, "-c", COLD], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _solve_in(proc: subprocess.Popen) -> str:
    """Ask `proc` to solve; its answer once done."""
    proc.stdin.write("go\n")
    proc.stdin.flush()
    answer = proc.stdout.readline().strip()
    proc.wait(timeout=60)
    return answer


@pytest.mark.slow
@pytest.mark.parametrize("cache", ["empty", "filled"])
def test_cold_solve_outside_the_suite(benchmark, tmp_path, cache):
    if cache == "filled":
        assert _solve_in(_fresh_process(tmp_path)) == "solved"  # an earlier process fills the cache
    benchmark.group = "mallocmuzero solve"
    answer = benchmark.pedantic(_solve_in, setup=lambda: ((_fresh_process(tmp_path),), {}), rounds=1)
    assert answer == "solved"  # the mapping passed validate in the fresh process


def test_warm_solve_outside_the_suite(benchmark):
    scope = {}
    exec(OUTSIDE, scope)  # noqa: S102 -- the program text the cold benchmark runs in a fresh process
    instance, profile = scope["instance"], scope["profile"]
    if benchmark.enabled:  # compile outside the timing
        solve(instance, profile, 0.5, policy="mallocmuzero")
    benchmark.group = "mallocmuzero solve"
    mapping = benchmark.pedantic(lambda: solve(instance, profile, 0.5, policy="mallocmuzero"), rounds=3)
    validate(instance, mapping, profile, 0.5)
