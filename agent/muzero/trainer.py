"""The training loop of `mallocbench train`: iterations, evaluations, checkpoints and the curve.

`run(config, split, out)` trains from scratch into the directory `out`; `resume(out)`
goes on from the checkpoint there, exactly as if the run had not stopped (same games,
same samples, same keys, same archive of best episodes).

At the warm start's end and at every evaluation the network alone also plays a validation
set of *training* games (`validation`: never the held-out split); the parameters that score
best there (geometric-mean speedup over xla-msa) are kept beside the current ones, and they
are what `export` ships. A checkpoint and the curve (`curve.csv`, `curve.png`) are
written every `eval_every` iterations, at the end, when the time limit is reached and
on Ctrl-C, so an interrupted run loses at most the iterations since the last one.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from agent.data.demos import model_drift
from agent.muzero import checkpoint, compile_cache
from agent.data.split import Split
from agent.muzero.networks import Params
from agent.muzero.replay import Replay
from agent.muzero.learner import (TrainConfig, TrainGame, TrainState, archive_of, demo_replay, eval_names, evaluate,
                                  init_state, iterate, make_games, make_update, warm_start)
from harness.model.profiles import load_profile
from harness.results.artifacts import write_bytes

CURVE_FIELDS = ("iteration", "step", "episodes", "elapsed_s", "game", "mean_return", "gap_to_xla_msa", "loss",
                "improved_over_teacher", "validation_geomean_speedup", "eval_geomean_speedup", "eval_share_no_worse",
                "eval_share_of_room")
VALIDATION_SYNTHETIC = 4  # synthetic training instances in the validation set (beside the workloads at size ci)
BEST_TIME_LIMIT = 1.0  # seconds of CP-SAT per held-out game for the best known time (the room of the curve)


def run(config: TrainConfig, split: Split, out, minutes: Optional[float] = None,
        on_metrics: Optional[Callable[[dict], None]] = None, on_setup: Optional[Callable[[str], None]] = None) -> Path:
    """Train a new run into `out` (which must hold no checkpoint yet); returns `out`."""
    out = Path(out)
    if (out / checkpoint.CONFIG).exists():
        raise ValueError(f"{out} already holds a checkpoint: resume it (--resume), or train into another directory")
    games, held = _games(config, split, on_setup)
    state = init_state(config)
    return _loop(config, split, out, state, Replay(config.replay_capacity), [], 0.0, games, held, minutes,
                 on_metrics, Kept(), {})


def resume(out, minutes: Optional[float] = None, iterations: Optional[int] = None,
           on_metrics: Optional[Callable[[dict], None]] = None,
           on_setup: Optional[Callable[[str], None]] = None) -> Path:
    """Go on with the run in `out` up to its config's iterations (or `iterations`)."""
    out = Path(out)
    config, split = checkpoint.read_config(out)
    if iterations is not None:
        config = TrainConfig(**{**config.__dict__, "iterations": iterations})
    games, held = _games(config, split, on_setup)
    ckpt = checkpoint.load(out)
    if ckpt.replay is None:
        raise checkpoint.CheckpointError(f"{out}: has no replay buffer (a shipped checkpoint?); it cannot be "
                                         f"resumed exactly")
    curve = [r for r in read_curve(out) if int(r["iteration"]) <= int(ckpt.state.iteration)]
    kept = ckpt.info.get("best", {})
    best = Kept(ckpt.best, kept.get("validation_geomean_speedup", -np.inf), kept.get("iteration", -1))
    entries = {i: [int(a) for a in actions.split(",")] for i, actions in ckpt.info.get("archive", {}).items()}
    return _loop(config, split, out, ckpt.state, ckpt.replay, curve, float(ckpt.info.get("elapsed_s", 0.0)),
                 games, held, minutes, on_metrics, best, entries)


@dataclasses.dataclass(frozen=True)
class Kept:
    """The parameters that scored best on the validation games so far, their score and iteration."""

    params: Optional[Params] = None
    score: float = -np.inf  # geometric-mean speedup of the network alone over xla-msa on the validation games
    iteration: int = -1


def validation(games: list[TrainGame], split: Split) -> list[TrainGame]:
    """The validation games among the training games: at budget 0.5, the training workloads at size ci and
    the first `VALIDATION_SYNTHETIC` synthetic training instances, on every profile of the run."""
    names = [n for n in split.train if n.endswith("@ci")]
    names += [n for n in split.train if n.startswith("synthetic-")][:VALIDATION_SYNTHETIC]
    return [g for g in games if g.budget == 0.5 and g.name in names]


def _games(config: TrainConfig, split: Split, on_setup):
    compile_cache.enable()  # a run's programs (self-play per game size, the update) load from an earlier run's
    if on_setup:
        on_setup(f"building {len(split.train)} training instances x {len(config.profiles)} profiles")
    for p, b in ((p, b) for p in config.profiles for b in config.budgets) if on_setup and config.demonstrations else ():
        for change in model_drift(load_profile(p), b):  # the recorded teacher seconds may be stale
            on_setup(f"demonstrations {p}@{b:g}: {change}")
    games = make_games(split.train, config.profiles, config.budgets, config.demonstrations)
    held = make_games(eval_names(split), config.profiles, (0.5,), best_time_limit=BEST_TIME_LIMIT) \
        if config.eval_every else []
    return games, held


def _loop(config, split, out: Path, state: TrainState, replay: Replay, curve: list[dict], elapsed: float,
          games, held, minutes, on_metrics, best: Kept, entries: dict) -> Path:
    update = make_update(config)
    play_update = make_update(config, config.selfplay_learning_rate) if config.selfplay_learning_rate else update
    archive = archive_of(games, config)
    if archive is not None:
        archive.restore(entries)
    demos = archive.replay if archive is not None else demo_replay(games, config)
    valid = validation(games, split) if config.eval_every else []
    start = time.perf_counter() - elapsed

    def save():
        _save(config, split, out, state, replay, curve, time.perf_counter() - start, best, archive)

    try:
        if int(state.step) == 0:
            state, row = warm_start(state, demos, config, update)
            if row:
                row["elapsed_s"] = round(time.perf_counter() - start, 2)
                if held:
                    row.update(evaluate(state.params, config, held))
                best = _keep(best, state, config, valid, row)
                curve.append(row)
                if on_metrics:
                    on_metrics(row)
        while int(state.iteration) < config.iterations:
            state, row = iterate(state, replay, games, config, play_update, demos, archive)
            row["elapsed_s"] = round(time.perf_counter() - start, 2)
            timeout = minutes is not None and row["elapsed_s"] >= minutes * 60
            due = (int(state.iteration) >= config.iterations or timeout
                   or bool(config.eval_every and int(state.iteration) % config.eval_every == 0))
            if held and due:
                row.update(evaluate(state.params, config, held))
            if config.eval_every and due:
                best = _keep(best, state, config, valid, row)
            curve.append(row)
            if on_metrics:
                on_metrics(row)
            if due:
                save()
            if timeout:
                break
    except KeyboardInterrupt:
        save()
        raise
    return out


def _keep(best: Kept, state: TrainState, config: TrainConfig, valid: list[TrainGame], row: dict) -> Kept:
    """`best`, or the state's parameters if they score higher on the validation games (noted in `row`)."""
    if not valid:
        return best
    score = evaluate(state.params, config, valid)["eval_geomean_speedup"]
    row["validation_geomean_speedup"] = score
    return Kept(state.params, score, int(state.iteration)) if score > best.score else best


def _save(config, split, out: Path, state, replay, curve, elapsed: float, best: Kept, archive) -> None:
    info = {"iterations": int(state.iteration), "steps": int(state.step), "episodes": int(state.episodes),
            "elapsed_s": round(elapsed, 2)}
    if best.params is not None:
        info["best"] = {"iteration": best.iteration, "validation_geomean_speedup": best.score}
    if archive is not None:
        info.update(archive.summary())
        info["archive"] = {i: ",".join(map(str, a)) for i, a in archive.state().items()}
    write_curve(out, curve)
    checkpoint.save(out, config, split, state, replay, info, best.params)


def export(src, dest) -> Path:
    """Copy the checkpoint at `src` to `dest` without its replay buffer (what is shipped), with its curve:
    its parameters are those that scored best on the validation games, where the run kept them."""
    src, dest = Path(src), Path(dest)
    ckpt = checkpoint.load(src, with_replay=False)
    state = ckpt.state if ckpt.best is None else ckpt.state._replace(params=ckpt.best)
    info = {k: v for k, v in ckpt.info.items() if k != "archive"}
    checkpoint.save(dest, ckpt.config, ckpt.split, state, None, info)
    write_curve(dest, read_curve(src))
    return dest


def read_curve(out) -> list[dict]:
    """The rows of `out`/curve.csv (none if it does not exist)."""
    path = Path(out) / "curve.csv"
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_curve(out, rows: list[dict]) -> None:
    """Write the training curve as `curve.csv` and `curve.png` in `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CURVE_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_bytes(out / "curve.csv", buf.getvalue().encode())
    if rows:
        write_bytes(out / "curve.png", _plot(rows))


def _plot(rows: list[dict]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def number(row, field):
        value = str(row.get(field, ""))
        return float(value) if value not in ("", "nan", "None") else None

    played = [(float(r["elapsed_s"]) / 60, 100 * number(r, "gap_to_xla_msa")) for r in rows
              if number(r, "gap_to_xla_msa") is not None]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    if played:
        minutes, gap = zip(*played)
        top.plot(minutes, gap, ".", ms=2, alpha=0.4, label="self-play best of batch")
        window = 25
        smooth = [sum(gap[max(0, i - window + 1): i + 1]) / len(gap[max(0, i - window + 1): i + 1])
                  for i in range(len(gap))]
        top.plot(minutes, smooth, "-", label=f"mean of last {window}")
        top.legend(fontsize=8)
    top.axhline(0, color="k", lw=0.8)
    top.set_ylabel("gap to xla-msa (%)")
    evals = [(float(r["elapsed_s"]) / 60, number(r, "eval_geomean_speedup"), number(r, "eval_share_no_worse"),
              number(r, "eval_share_of_room")) for r in rows if number(r, "eval_geomean_speedup") is not None]
    if evals:
        x, speed, share, room = zip(*evals)
        bottom.plot(x, [100 * (s - 1) for s in speed], "o-", label="geomean speedup over xla-msa (%)")
        valid = [(float(r["elapsed_s"]) / 60, number(r, "validation_geomean_speedup")) for r in rows
                 if number(r, "validation_geomean_speedup") is not None]
        if valid:
            bottom.plot([m for m, _ in valid], [100 * (v - 1) for _, v in valid], "x-", color="tab:gray",
                        label="validation (training games): geomean speedup (%)")
        bottom.plot(x, [100 * s for s in share], "s--", label="share no worse than xla-msa (%)")
        right = bottom.twinx()  # the room is a few percent of the time: its share swings far wider
        right.plot(x, [100 * r if r is not None else float("nan") for r in room], "^:", color="tab:green",
                   label="share of the room captured (%, right)")
        right.set_ylabel("share of the room (%)")
        lines = bottom.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
        bottom.legend(lines, [line.get_label() for line in lines], fontsize=8)
    bottom.axhline(0, color="k", lw=0.8)
    bottom.set_xlabel("minutes of training")
    bottom.set_ylabel("budget 0.5, network alone")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
