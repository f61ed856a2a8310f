"""Training mallocMuZero by self-play: the loss, one update, one iteration, and the loop.

A run starts from a teacher: `warm_start` gradient steps on the demonstrations alone
(each training game played as its best known mapping places it, `teacher`). Then one
iteration plays a batch of episodes of one training game (round robin over the
training instances x profiles x budgets, in a seeded order) with search, adds them
to the replay buffer and takes `updates` gradient steps on samples from it, a share
`demo_share` of each batch drawn from the demonstrations (kept in a replay of their own).

The loss is MuZero's over `unroll` steps of the learned dynamics (0 in alphazero
mode, whose search uses the exact game): at each step the policy's cross-entropy
with the search policy, the value's and (below the root) the reward's with the
two-hot targets on the support, and the legality head's binary cross-entropy with
the real game's mask, masked past the end of the episode; the latent's gradient is
halved at each unroll step as MuZero does.

Everything a run needs to go on exactly where it stopped is in `TrainState` and the
`Replay` (see `agent.checkpoint`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from agent.game import rules as G
from agent.data import demos
from agent.data.split import Split, load
from agent.data.synthesize import synthetic
from agent.heuristics.cpsat import solve_cpsat
from agent.heuristics.xla_msa import xla_msa_of_game
from agent.muzero.archive import Archive, episode
from agent.muzero.networks import MuZeroNet, NetworkConfig, Params, scalar_to_support
from agent.muzero.replay import Replay, Sample
from agent.muzero.search import MODES, SearchConfig, masked_logits
from agent.muzero.selfplay import GameShape, Trajectory, self_play
from harness.model.mapping import check_budget
from harness.model.profiles import load_profile
from harness.model.simulator import simulate


MONTE_CARLO = 512  # td_steps at least every padded game's episode length: value targets are exact returns


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (with the data `Split`)."""

    preset: str = "ci"  # network preset (`NetworkConfig.preset`)
    mode: str = "muzero"  # search model: "muzero" (learned) or "alphazero" (exact game)
    profiles: tuple[str, ...] = ("tpu-v4i-cmem", "h100-offload")
    budgets: tuple[float, ...] = (0.25, 0.5, 0.75)
    games: int = 8  # episodes per self-play batch (and per solve)
    simulations: int = 16
    considered: int = 16  # Gumbel MuZero's max_num_considered_actions
    unroll: int = 5  # dynamics steps in the loss (0 in alphazero mode)
    td_steps: int = MONTE_CARLO  # n of the n-step value targets; MONTE_CARLO: the episode's exact return
    discount: float = 1.0
    batch_size: int = 128
    updates: int = 8  # gradient steps per iteration
    learning_rate: float = 2e-3
    replay_capacity: int = 20000
    iterations: int = 3000
    eval_every: int = 50  # iterations between held-out evaluations (0: none)
    seed: int = 0
    demonstrations: bool = True  # learn from the teacher's episodes: a warm start, then a share of each batch
    warm_start: int = 2000  # gradient steps on the demonstrations alone before self-play
    demo_share: float = 0.9  # share of each self-play batch drawn from the demonstrations
    selfplay_learning_rate: Optional[float] = 4e-4  # Adam's step size after the warm start (None: learning_rate)
    archive: bool = True  # self-imitation: a self-play episode faster than a game's best known replaces its demo

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode: unknown search mode {self.mode!r}; valid modes: {', '.join(MODES)}")
        NetworkConfig.preset(self.preset)
        for b in self.budgets:
            check_budget(b, "budgets: each")
        for name in ("games", "simulations", "considered", "td_steps", "batch_size", "updates",
                     "replay_capacity", "iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if self.unroll < 0 or self.eval_every < 0 or self.warm_start < 0:
            raise ValueError("unroll, eval_every and warm_start must not be negative")
        if not 0.0 <= self.demo_share < 1.0:
            raise ValueError(f"demo_share: must be in [0, 1), got {self.demo_share}")
        if self.selfplay_learning_rate is not None and not self.selfplay_learning_rate > 0:
            raise ValueError(f"selfplay_learning_rate: must be positive, got {self.selfplay_learning_rate}")

    @property
    def demo_batch(self) -> int:
        """Samples of each self-play batch drawn from the demonstrations (0 without them)."""
        return int(round(self.demo_share * self.batch_size)) if self.demonstrations else 0

    @property
    def unroll_steps(self) -> int:
        """Unroll of the loss: `unroll`, or 0 in alphazero mode."""
        return 0 if self.mode == "alphazero" else self.unroll

    def search(self, simulations: Optional[int] = None) -> SearchConfig:
        """The search of self-play (or of solving, with another number of simulations)."""
        return SearchConfig(num_simulations=simulations or self.simulations,
                            max_num_considered_actions=self.considered, mode=self.mode, discount=self.discount)

    def network(self) -> MuZeroNet:
        """The networks of this run."""
        return MuZeroNet(NetworkConfig.preset(self.preset))


class TrainState(NamedTuple):
    """Parameters, optimizer state, counters and the random key of a run."""

    params: Params
    opt_state: optax.OptState
    iteration: jax.Array  # iterations done
    step: jax.Array  # gradient steps done
    episodes: jax.Array  # self-play episodes played
    key: jax.Array  # raw uint32 key (jax.random.PRNGKey)


@dataclasses.dataclass(frozen=True)
class TrainGame:
    """A training or evaluation game with xla-msa's simulated seconds (the baseline)."""

    name: str
    profile: str
    budget: float
    game: G.Game
    xla_msa: float
    demo: Optional[Trajectory] = None  # the teacher's episode, where the run learns from demonstrations
    best: Optional[float] = None  # simulated seconds of the best known mapping (the room's top), where known


def padded_game(instance, profile, budget: float) -> G.Game:
    """The game of `instance` on `profile` (a Profile or its name) in the agents' fixed action
    space, decisions padded to a power of two."""
    return pad_game(G.make_game(instance, load_profile(profile) if isinstance(profile, str) else profile, budget))


def pad_game(game: G.Game) -> G.Game:
    """`game` in the agents' fixed action space, decisions padded to a power of two (at least 32)."""
    return G.pad(game, G.MAX_SLOTS, max(32, 1 << (G.n_candidates(game) - 1).bit_length()))


@functools.lru_cache(maxsize=1)
def reference_game() -> G.Game:
    """A small padded game: every padded game has its observation shapes and actions, so it
    shapes the networks of any run."""
    return padded_game(synthetic(0, 10), "tpu-v4i-cmem", 0.5)


def make_games(names, profiles, budgets, demonstrations: bool = False,
               best_time_limit: Optional[float] = None) -> list[TrainGame]:
    """Every (instance, profile, budget) game of `names`, with xla-msa's time, the teacher's episode and time
    (`demonstrations`: `teacher`) and, given `best_time_limit` (seconds), the best of xla-msa and CP-SAT within it."""
    out = []
    for p in profiles:
        profile = load_profile(p)
        for b in budgets:
            known = known_mappings(profile, b) if demonstrations else {}
            for name in names:
                instance = load(name)
                game = G.make_game(instance, profile, b)
                baseline = xla_msa_of_game(game, instance, profile, b)
                game = pad_game(game)
                seconds = simulate(instance, baseline, profile)
                best, demo = None, None
                if demonstrations:
                    mapping, best = teacher(instance, profile, (baseline, seconds), known.get(name))
                    demo = demonstration(game, mapping)
                if best_time_limit is not None:
                    found = solve_cpsat(instance, profile, b, time_limit=best_time_limit, hint=baseline)
                    best = min(seconds, simulate(instance, found.mapping, profile))
                out.append(TrainGame(name, p, b, game, seconds, demo, best))
    return out


def known_mappings(profile, budget: float) -> dict:
    """Instance name -> the best known mapping's `agent.data.demos.Demo` at (profile, budget); none where no
    demonstrations of them were made."""
    try:
        return demos.load(profile, budget).by_instance()
    except demos.DemoError:
        if not demos.demo_path(profile.name, budget).exists():
            return {}
        raise


def teacher(instance, profile, baseline: tuple, known: Optional[demos.Demo]) -> tuple:
    """(mapping, simulated seconds) of the teacher of a training game: the best known mapping (`known`,
    CP-SAT's) where it simulates faster than xla-msa's (`baseline`: its mapping and seconds), else xla-msa's."""
    if known is None:
        return baseline
    mapping = known.mapping(instance, baseline[0].budget)
    seconds = simulate(instance, mapping, profile)
    return (mapping, seconds) if seconds < baseline[1] else baseline


def demonstration(game: G.Game, mapping) -> Trajectory:
    """A one-episode trajectory of `game` that places each candidate where `mapping` puts it (a teacher's
    moves): its policy targets are the teacher's actions and its values the returns to go, so that replaying
    it pulls the networks toward the teacher. An action the game refuses is recorded as "slow"."""
    slot = np.full(G.n_candidates(game), game.n_slots, np.int32)
    for c, members in enumerate(game.candidates.members):
        offset = mapping.offsets.get(members[0])
        if offset is not None:
            slot[c] = offset // game.slot_bytes
    return episode(game, jnp.asarray(slot)[game.spec.order])[0]


def optimizer(config: TrainConfig, learning_rate: Optional[float] = None) -> optax.GradientTransformation:
    """Adam with global-norm clipping, at `learning_rate` (default: the config's); every step size has the
    same optimizer state."""
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(learning_rate or config.learning_rate))


def init_state(config: TrainConfig) -> TrainState:
    """A fresh run's state."""
    game = reference_game()
    key, init_key = jax.random.split(jax.random.PRNGKey(config.seed))
    params = config.network().init(init_key, G.observe(game, G.reset(game)), game.n_actions)
    zero = jnp.int32(0)
    return TrainState(params, optimizer(config).init(params), zero, zero, zero, key)


def loss(params: Params, batch: Sample, net: MuZeroNet, unroll: int) -> tuple[jax.Array, dict]:
    """MuZero's loss of a batch of samples, and its parts."""
    support = net.config.support_size
    latent = net.represent(params, batch.observation)
    parts = {"policy": 0.0, "value": 0.0, "reward": 0.0, "legal": 0.0}
    for k in range(unroll + 1):
        mask = batch.mask[:, k]
        scale = 1.0 if k == 0 else 1.0 / unroll
        pred = net.predict(params, latent)
        terms = {
            "policy": optax.softmax_cross_entropy(pred.policy_logits, batch.policy[:, k]),
            "value": optax.softmax_cross_entropy(pred.value_logits, scalar_to_support(batch.value[:, k], support)),
            "legal": jnp.mean(optax.sigmoid_binary_cross_entropy(
                pred.legal_logits, batch.legal[:, k].astype(jnp.float32)), axis=-1),
        }
        for name, term in terms.items():
            parts[name] = parts[name] + scale * jnp.mean(mask * term)
        if k < unroll:
            latent, reward_logits = net.recurrent(params, latent, batch.action[:, k])
            reward = optax.softmax_cross_entropy(reward_logits, scalar_to_support(batch.reward[:, k], support))
            parts["reward"] = parts["reward"] + jnp.mean(mask * reward) / unroll
            latent = 0.5 * latent + 0.5 * jax.lax.stop_gradient(latent)
    total = parts["policy"] + 0.25 * parts["value"] + parts["reward"] + parts["legal"]
    return total, parts


def make_update(config: TrainConfig, learning_rate: Optional[float] = None) -> Callable:
    """The jitted gradient step at `learning_rate` (default: the config's):
    (params, opt_state, batch) -> (params, opt_state, loss, parts)."""
    net, opt, unroll = config.network(), optimizer(config, learning_rate), config.unroll_steps

    @jax.jit
    def update(params, opt_state, batch):
        (value, parts), grads = jax.value_and_grad(loss, has_aux=True)(params, batch, net, unroll)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value, parts

    return update


def game_order(config: TrainConfig, n_games: int) -> np.ndarray:
    """The seeded round-robin order of the training games."""
    return np.random.default_rng(config.seed).permutation(n_games)


def demo_replay(games: list[TrainGame], config: TrainConfig) -> Replay:
    """The demonstrations of `games` (their teacher's episodes) in a replay of their own."""
    demos = Replay(config.replay_capacity)
    for g in games:
        if g.demo is not None:
            demos.add(g.demo, config.unroll_steps, config.td_steps, config.discount)
    return demos


def archive_of(games: list[TrainGame], config: TrainConfig) -> Optional[Archive]:
    """The archive of best episodes of `games`, starting from their teachers' (None unless `config.archive` and
    `config.demonstrations`)."""
    if not (config.archive and config.demonstrations):
        return None
    return Archive(games, config.unroll_steps, config.td_steps, config.discount)


def mixed_sample(key: jax.Array, replay: Replay, demos: Replay, batch: int, from_demos: int) -> Sample:
    """`batch` samples: `from_demos` of them from `demos` (none if it is empty), the rest from `replay`."""
    if from_demos == 0 or demos.size == 0:
        return replay.sample(key, batch)
    k_play, k_demo = jax.random.split(key)
    parts = [replay.sample(k_play, batch - from_demos), demos.sample(k_demo, from_demos)]
    return jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), *parts)


def warm_start(state: TrainState, demos: Replay, config: TrainConfig, update: Callable) -> tuple[TrainState, dict]:
    """`config.warm_start` gradient steps on the demonstrations alone (none without any)."""
    if demos.size == 0 or config.warm_start == 0:
        return state, {}
    key, *sample_keys = jax.random.split(state.key, 1 + config.warm_start)
    params, opt_state, losses = state.params, state.opt_state, []
    for k in sample_keys:
        params, opt_state, value, _ = update(params, opt_state, demos.sample(k, config.batch_size))
        losses.append(float(value))
    state = state._replace(params=params, opt_state=opt_state, step=state.step + config.warm_start, key=key)
    return state, {"iteration": 0, "step": int(state.step), "episodes": 0, "game": "warm start",
                   "loss": float(np.mean(losses[-config.updates:]))}


def iterate(state: TrainState, replay: Replay, games: list[TrainGame], config: TrainConfig,
            update: Callable, demos: Optional[Replay] = None,
            archive: Optional[Archive] = None) -> tuple[TrainState, dict]:
    """One self-play batch and `updates` gradient steps (a share of each batch from `demos`, or with an
    `archive` from its best episodes, which the batch's fastest episode may improve); returns the new
    state and its metrics."""
    i = int(state.iteration)
    index = int(game_order(config, len(games))[i % len(games)])
    g = games[index]
    key, play_key, *sample_keys = jax.random.split(state.key, 2 + config.updates)
    trajectory, final = self_play(state.params, config.network(), g.game, play_key, config.search(), config.games)
    replay.add(trajectory, config.unroll_steps, config.td_steps, config.discount)
    times = np.asarray(final.time, np.float64)
    if archive is not None:
        best = int(np.argmin(times))
        archive.offer(index, np.asarray(trajectory.action)[:, best], float(times[best]))
        demos = archive.replay
    demos = demos if demos is not None else Replay(1)
    params, opt_state, losses = state.params, state.opt_state, []
    for k in sample_keys:
        batch = mixed_sample(k, replay, demos, config.batch_size, config.demo_batch)
        params, opt_state, value, _ = update(params, opt_state, batch)
        losses.append(float(value))
    state = TrainState(params, opt_state, state.iteration + 1, state.step + config.updates,
                       state.episodes + config.games, key)
    metrics = {
        "iteration": i + 1, "step": int(state.step), "episodes": int(state.episodes),
        "game": f"{g.name}/{g.profile}/{g.budget}",
        "mean_return": float(np.mean(np.asarray(trajectory.reward).sum(axis=0))),
        "gap_to_xla_msa": float(times.min() / g.xla_msa - 1.0),
        "loss": float(np.mean(losses)),
    }
    if archive is not None:
        metrics["improved_over_teacher"] = len(archive.actions)
    return state, metrics


def best_of(params: Params, config: TrainConfig, game: G.Game, key: jax.Array, episodes: int,
            simulations: Optional[int] = None) -> tuple[G.GameState, np.ndarray]:
    """`episodes` searched episodes of `game`: their final states and simulated seconds."""
    _, final = self_play(params, config.network(), game, key, config.search(simulations), episodes)
    return final, np.asarray(final.time, np.float64)


def greedy_times(params: Params, config: TrainConfig, game: G.Game) -> G.GameState:
    """The final state of one episode of `game` played by the network alone (its most likely legal action)."""
    return _greedy(params, game.spec, net=config.network(), shape=GameShape.of(game))


@functools.partial(jax.jit, static_argnames=("net", "shape"))
def _greedy(params, spec, *, net: MuZeroNet, shape: GameShape) -> G.GameState:
    game = shape.game(spec)

    def choose(key, game, state, legal):
        del key
        logits = net.predict(params, net.represent(params, G.observe(game, state))).policy_logits
        return jnp.argmax(masked_logits(logits, legal))

    return G.play(game, choose, jax.random.PRNGKey(0))[0]


def evaluate(params: Params, config: TrainConfig, games: list[TrainGame]) -> dict:
    """The network alone (greedy) on each game, against xla-msa: geometric-mean speedup, the share of
    games no worse than xla-msa and the share of the room above xla-msa captured (over the games whose
    best known time is given)."""
    times = np.array([float(greedy_times(params, config, g.game).time) for g in games], np.float64)
    xla = np.array([g.xla_msa for g in games], np.float64)
    ratios = xla / times
    out = {"eval_geomean_speedup": float(np.exp(np.mean(np.log(ratios)))),
           "eval_share_no_worse": float(np.mean(ratios >= 1.0 - 1e-6))}
    best = np.array([np.nan if g.best is None else g.best for g in games], np.float64)
    known = ~np.isnan(best)
    room = float(np.sum(xla[known] - best[known]))
    out["eval_share_of_room"] = float(np.sum(xla[known] - times[known]) / room) if room > 0 else float("nan")
    return out


def eval_names(split: Split) -> list[str]:
    """The held-out instances evaluated during training: the `ci` workloads and four synthetic."""
    workloads = [n for n in split.held_out if n.endswith("@ci")]
    return workloads + [n for n in split.held_out if n.startswith("synthetic-")][:4]
