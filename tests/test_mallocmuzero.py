"""mallocMuZero: search on a known optimum, training, exact resume, checkpoints, the policy and the CLI."""

import dataclasses
import json
import shutil

import jax
import numpy as np
import pytest

from agent.muzero import checkpoint
from agent.muzero import policy as mallocmuzero
from agent import synthetic
from agent.muzero import trainer
from agent.heuristics.cpsat import solve_cpsat
from agent.data import demos
from agent.data.split import Split
from agent.muzero.policy import candidates
from agent.registry import solve
from agent.muzero.replay import Replay, n_step_values
from agent.muzero.learner import TrainConfig, best_of, init_state, padded_game
from harness import load_profile
from harness import simulate
from harness.cli.main import main
from harness.model.mapping import validate

SPLIT = Split(("synthetic-training-0-30", "synthetic-random-1-30"), ("synthetic-inference-1000-30",))
TINY = TrainConfig(games=4, simulations=4, considered=4, unroll=1, updates=2, batch_size=16, replay_capacity=2000,
                   iterations=3, eval_every=2, profiles=("tpu-v4i-cmem",), budgets=(0.5,), warm_start=2, archive=True,
                   selfplay_learning_rate=1e-3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint after 3 iterations of the tiny config."""
    return trainer.run(TINY, SPLIT, tmp_path_factory.mktemp("ckpt") / "run")


def test_search_finds_the_known_optimum():
    """A 12-buffer instance where cpsat proves the optimum and first-fit misses it: the exact-model
    search (alphazero mode) of untrained networks finds it in the best of 8 episodes."""
    profile, budget = load_profile("tpu-v4i-cmem"), 0.5
    instance = synthetic(3, 12)
    exact = solve_cpsat(instance, profile, budget, time_limit=30)
    assert exact.optimal
    first_fit = simulate(instance, solve(instance, profile, budget, policy="first-fit"), profile)
    assert first_fit > exact.objective_seconds * (1 + 1e-4)
    config = TrainConfig(mode="alphazero", simulations=32, considered=16, games=8)
    _, times = best_of(init_state(config).params, config, padded_game(instance, profile, budget),
                       jax.random.PRNGKey(0), 8)
    assert times.min() == pytest.approx(exact.objective_seconds, rel=1e-5)


@pytest.mark.parametrize("profile", ["tpu-v4i-cmem", "h100-offload"])
def test_a_demonstration_replays_the_teachers_mapping_with_its_return(profile):
    from agent.muzero.networks import reward_scale
    from agent.muzero.learner import demonstration

    instance = synthetic(3, 40)
    prof = load_profile(profile)
    teacher, all_slow = (solve(instance, prof, 0.5, policy=p) for p in ("xla-msa", "all-slow"))
    game = padded_game(instance, profile, 0.5)
    demo = demonstration(game, teacher)
    fast = np.asarray(demo.action)[:, 0] < game.n_slots
    assert fast.sum() == sum(members[0] in teacher.offsets for members in game.candidates.members) > 0
    gain = (simulate(instance, all_slow, prof) - simulate(instance, teacher, prof)) * float(reward_scale(game))
    assert float(demo.value[0, 0]) == pytest.approx(gain, rel=1e-4)          # the return to go of the teacher
    assert np.allclose(np.asarray(demo.policy).sum(-1), 1.0)
    assert np.asarray(demo.legal)[np.arange(len(demo.action)), 0, np.asarray(demo.action)[:, 0]].all()


def test_pointer_head_is_permutation_equivariant_over_slots():
    """Permuting the slot embeddings of a latent permutes the slots' policy and legality logits the same
    way and leaves "slow" and the value unchanged: one set of weights scores every slot."""
    from agent.muzero.networks import join_latent, split_latent

    config = TrainConfig()
    net, params = config.network(), init_state(config).params
    params = jax.jit(lambda p: jax.tree_util.tree_map(  # one program, not one eager op per leaf
        lambda x: x + 0.1 * jax.random.normal(jax.random.PRNGKey(1), x.shape), p))(params)
    latent = jax.random.uniform(jax.random.PRNGKey(2), (3, net.config.latent_size + 128 * net.config.slot_size))
    context, slots = split_latent(latent, net.config)
    perm = np.random.default_rng(0).permutation(slots.shape[-2])
    predict = jax.jit(net.predict)
    base, permuted = (predict(params, join_latent(context, s)) for s in (slots, slots[:, perm]))
    for field in ("policy_logits", "legal_logits"):
        a, b = np.asarray(getattr(base, field)), np.asarray(getattr(permuted, field))
        np.testing.assert_allclose(b[:, :-1], a[:, :-1][:, perm], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(b[:, -1], a[:, -1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(permuted.value_logits), np.asarray(base.value_logits), rtol=1e-5, atol=1e-5)
    assert np.ptp(np.asarray(base.policy_logits)[:, :-1]) > 1e-3  # the slots are told apart


def test_n_step_values():
    reward = np.array([[1.0], [2.0], [3.0]], np.float32)
    value = np.array([[10.0], [20.0], [30.0]], np.float32)
    z = np.asarray(n_step_values(reward, value, td_steps=2, discount=0.5))
    # z0 = 1 + 0.5 * 2 + 0.25 * 30; z1 = 2 + 0.5 * 3 + 0 (past the end); z2 = 3
    np.testing.assert_allclose(z[:, 0], [9.5, 3.5, 3.0])


def test_replay_ring_and_state_round_trip(trained):
    ckpt = checkpoint.load(trained)
    replay = ckpt.replay
    assert replay.size > 0 and replay.added >= replay.size
    again = Replay.from_state(dict(replay.state()))
    key = jax.random.PRNGKey(3)
    a, b = replay.sample(key, 8), again.sample(key, 8)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    with pytest.raises(ValueError, match="empty"):
        Replay(capacity=5).sample(key, 2)


def test_resume_gives_identical_next_steps(trained, tmp_path):
    """Stopping at 3 iterations and resuming to 5 equals training 5 iterations straight."""
    stopped = tmp_path / "stopped"
    shutil.copytree(trained, stopped)
    trainer.resume(stopped, iterations=5)
    straight = trainer.run(dataclasses.replace(TINY, iterations=5), SPLIT, tmp_path / "straight")
    a, b = checkpoint.load(stopped), checkpoint.load(straight)
    assert int(a.state.iteration) == int(b.state.iteration) == 5
    for x, y in zip(jax.tree_util.tree_leaves(a.state), jax.tree_util.tree_leaves(b.state)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    for x, y in zip(jax.tree_util.tree_leaves(a.best), jax.tree_util.tree_leaves(b.best)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert a.info["best"] == b.info["best"] and a.info["archive"] == b.info["archive"]
    rows = trainer.read_curve(stopped)
    assert [r["iteration"] for r in rows] == ["0", "1", "2", "3", "4", "5"]  # 0: the warm start
    assert [r["loss"] for r in rows] == [r["loss"] for r in trainer.read_curve(straight)]
    assert [r["validation_geomean_speedup"] != "" for r in rows] == [True, False, True, True, True, True]


def test_export_ships_the_parameters_kept_by_validation(trained, tmp_path):
    """The run keeps the parameters that scored best on its validation games (training games at budget 0.5)
    and export ships them, without the replay, the archive's episodes or a second copy of the parameters."""
    ckpt = checkpoint.load(trained)
    rows = trainer.read_curve(trained)
    scores = {int(r["iteration"]): float(r["validation_geomean_speedup"]) for r in rows
              if r["validation_geomean_speedup"]}
    assert set(scores) == {0, 2, 3} and ckpt.info["best"]["iteration"] in scores
    assert ckpt.info["best"]["validation_geomean_speedup"] == max(scores.values())
    assert {g.name for g in trainer.validation(trainer.make_games(SPLIT.train, TINY.profiles, TINY.budgets),
                                               SPLIT)} == set(SPLIT.train)
    shipped = checkpoint.load(trainer.export(trained, tmp_path / "shipped"))
    assert shipped.replay is None and shipped.best is None and "archive" not in shipped.info
    for x, y in zip(jax.tree_util.tree_leaves(shipped.state.params), jax.tree_util.tree_leaves(ckpt.best)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_training_says_the_demonstrations_drift_at_setup(monkeypatch):
    monkeypatch.setattr(trainer, "make_games", lambda *args, **kwargs: [])
    monkeypatch.setattr(demos, "fingerprint", lambda profile: {"profile_sha256": "another", "probe_seconds": [1.0]})
    said = []
    trainer._games(TINY, SPLIT, said.append)
    drift = [m for m in said if m.startswith("demonstrations")]
    assert [m.split(": ")[0] for m in drift] == [f"demonstrations {p}@0.5" for p in TINY.profiles for _ in "ab"]
    assert "made under other profile figures" in drift[0] and "made under another cost model" in drift[1]
    said.clear()
    trainer._games(dataclasses.replace(TINY, demonstrations=False), SPLIT, said.append)
    assert not [m for m in said if m.startswith("demonstrations")]


def test_training_writes_curve_and_refuses_to_overwrite(trained):
    assert (trained / "curve.csv").exists() and (trained / "curve.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="already holds a checkpoint"):
        trainer.run(TINY, SPLIT, trained)


def _copy(trained, tmp_path):
    dest = tmp_path / "copy"
    shutil.copytree(trained, dest)
    return dest


def _state_file(path):
    return path / json.loads((path / checkpoint.CONFIG).read_text())["files"]["state"]["file"]


def test_corrupt_state_is_named(trained, tmp_path):
    path = _copy(trained, tmp_path)
    state = _state_file(path)
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF
    state.write_bytes(bytes(data))
    with pytest.raises(checkpoint.CheckpointError, match=f"{state.name}: corrupt"):
        checkpoint.load(path)


def test_missing_and_garbled_config(trained, tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="no such checkpoint directory"):
        checkpoint.load(tmp_path / "nowhere")
    path = _copy(trained, tmp_path)
    (path / checkpoint.CONFIG).write_text('{"format": 1, "config": ')
    with pytest.raises(checkpoint.CheckpointError, match="corrupt JSON"):
        checkpoint.load(path)
    (path / checkpoint.CONFIG).unlink()
    with pytest.raises(checkpoint.CheckpointError, match="config.json is missing"):
        checkpoint.load(path)


def test_missing_state_file(trained, tmp_path):
    path = _copy(trained, tmp_path)
    _state_file(path).unlink()
    with pytest.raises(checkpoint.CheckpointError, match="missing"):
        checkpoint.load(path)


def test_mismatched_checkpoint(trained, tmp_path):
    """A config that names other networks than the state holds fails with a clear message."""
    path = _copy(trained, tmp_path)
    meta = json.loads((path / checkpoint.CONFIG).read_text())
    meta["config"]["preset"] = "full"
    (path / checkpoint.CONFIG).write_text(json.dumps(meta))
    with pytest.raises(checkpoint.CheckpointError, match="does not match the networks of its config"):
        checkpoint.load(path)
    meta["config"]["preset"], meta["config"]["mode"] = "ci", "chess"
    (path / checkpoint.CONFIG).write_text(json.dumps(meta))
    with pytest.raises(checkpoint.CheckpointError, match="bad config.*chess"):
        checkpoint.load(path)


def test_saves_keep_one_state_file(trained, tmp_path):
    path = _copy(trained, tmp_path)
    ckpt = checkpoint.load(path)
    checkpoint.save(path, ckpt.config, ckpt.split, ckpt.state._replace(step=ckpt.state.step + 1), None, {})
    assert len(list(path.glob("state-*.msgpack"))) == 1 and not list(path.glob("replay-*.npz"))
    assert int(checkpoint.load(path).state.step) == int(ckpt.state.step) + 1


def test_mallocmuzero_policy_and_candidates(trained):
    instance, profile = synthetic(5, 40), load_profile("tpu-v4i-cmem")
    mapping = solve(instance, profile, 0.5, policy="mallocmuzero", checkpoint=str(trained), simulations=4)
    assert mapping.policy == "mallocmuzero"
    validate(instance, mapping, profile, 0.5)
    found = candidates(instance, profile, 0.5, k=3, checkpoint_path=str(trained))
    assert 1 <= len(found) <= 3 and len({tuple(sorted(m.offsets.items())) for m in found}) == len(found)
    for m in found:
        validate(instance, m, profile, 0.5)
    times = [simulate(instance, m, profile) for m in found]
    assert times == sorted(times)
    fortified = solve(instance, profile, 0.5, policy="mallocmuzero-fortified", checkpoint=str(trained))
    greedy = solve(instance, profile, 0.5, policy="mallocmuzero-greedy", checkpoint=str(trained))
    validate(instance, greedy, profile, 0.5)
    assert simulate(instance, fortified, profile) <= simulate(instance, solve(instance, profile, 0.5), profile) * (1 + 1e-6)
    assert simulate(instance, mapping, profile) <= simulate(instance, solve(instance, profile, 0.5, "all-slow"),
                                                            profile)


def test_policy_options_are_checked(trained):
    instance, profile = synthetic(5, 20), load_profile("tpu-v4i-cmem")
    with pytest.raises(ValueError, match="policy 'xla-msa' has no option simulations"):
        solve(instance, profile, 0.5, policy="xla-msa", simulations=8)
    with pytest.raises(ValueError, match="simulations: must be at least 1"):
        solve(instance, profile, 0.5, policy="mallocmuzero", checkpoint=str(trained), simulations=0)
    with pytest.raises(checkpoint.CheckpointError, match="no such checkpoint"):
        solve(instance, profile, 0.5, policy="mallocmuzero", checkpoint="/nonexistent/ckpt")


def _error(argv, capsys) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_cli_train_resume_and_eval(tmp_path, capsys, monkeypatch):
    """`train`, `train --resume` and `eval` end to end; the run trains at the tiny sizes (whose programs the
    module's fixture compiled) rather than the ci preset's: the command's path is the same."""
    from agent.muzero import learner

    monkeypatch.setattr(learner, "TrainConfig", lambda **given: dataclasses.replace(TINY, **given))
    split = tmp_path / "split.json"
    split.write_text(json.dumps(SPLIT.to_json()))
    out = tmp_path / "run"
    assert main(["train", "--split", str(split), "--out", str(out), "--iterations", "2", "--no-demonstrations"]) == 0
    assert "2 iterations" in capsys.readouterr().out
    assert main(["train", "--out", str(out), "--resume", "--iterations", "3"]) == 0
    assert int(checkpoint.load(out).state.iteration) == 3
    assert "--mode muzero, not" in _error(["train", "--out", str(out), "--resume", "--mode", "alphazero"], capsys)
    assert "already holds a checkpoint" in _error(["train", "--split", str(split), "--out", str(out)], capsys)
    results = tmp_path / "eval"
    assert main(["eval", "--checkpoint", str(out), "--profile", "tpu-v4i-cmem", "--budget", "0.5",
                 "--cpsat-time-limit", "2", "--out", str(results)]) == 0
    table = (results / "run-tpu-v4i-cmem-0.5.csv").read_text().splitlines()
    assert table[0] == "instance,split,policy,simulated_seconds,optimal,seconds"
    assert len(table) == 1 + 6 * len(SPLIT.held_out)
    summary = json.loads((results / "run-tpu-v4i-cmem-0.5.json").read_text())
    assert summary["n_instances"] == len(SPLIT.held_out)
    times = {(r.split(",")[0], r.split(",")[2]): float(r.split(",")[3]) for r in table[1:]}
    for name in SPLIT.held_out:    # the proven bound is below every policy's time
        assert times[name, "cpsat-bound"] <= min(times[name, p] for p in ("cpsat", "xla-msa", "mallocmuzero")) * (1 + 1e-6)
    assert summary["geomean_speedup_bound_vs_xla_msa"] >= 1.0
    for key in ("geomean_speedup_vs_xla_msa", "share_no_worse_than_xla_msa", "mean_gap_to_optimum",
                "share_of_room_captured", "geomean_speedup_greedy_vs_xla_msa", "share_no_worse_fortified_than_xla_msa"):
        assert key in summary
    assert summary["share_no_worse_fortified_than_xla_msa"] == 1.0  # fortified: never slower than xla-msa


@pytest.mark.parametrize("argv, message", [
    (["eval", "--profile", "tpu-v4i-cmem", "--budget", "1.5"], "--budget must be a fraction of peak live bytes in (0, 1]"),
    (["eval", "--checkpoint", "/nonexistent", "--profile", "tpu-v4i-cmem"], "no such checkpoint directory"),
    (["train", "--resume", "--out", "/nonexistent/run"], "no such checkpoint directory"),
    (["train", "--minutes", "0"], "--minutes must be positive"),
])
def test_cli_bad_input(argv, message, capsys):
    assert message in _error(argv, capsys)


def test_bad_split_file(tmp_path, capsys):
    bad = tmp_path / "split.json"
    bad.write_text(json.dumps({"train": ["synthetic-training-0-30"], "held_out": ["no-such-workload@ci"]}))
    assert "no-such-workload@ci" in _error(["train", "--split", str(bad), "--out", str(tmp_path / "r")], capsys)
    bad.write_text(json.dumps({"train": [], "held_out": []}))
    assert "'train' is empty" in _error(["train", "--split", str(bad), "--out", str(tmp_path / "r")], capsys)


def test_shipped_checkpoint_solves_from_the_cli(tmp_path, capsys):
    """`mallocbench solve --policy mallocmuzero` works on a fresh clone with the shipped checkpoint."""
    instance = tmp_path / "inst.json"
    instance.write_text(synthetic(7, 30).to_json())
    out = tmp_path / "mz.map.json"
    assert main(["solve", str(instance), "--policy", "mallocmuzero", "--profile", "tpu-v4i-cmem", "--budget", "0.5",
                 "--simulations", "8", "-o", str(out)]) == 0
    assert "mallocmuzero" in capsys.readouterr().out
    shipped = checkpoint.load(mallocmuzero.SHIPPED)
    assert shipped.replay is None and "agent/checkpoints" not in str(shipped.split.train)
    assert not set(shipped.split.held_out) & set(shipped.split.train)
    assert any(n.startswith("alphatensor-") for n in shipped.split.held_out)
