"""The mallocGame: legality, rewards that sum to the simulator's improvement, batching."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.game import rules as G
from agent import synthetic
from harness import Profile, validate
from harness import simulate


def profile(model: str) -> Profile:
    return Profile(name=f"test-{model}", description="test", backend="cpu", memory_model=model,
                   fast_capacity_bytes=1 << 34, granule_bytes=256, fast_bandwidth=1e12, slow_bandwidth=1e11,
                   copy_bandwidth=2e10, flop_rate=1e13, vector_flop_rate=1e13, transcendental_rate=1e12, op_overhead_seconds=2e-7,
                   realizable=False, sources={})


def _random_episode(game, seed):
    return jax.jit(functools.partial(G.play, game, lambda k, g, s, legal: jax.random.categorical(
        k, jnp.where(legal, 0.0, -jnp.inf))))(jax.random.key(seed))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(2, 40), model=st.sampled_from(["direct", "offload"]),
       budget=st.sampled_from([0.25, 0.5, 0.75]))
def test_rewards_sum_to_the_simulated_improvement(seed, n, model, budget):
    instance = synthetic(seed, n)
    prof = profile(model)
    game = G.make_game(instance, prof, budget)
    state, rewards = _random_episode(game, seed)
    mapping = G.to_mapping(game, state, instance, "random", budget)
    validate(instance, mapping, prof, budget)
    all_slow = simulate(instance, G.to_mapping(game, G.reset(game), instance), prof)
    final = simulate(instance, mapping, prof)
    total = float(np.sum(np.asarray(rewards, dtype=np.float64)))
    assert total == pytest.approx(all_slow - final, rel=1e-5, abs=1e-12 * all_slow)
    assert float(state.time) == final  # the same bits: the game prices with simulate's cost model


def test_illegal_actions_are_masked_and_never_applied():
    instance = synthetic(3, 30)
    game = G.make_game(instance, profile("direct"), 0.25)
    state = G.reset(game)
    step = jax.jit(functools.partial(G.step, game))
    legal_fn = jax.jit(functools.partial(G.legal_actions, game))
    for _ in range(game.candidates.n):
        legal = np.asarray(legal_fn(state))
        assert legal[-1], "slow is always legal"
        illegal = np.flatnonzero(~legal)
        if illegal.size:
            after, reward, _ = step(state, jnp.int32(illegal[0]))
            assert float(reward) == 0.0 and int(after.offset[G.current(game, state)]) == -1
        state, _, _ = step(state, jnp.int32(np.flatnonzero(legal)[0]))
    validate(instance, G.to_mapping(game, state, instance, budget=0.25), profile("direct"), 0.25)


def test_batched_games_match_single_games():
    instance = synthetic(5, 25)
    game = G.make_game(instance, profile("offload"), 0.5)
    keys = jax.random.split(jax.random.key(0), 4)
    play = functools.partial(G.play, game, lambda k, g, s, legal: jax.random.categorical(
        k, jnp.where(legal, 0.0, -jnp.inf)))
    states, rewards = jax.jit(jax.vmap(play))(keys)
    for i in range(4):
        single_state, single_rewards = jax.jit(play)(keys[i])
        np.testing.assert_array_equal(np.asarray(rewards[i]), np.asarray(single_rewards))
        np.testing.assert_array_equal(np.asarray(states.offset[i]), np.asarray(single_state.offset))
        assert float(states.time[i]) == float(single_state.time)


def test_observation_shapes():
    instance = synthetic(1, 20)
    game = G.make_game(instance, profile("direct"), 0.5)
    obs = jax.jit(functools.partial(G.observe, game))(G.reset(game))
    assert obs["candidates"].shape == (G.LOOKAHEAD, G.N_FEATURES + 1)
    assert obs["occupancy"].shape == G.PICTURE
    assert obs["slots"].shape == (game.n_slots, G.N_SLOT_FEATURES)
    assert obs["progress"].shape == (G.N_PROGRESS,) and obs["profile"].shape == (G.N_PROFILE,)
    assert all(np.all(np.isfinite(np.asarray(v))) for v in obs.values())


@pytest.mark.parametrize("model", ["direct", "offload"])
def test_marginal_gain_is_simulates_difference(model):
    """After a few decisions, the observed gain of the current candidate is what simulate says placing
    it fast (at a legal slot) saves from the mapping so far, as a share of the all-slow time."""
    instance, prof = synthetic(4, 12), profile(model)
    game = G.make_game(instance, prof, 0.5)
    state = G.reset(game)
    for _ in range(3):
        state, _, _ = G.step(game, state, jnp.int32(np.flatnonzero(np.asarray(G.legal_actions(game, state)))[0]))
    slot = int(np.flatnonzero(np.asarray(G.legal_actions(game, state)))[0])
    assert slot < game.n_slots, "the test needs a candidate that fits"
    placed, _, _ = G.step(game, state, jnp.int32(slot))
    before, after = (simulate(instance, G.to_mapping(game, s, instance), prof) for s in (state, placed))
    all_slow = simulate(instance, G.to_mapping(game, G.reset(game), instance), prof)
    gain = float(G.marginal_gain(game, state))
    assert gain == pytest.approx((before - after) / all_slow, rel=1e-4, abs=1e-7)
    assert gain > 0.0


def test_slot_features_on_a_planted_plane():
    """Slots 0-2 taken, 3-7 free, 8 taken, 9 to the end free: a candidate of width w at slot 4 falls in the
    run of 5 free slots (3-7), wastes 5 - w, leaves 1 slot below and 4 - w above; at slot 3 it is the
    best fit (the smallest run, lowest slot)."""
    instance = synthetic(6, 20)
    game = G.make_game(instance, profile("direct"), 0.5)
    state = G.reset(game)
    c, width = int(G.current(game, state)), 2
    game = game._replace(spec=game.spec._replace(slots=game.spec.slots.at[c].set(width)))  # a narrow candidate
    start, n = int(game.spec.start[c]), game.n_slots
    assert n > 20, "the plane below needs room"
    busy = np.full(n, -1, np.int32)
    busy[[0, 1, 2, 8]] = start + 5  # taken through the candidate's start
    state = state._replace(busy_until=jnp.asarray(busy))
    f = np.asarray(G.slot_features(game, state))
    legal, run, waste, below, above, best = f[:, 0], f[:, 2] * n, f[:, 3] * n, f[:, 4] * n, f[:, 5] * n, f[:, 6]
    assert legal[:3].sum() == 0 and legal[8] == 0 and legal[3] == 1
    np.testing.assert_allclose([run[4], waste[4], below[4], above[4]], [5, 5 - width, 1, 4 - width], atol=1e-5)
    np.testing.assert_allclose([run[9], waste[9]], [n - 9, n - 9 - width], atol=1e-4)
    assert best[3] == 1 and best.sum() == 1
    rank = f[:, 7] * G.RANK_CAP  # best-fit order: the run of 5 (slots 3-6 fit), then the long run from 9, by slot
    np.testing.assert_allclose(rank[[3, 4, 5, 6, 9, 10, 9 + G.RANK_CAP]], [0, 1, 2, 3, 4, 5, G.RANK_CAP], atol=1e-5)
    assert np.all(f[legal == 0][:, 2:] == 0), "an illegal slot leaves nothing"
    assert f[3, 8] == 1 and f[n - width, 9] == 1  # the first and the last legal slot


def test_decision_order_is_by_start_then_size():
    instance = synthetic(2, 30)
    game = G.make_game(instance, profile("direct"), 0.5)
    order = np.asarray(game.spec.order)
    keys = [(game.candidates.start[c], -game.candidates.bytes[c]) for c in order]
    assert keys == sorted(keys)


def test_less_than_one_slot_of_fast_memory_leaves_everything_slow():
    import dataclasses

    from agent import solve

    coarse = dataclasses.replace(profile("direct"), granule_bytes=1 << 30)
    instance = synthetic(4, 12)
    mapping = solve(instance, coarse, 0.5, policy="first-fit")
    validate(instance, mapping, coarse, 0.5)
    assert mapping.offsets == {}
