"""Training mallocMuZero by self-play: the loss, one update, one iteration, and the loop.

One iteration plays a batch of episodes of one training game (round robin over the
training instances x profiles x budgets, in a seeded order) with search, adds them
to the replay buffer and takes `updates` gradient steps on samples from it.

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
from agent.data.split import Split, load
from agent.data.synthesize import synthetic
from agent.heuristics.xla_msa import xla_msa
from agent.muzero.networks import MuZeroNet, NetworkConfig, Params, reward_scale, scalar_to_support
from agent.muzero.replay import Replay, Sample
from agent.muzero.search import MODES, SearchConfig
from agent.muzero.selfplay import GameShape, Trajectory, self_play
from harness.model.mapping import check_budget
from harness.model.profiles import load_profile
from harness.model.simulator import simulate


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (with the data `Split`)."""

    preset: str = "ci"  # network preset (`NetworkConfig.preset`)
    mode: str = "muzero"  # search model: "muzero" (learned) or "alphazero" (exact game)
    profiles: tuple[str, ...] = ("tpu-v4i-cmem", "h100-offload")
    budgets: tuple[float, ...] = (0.5,)
    games: int = 8  # episodes per self-play batch (and per solve)
    simulations: int = 16
    considered: int = 16  # Gumbel MuZero's max_num_considered_actions
    unroll: int = 5  # dynamics steps in the loss (0 in alphazero mode)
    td_steps: int = 16
    discount: float = 1.0
    batch_size: int = 128
    updates: int = 8  # gradient steps per iteration
    learning_rate: float = 2e-3
    replay_capacity: int = 20000
    iterations: int = 3000
    eval_every: int = 100  # iterations between held-out evaluations (0: none)
    seed: int = 0
    demonstrations: bool = False  # add an xla-msa episode of the game to the replay buffer every iteration

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
        if self.unroll < 0 or self.eval_every < 0:
            raise ValueError("unroll and eval_every must not be negative")

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
    demo: Optional[Trajectory] = None  # xla-msa's episode, where the run learns from demonstrations


def padded_game(instance, profile, budget: float) -> G.Game:
    """The game of `instance` on `profile` (a Profile or its name) in the agents' fixed action
    space, decisions padded to a power of two."""
    game = G.make_game(instance, load_profile(profile) if isinstance(profile, str) else profile, budget)
    return G.pad(game, G.MAX_SLOTS, max(32, 1 << (G.n_candidates(game) - 1).bit_length()))


@functools.lru_cache(maxsize=1)
def reference_game() -> G.Game:
    """A small padded game: every padded game has its observation shapes and actions, so it
    shapes the networks of any run."""
    return padded_game(synthetic(0, 10), "tpu-v4i-cmem", 0.5)


def make_games(names, profiles, budgets, demonstrations: bool = False) -> list[TrainGame]:
    """Every (instance, profile, budget) game of `names`, with xla-msa's time (and its episode)."""
    out = []
    for name in names:
        instance = load(name)
        for p in profiles:
            profile = load_profile(p)
            for b in budgets:
                mapping = xla_msa(instance, profile, b, 0, None)
                game = padded_game(instance, p, b)
                out.append(TrainGame(name, p, b, game, simulate(instance, mapping, profile),
                                     demonstration(game, mapping) if demonstrations else None))
    return out


def demonstration(game: G.Game, mapping) -> Trajectory:
    """A one-episode trajectory of `game` that places each candidate where `mapping` puts it (a teacher's
    moves): its policy targets are the teacher's actions and its values the returns to go, so that replaying
    it pulls the networks toward the teacher. An action the game refuses is recorded as "slow"."""
    slot = np.full(G.n_candidates(game), game.n_slots, np.int32)
    for c, members in enumerate(game.candidates.members):
        offset = mapping.offsets.get(members[0])
        if offset is not None:
            slot[c] = offset // game.slot_bytes
    return _demonstration(game.spec, jnp.asarray(slot)[game.spec.order], shape=GameShape.of(game))


@functools.partial(jax.jit, static_argnames=("shape",))
def _demonstration(spec, actions, *, shape: GameShape) -> Trajectory:
    game = shape.game(spec)

    def body(state, action):
        obs, legal = G.observe(game, state), G.legal_actions(game, state)
        action = jnp.where(legal[action], action, game.n_slots)
        state, reward, _ = G.step(game, state, action)
        return state, (obs, action, jax.nn.one_hot(action, game.n_actions), reward * reward_scale(game), legal)

    _, (obs, action, policy, reward, legal) = jax.lax.scan(body, G.reset(game), actions)
    value = jnp.cumsum(reward[::-1])[::-1]
    return jax.tree_util.tree_map(lambda x: x[:, None], Trajectory(obs, action, policy, reward, value, legal))


def optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Adam with global-norm clipping."""
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(config.learning_rate))


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


def make_update(config: TrainConfig) -> Callable:
    """The jitted gradient step: (params, opt_state, batch) -> (params, opt_state, loss, parts)."""
    net, opt, unroll = config.network(), optimizer(config), config.unroll_steps

    @jax.jit
    def update(params, opt_state, batch):
        (value, parts), grads = jax.value_and_grad(loss, has_aux=True)(params, batch, net, unroll)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value, parts

    return update


def game_order(config: TrainConfig, n_games: int) -> np.ndarray:
    """The seeded round-robin order of the training games."""
    return np.random.default_rng(config.seed).permutation(n_games)


def iterate(state: TrainState, replay: Replay, games: list[TrainGame], config: TrainConfig,
            update: Callable) -> tuple[TrainState, dict]:
    """One self-play batch and `updates` gradient steps; returns the new state and its metrics."""
    i = int(state.iteration)
    g = games[game_order(config, len(games))[i % len(games)]]
    key, play_key, *sample_keys = jax.random.split(state.key, 2 + config.updates)
    trajectory, final = self_play(state.params, config.network(), g.game, play_key, config.search(), config.games)
    replay.add(trajectory, config.unroll_steps, config.td_steps, config.discount)
    if g.demo is not None:
        replay.add(g.demo, config.unroll_steps, config.td_steps, config.discount)
    params, opt_state, losses = state.params, state.opt_state, []
    for k in sample_keys:
        params, opt_state, value, _ = update(params, opt_state, replay.sample(k, config.batch_size))
        losses.append(float(value))
    times = np.asarray(final.time, np.float64)
    state = TrainState(params, opt_state, state.iteration + 1, state.step + config.updates,
                       state.episodes + config.games, key)
    metrics = {
        "iteration": i + 1, "step": int(state.step), "episodes": int(state.episodes),
        "game": f"{g.name}/{g.profile}/{g.budget}",
        "mean_return": float(np.mean(np.asarray(trajectory.reward).sum(axis=0))),
        "gap_to_xla_msa": float(times.min() / g.xla_msa - 1.0),
        "loss": float(np.mean(losses)),
    }
    return state, metrics


def best_of(params: Params, config: TrainConfig, game: G.Game, key: jax.Array, episodes: int,
            simulations: Optional[int] = None) -> tuple[G.GameState, np.ndarray]:
    """`episodes` searched episodes of `game`: their final states and simulated seconds."""
    _, final = self_play(params, config.network(), game, key, config.search(simulations), episodes)
    return final, np.asarray(final.time, np.float64)


def evaluate(params: Params, config: TrainConfig, games: list[TrainGame], seed: int = 0) -> dict:
    """Best-of-`games` episodes on each game, against xla-msa: geometric-mean speedup and the
    share of games no worse than xla-msa."""
    ratios = []
    for j, g in enumerate(games):
        _, times = best_of(params, config, g.game, jax.random.PRNGKey(seed + j), config.games)
        ratios.append(g.xla_msa / times.min())
    ratios = np.asarray(ratios)
    return {"eval_geomean_speedup": float(np.exp(np.mean(np.log(ratios)))),
            "eval_share_no_worse": float(np.mean(ratios >= 1.0 - 1e-6))}


def eval_names(split: Split) -> list[str]:
    """The held-out instances evaluated during training: the `ci` workloads and four synthetic."""
    workloads = [n for n in split.held_out if n.endswith("@ci")]
    return workloads + [n for n in split.held_out if n.startswith("synthetic-")][:4]
