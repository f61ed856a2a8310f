"""Short self-play ablations from one shared warm start: the held-out network alone after the warm start
and after a few self-play iterations of each variant (TrainConfig overrides).

    python scripts/selfplay_ablation.py --warm-start 1000 --iterations 100 --work /tmp/ablation \
        --variant base --variant 'lr5:selfplay_learning_rate=4e-4' --variant 'mc:td_steps=512' ...

A variant is NAME[:FIELD=VALUE,...] over the `ci` preset's TrainConfig (values parsed as Python literals).
The warm start (`--warm-start` gradient steps on the demonstrations) is computed once and cached in
WORK/warm-N.msgpack; every variant starts from it with the same self-play games and keys. Per variant the
script appends one JSON line to WORK/results.jsonl: the held-out figures (`evaluate`: network alone, budget
0.5) of the warm start and every `--eval-every` iterations, the mean self-play return of the first and last
halves, and the training games whose best known episode self-play improved over the teacher's (count and
geometric-mean gain, where the variant keeps an archive).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from flax import serialization

from agent.data.split import default_split
from agent.muzero import compile_cache
from agent.muzero.learner import (TrainConfig, archive_of, demo_replay, eval_names, evaluate, init_state, iterate,
                                  make_games, make_update, warm_start)
from agent.muzero.replay import Replay


def variant(text: str) -> tuple[str, dict]:
    """(name, TrainConfig overrides) of NAME[:FIELD=VALUE,...]."""
    name, _, rest = text.partition(":")
    overrides = {}
    for item in filter(None, rest.split(",")):
        field, _, value = item.partition("=")
        overrides[field] = ast.literal_eval(value)
    return name, overrides


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--warm-start", type=int, default=1000)
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--work", default="/tmp/ablation")
    p.add_argument("--variant", action="append", default=[])
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    compile_cache.enable()
    split = default_split()
    base = TrainConfig(warm_start=args.warm_start, eval_every=args.eval_every)
    t0 = time.perf_counter()
    games = make_games(split.train, base.profiles, base.budgets, demonstrations=True)
    held = make_games(eval_names(split), base.profiles, (0.5,), best_time_limit=1.0)
    print(f"games built in {time.perf_counter() - t0:.0f} s", flush=True)
    cache = work / f"warm-{args.warm_start}.msgpack"
    state = init_state(base)
    if cache.exists():
        state = type(state)(**serialization.from_bytes(state._asdict(), cache.read_bytes()))
    else:
        t0 = time.perf_counter()
        state, _ = warm_start(state, demo_replay(games, base), base, make_update(base))
        cache.write_bytes(serialization.to_bytes(state._asdict()))
        print(f"warm start in {time.perf_counter() - t0:.0f} s", flush=True)
    warm_eval = evaluate(state.params, base, held)
    print("warm start", warm_eval, flush=True)
    for text in args.variant:
        name, overrides = variant(text)
        config = dataclasses.replace(base, **overrides)
        update = make_update(config, config.selfplay_learning_rate)
        archive = archive_of(games, config)
        demos = archive.replay if archive else demo_replay(games, config)
        replay, s, rows, evals = Replay(config.replay_capacity), state, [], []
        t0 = time.perf_counter()
        for _ in range(args.iterations):
            s, row = iterate(s, replay, games, config, update, demos, archive)
            rows.append(row)
            if int(s.iteration) % args.eval_every == 0:
                evals.append({"iteration": int(s.iteration), **evaluate(s.params, config, held)})
                print(name, evals[-1], flush=True)
        returns = [r["mean_return"] for r in rows]
        half = len(returns) // 2
        out = {"variant": name, "overrides": overrides, "warm_start": args.warm_start, "warm": warm_eval,
               "evals": evals, "seconds": round(time.perf_counter() - t0, 1),
               "mean_return_first_half": float(np.mean(returns[:half])),
               "mean_return_second_half": float(np.mean(returns[half:])),
               "gap_to_xla_msa_mean": float(np.mean([r["gap_to_xla_msa"] for r in rows]))}
        if archive:
            out.update(archive.summary())
        print(json.dumps(out), flush=True)
        with (work / "results.jsonl").open("a") as f:
            f.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
