"""The archive of best episodes: a game's demonstration is replaced only by an episode that is faster."""

import dataclasses

import numpy as np
import pytest

from agent import synthetic
from agent.heuristics.cpsat import solve_cpsat
from agent.muzero.archive import Archive
from agent.muzero.learner import demonstration, padded_game
from agent.muzero.replay import n_step_values
from agent.registry import solve
from harness import load_profile

UNROLL, TD = 2, 4


@dataclasses.dataclass(frozen=True)
class Game:
    game: object
    demo: object


@pytest.fixture(scope="module")
def setup():
    """A 12-buffer game whose teacher (first-fit) is slower than CP-SAT's proven optimum."""
    profile, budget, instance = load_profile("tpu-v4i-cmem"), 0.5, synthetic(3, 12)
    game = padded_game(instance, profile, budget)
    teacher = demonstration(game, solve(instance, profile, budget, policy="first-fit"))
    optimum = demonstration(game, solve_cpsat(instance, profile, budget, time_limit=30).mapping)
    return game, teacher, optimum


def _actions(trajectory):
    return np.asarray(trajectory.action)[:, 0]


def test_only_a_faster_episode_replaces_the_demonstration(setup):
    game, teacher, optimum = setup
    archive = Archive([Game(game, teacher), Game(game, None)], UNROLL, TD, 1.0)
    first = archive.seconds[0]
    assert np.isinf(archive.seconds[1]) and archive.replay.size == archive._parts[0]["mask"].shape[0]
    slow = np.full_like(_actions(teacher), game.n_slots)
    assert not archive.offer(0, slow, 0.0)  # claims to be fast, replays slower: refused
    assert not archive.offer(0, _actions(teacher), first)  # as fast: refused
    assert archive.seconds[0] == first and not archive.actions
    before = archive.replay
    assert archive.offer(0, _actions(optimum), 0.0)
    assert archive.seconds[0] < first * (1 - 1e-4)  # first-fit misses the optimum by more than that
    assert archive.summary()["archive_improved"] == 1 and archive.summary()["archive_geomean_gain"] > 1.0
    # the replay now teaches the new episode's actions, and no longer the teacher's
    taught = np.asarray(archive.replay.data["policy"])[:, 0].argmax(-1)
    choice = np.asarray(optimum.legal)[:, 0, :-1].any(-1)
    assert list(taught) == list(_actions(optimum)[choice])
    assert before is not archive.replay
    assert not archive.offer(0, _actions(optimum), archive.seconds[0])  # no better than itself


def test_the_archive_restores_its_entries(setup):
    game, teacher, optimum = setup
    archive = Archive([Game(game, teacher)], UNROLL, TD, 1.0)
    archive.offer(0, _actions(optimum), 0.0)
    again = Archive([Game(game, teacher)], UNROLL, TD, 1.0)
    again.restore(archive.state())
    assert again.seconds[0] == archive.seconds[0]
    assert all(np.array_equal(again.replay.data[k], archive.replay.data[k]) for k in archive.replay.data)
    worse = Archive([Game(game, optimum)], UNROLL, TD, 1.0)
    with pytest.raises(ValueError, match="game 0"):
        worse.restore({"0": _actions(teacher).tolist()})


def test_long_td_steps_are_the_monte_carlo_return():
    reward = np.array([[1.0], [2.0], [3.0]], np.float32)
    value = np.full_like(reward, 100.0)
    assert np.allclose(n_step_values(reward, value, 8, 1.0)[:, 0], [6.0, 5.0, 3.0])
    assert np.allclose(n_step_values(reward, value, 8, 0.5)[:, 0], [1 + 1 + 0.75, 2 + 1.5, 3.0])
