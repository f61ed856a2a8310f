"""Rollout search over the exact game: the fits, the completion rule, and searched episodes."""

import numpy as np
import pytest

from agent.data.synthesize import synthetic
from agent.game import rules as G
from agent.heuristics.xla_msa import memory_boundedness_order
from agent.muzero import rollout as R
from agent.registry import solve
from harness import load_profile, simulate
from harness.model.mapping import Mapping, validate


def _board(instance, profile, budget=0.5):
    game = G.make_game(instance, profile, budget)
    return game, R.Board.of(game, memory_boundedness_order(game, profile))


def _mapping(game, slots, instance, budget=0.5):
    offsets = {b: int(s) * game.slot_bytes for c, s in enumerate(slots) if s != R.SLOW
               for b in game.candidates.members[c]}
    return Mapping(offsets, len(instance.buffers), instance.name, "rollout", budget)


def test_fits_agree_with_the_scalar_rules():
    rng = np.random.default_rng(0)
    taken = rng.random((200, 24)) < 0.5
    for width in (1, 2, 3, 5):
        for row, best, first, found in zip(taken, *R._fits(taken, width)):
            legal = R.legal_slots(row, width)
            assert found == (len(legal) > 0) and (best if found else R.SLOW) == R.best_fit(row, width)
            assert not found or first == legal[0]


@pytest.mark.parametrize("profile", ["tpu-v4i-cmem", "h100-offload"])
def test_best_fit_completion_of_the_empty_state_is_xla_msa(profile):
    profile = load_profile(profile)
    for seed, n in ((1, 40), (2, 80)):
        instance = synthetic(seed, n, pattern="random")
        game, board = _board(instance, profile)
        C = game.candidates.n
        rows = R.complete(board, np.zeros((C, 2, board.n_words), np.uint64), np.full((2, C), R.SLOW),
                          np.zeros(C, bool), np.arange(2))
        assert _mapping(game, rows[0], instance).offsets == solve(instance, profile, 0.5, policy="xla-msa").offsets
        validate(instance, _mapping(game, rows[1], instance), profile, 0.5)


@pytest.mark.parametrize("profile", ["tpu-v4i-cmem", "h100-offload"])
def test_searched_episodes_are_legal_and_fortified_never_loses_to_xla_msa(profile):
    profile = load_profile(profile)
    for seed in range(3):
        instance = synthetic(seed, 30, pattern=("training", "inference", "random")[seed])
        game, board = _board(instance, profile)
        xla = simulate(instance, solve(instance, profile, 0.5, policy="xla-msa"), profile)
        for fortified in (False, True):
            slots, stats = R.play(game, board, R.RolloutConfig(4, fortified=fortified))
            mapping = _mapping(game, slots, instance)
            validate(instance, mapping, profile, 0.5)
            t = simulate(instance, mapping, profile)
            assert R.times(game, slots[None])[0] == pytest.approx(t, rel=1e-6)
            assert 0 < stats["leaves"] <= 4 * len(R.FITS) * game.candidates.n
            if fortified:
                assert t <= xla * (1 + 1e-6)


def test_simulations_must_be_positive():
    with pytest.raises(ValueError, match="simulations: must be at least 1"):
        R.RolloutConfig(0)


@pytest.mark.parametrize("fortified", [False, True])
def test_a_passed_deadline_stops_after_the_first_decision_with_its_best_episode(fortified):
    profile = load_profile("h100-offload")
    instance = synthetic(4, 40, pattern="random")
    game, board = _board(instance, profile)
    config = R.RolloutConfig(4, fortified=fortified)
    full, full_stats = R.play(game, board, config)
    cut, stats = R.play(game, board, config, deadline=0.0)  # long passed
    assert full_stats["decisions_searched"] == game.candidates.n and stats["decisions_searched"] == 1
    assert stats["leaves"] <= 4 * len(R.FITS) < full_stats["leaves"]
    first = int(board.order[0])
    assert cut[first] == full[first]  # the decision it searched is the one the full search plays
    validate(instance, _mapping(game, cut, instance), profile, 0.5)


def test_the_policys_time_limit_is_its_searchs_deadline():
    instance, profile = synthetic(3, 30), load_profile("tpu-v4i-cmem")
    validate(instance, solve(instance, profile, 0.5, policy="mallocmuzero", time_limit=0.0), profile, 0.5)
    with pytest.raises(ValueError, match="seconds: expected a non-negative number"):
        solve(instance, profile, 0.5, policy="mallocmuzero", time_limit=-1.0)


@pytest.mark.parametrize("n_slots", [1, 63, 64, 65, 111, 128])
def test_packed_plane_round_trip(n_slots):
    bits = np.random.default_rng(n_slots).random((3, 5, n_slots)) < 0.5
    words = R._pack(bits)
    assert words.dtype == np.uint64 and words.shape == (3, 5, -(-n_slots // 64))
    assert np.array_equal(R._unpack(words, n_slots), bits)
    assert np.array_equal(R._unpack(np.bitwise_or.reduce(words, axis=1), n_slots), bits.any(axis=1))


def _plain_place(board, plane, c, slot):
    """Candidate `c`'s rectangle at `slot` on a plain [steps, slots] plane (the plane the rectangles stand for)."""
    if slot != R.SLOW:
        plane[board.start[c]: board.end[c] + 1, slot: slot + board.size[c]] = True


@pytest.mark.parametrize("profile", ["tpu-v4i-cmem", "h100-offload"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_completion_on_rectangles_matches_the_rule_on_a_plain_plane(profile, seed):
    """`complete` against the rule run on a plain steps x slots plane, one candidate and one episode at a time,
    from random boards: a random share of the candidates decided at random legal slots, differently per episode."""
    profile = load_profile(profile)
    instance = synthetic(6 + seed, 60, pattern=("random", "training", "inference")[seed])
    game, board = _board(instance, profile)
    C, L, rng = game.candidates.n, 5, np.random.default_rng(seed)
    plane, slots = np.zeros((L, board.n_steps, board.n_slots), bool), np.full((L, C), R.SLOW)
    rects = np.zeros((C, L, board.n_words), np.uint64)
    decided = np.zeros(C, bool)
    for c in board.order[: int(C * rng.uniform(0.1, 0.6))]:
        for l in range(L):
            taken = plane[l, board.start[c]: board.end[c] + 1].any(axis=0)
            assert np.array_equal(board.taken(rects[:, l: l + 1], c)[0], taken)
            legal = R.legal_slots(taken, int(board.size[c]))
            slot = int(rng.choice(legal)) if len(legal) and rng.random() < 0.7 else R.SLOW
            _plain_place(board, plane[l], c, slot)
            R.place(board, rects[:, l], slots[l], c, slot)
        decided[c] = True
    assert np.array_equal(board.rectangles(slots), rects)
    fit = rng.integers(0, 2, L)
    expected = slots.copy()
    for c in board.base_order:
        if not decided[c]:
            for l in range(L):
                taken = plane[l, board.start[c]: board.end[c] + 1].any(axis=0)
                legal = R.legal_slots(taken, int(board.size[c]))
                slot = R.best_fit(taken, int(board.size[c])) if fit[l] == 0 else (int(legal[0]) if len(legal) else R.SLOW)
                expected[l, c] = slot
                _plain_place(board, plane[l], c, slot)
    assert np.array_equal(R.complete(board, rects, slots, decided, fit), expected)


def test_times_scores_repeated_fast_sets_once_and_in_place():
    profile = load_profile("h100-offload")
    instance = synthetic(2, 30)
    game, board = _board(instance, profile)
    slots, _ = R.play(game, board, R.RolloutConfig(2))
    other = np.full_like(slots, R.SLOW)
    same_set = np.where(slots != R.SLOW, 0, R.SLOW)  # the same fast set at other slots: the same time
    t = R.times(game, np.stack([slots, other, same_set, other]))
    assert t[0] == t[2] and t[1] == t[3] and t[0] < t[1]
    assert t[0] == pytest.approx(R.times(game, slots[None])[0], rel=1e-6)
