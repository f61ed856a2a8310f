"""`mallocbench train` and `eval`: mallocMuZero on the command line."""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.cli.common import add_command, console, err_console, progress


PRESET_MINUTES = {"ci": 30.0}  # the training time of a preset's run (setup and evaluations aside: ci <= 45 min in all)


def _train_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[stats]}"), console=err_console)


def cmd_train(args: argparse.Namespace) -> int:
    """Train mallocMuZero by self-play (or resume a run), with a progress bar and checkpoints."""
    from agent.muzero import checkpoint
    from agent.muzero import trainer
    from agent.data.split import default_split, read_split
    from agent.muzero.learner import TrainConfig

    if args.minutes is not None and not args.minutes > 0:
        raise ValueError(f"--minutes must be positive, got {args.minutes:g}")
    minutes = args.minutes if args.minutes is not None else PRESET_MINUTES.get(args.preset)
    out = Path(args.out or f"runs/train/{args.preset}-{args.mode}")
    if args.split and args.resume:
        raise ValueError("--split: a resumed run keeps the split of its checkpoint")
    if args.resume:
        config, _ = checkpoint.read_config(out)
        if (config.preset, config.mode) != (args.preset, args.mode):
            raise ValueError(f"{out} was trained with --preset {config.preset} --mode {config.mode}, not "
                             f"--preset {args.preset} --mode {args.mode}")
        total = args.iterations or config.iterations
    else:
        overrides = {"iterations": args.iterations} if args.iterations else {}
        config = TrainConfig(preset=args.preset, mode=args.mode, seed=args.seed,
                             demonstrations=args.demonstrations, **overrides)
        total = config.iterations
    with _train_bar() as bar:
        task = bar.add_task(f"training {config.preset}/{config.mode}", total=total, stats="")

        def show(row: dict) -> None:
            stats = f"step {row['step']}  episodes {row['episodes']}  "
            stats += (f"return {row['mean_return']:.2f}%  gap to xla-msa {100 * row['gap_to_xla_msa']:+.2f}%"
                      if "mean_return" in row else f"{row['game']}  loss {row['loss']:.3f}")
            if "eval_geomean_speedup" in row:
                stats += f"  held-out speedup {100 * (row['eval_geomean_speedup'] - 1):+.2f}%"
            bar.update(task, completed=row["iteration"], stats=stats)

        def setup(message: str) -> None:
            bar.console.print(message)  # kept above the bar: a drift of the demonstrations must stay readable
            bar.update(task, stats=message)

        try:
            if args.resume:
                trainer.resume(out, minutes, args.iterations, show, setup)
            else:
                split = read_split(args.split) if args.split else default_split()
                trainer.run(config, split, out, minutes, show, setup)
        except KeyboardInterrupt:
            err_console.print(f"interrupted: checkpoint saved in {out}; go on with --resume")
            return 130
    info = json.loads((out / checkpoint.CONFIG).read_text())["info"]
    console.print(f"checkpoint {out}: {info['iterations']} iterations, {info['steps']} steps, "
                  f"{info['episodes']} episodes in {info['elapsed_s'] / 60:.1f} min; curve {out / 'curve.csv'}")
    if args.export:
        console.print(f"exported without replay buffer to {trainer.export(out, args.export)}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a checkpoint against xla-msa and cpsat; write the table and its summary."""
    from agent.evaluation import COLUMNS, evaluate_checkpoint
    from harness.model.mapping import check_budget
    from harness.model.profiles import load_profile
    from harness.results.artifacts import write_bytes

    check_budget(args.budget, "--budget")
    profile = load_profile(args.profile)
    ckpt = Path(args.checkpoint).resolve() if args.checkpoint else None
    name = ckpt.name if ckpt else "ci"
    with progress() as bar:
        task = bar.add_task("evaluating", total=None)
        rows, summary = evaluate_checkpoint(
            str(ckpt) if ckpt else None, profile, args.budget, args.split, args.simulations,
            args.cpsat_time_limit, on_instance=lambda n: bar.update(task, advance=1, description=n))
    summary = {"checkpoint": str(args.checkpoint or "shipped"), "profile": profile.name, "budget": args.budget,
               "split": args.split, "simulations": args.simulations,
               "cpsat_time_limit": args.cpsat_time_limit, **summary}
    out = Path(args.out)
    stem = out / f"{name}-{profile.name}-{args.budget:g}"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    out.mkdir(parents=True, exist_ok=True)
    write_bytes(f"{stem}.csv", buf.getvalue().encode())
    write_bytes(f"{stem}.json", (json.dumps(summary, indent=1) + "\n").encode())
    gap = summary["mean_gap_to_optimum"]
    console.print(f"{summary['n_instances']} held-out instances on {profile.name} at budget {args.budget:g}: "
                  f"geomean speedup over xla-msa {100 * (summary['geomean_speedup_vs_xla_msa'] - 1):+.2f}%, "
                  f"no worse than xla-msa on {summary['share_no_worse_than_xla_msa']:.0%}, share of the room "
                  f"captured {_percent(summary['share_of_room_captured'])}, network alone "
                  f"{100 * (summary['geomean_speedup_greedy_vs_xla_msa'] - 1):+.2f}%, mean gap to the "
                  f"optimum {'n/a (none proven)' if gap is None else f'{100 * gap:.2f}%'} "
                  f"({summary['n_optimal']} proven); CP-SAT's bounds cap any mapping's geomean speedup at "
                  f"{100 * (summary['geomean_speedup_bound_vs_xla_msa'] - 1):+.2f}% -> {stem}.csv, {stem}.json",
                  soft_wrap=True)
    return 0


def _percent(share) -> str:
    return "n/a (no room)" if share is None else f"{share:.0%}"


def add_commands(sub) -> None:
    """Register `train` and `eval` on the `mallocbench` parser."""
    from agent.evaluation import SPLITS
    from agent.muzero.search import MODES

    p = add_command(sub, "train", cmd_train, help="train mallocMuZero by self-play (progress bar, checkpoints, curve)",
                    description="Self-play with Gumbel MuZero search on the training split, a replay buffer "
                    "and Adam; a held-out evaluation against xla-msa, a checkpoint and the curve "
                    "(curve.csv, curve.png) every eval_every iterations. Ctrl-C saves a checkpoint.")
    p.add_argument("--preset", default="ci", choices=("ci", "full"), help="network and run size (default: ci)")
    p.add_argument("--mode", default="muzero", choices=MODES,
                   help="search model: learned dynamics (muzero) or the exact game (alphazero)")
    p.add_argument("--resume", action="store_true", help="go on exactly from the checkpoint in --out")
    p.add_argument("--out", metavar="DIR", help="checkpoint directory (default: runs/train/PRESET-MODE)")
    p.add_argument("--iterations", type=int, help="self-play iterations in all (default: the preset's)")
    p.add_argument("--minutes", type=float, help="stop (with a checkpoint) after this much training time "
                   f"(default: the preset's, {', '.join(f'{k} {v:g}' for k, v in PRESET_MINUTES.items())})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--demonstrations", action=argparse.BooleanOptionalAction, default=True,
                   help="learn from the teacher's episode of each game (the best known mapping: its moves as "
                   "policy targets, its returns as values): a warm start, then a share of each batch (default: on)")
    p.add_argument("--split", metavar="FILE", help="JSON {\"train\": [...], \"held_out\": [...]} of instance names "
                   "(default: AlphaTensor, vit-encoder, lstm-scan and synthetic seeds >= 1000 held out)")
    p.add_argument("--export", metavar="DIR", help="also copy the final checkpoint, without replay, to DIR")

    p = add_command(sub, "eval", cmd_eval, help="evaluate a checkpoint against xla-msa and cpsat on its split",
                    description="Solve each instance of the checkpoint's split with mallocmuzero, xla-msa and "
                    "cpsat; write OUT/CHECKPOINT-PROFILE-BUDGET.csv (instance, split, policy, "
                    "simulated_seconds, optimal) and a summary JSON beside it.")
    p.add_argument("--checkpoint", metavar="PATH", help="checkpoint directory (default: the shipped one)")
    p.add_argument("--profile", required=True, metavar="NAME", help="hardware profile")
    p.add_argument("--budget", type=float, default=0.5, help="fast memory fraction of peak (default: 0.5)")
    p.add_argument("--split", default="held-out", choices=SPLITS, help="instances to evaluate (default: held-out)")
    p.add_argument("--simulations", type=int, help="leaves the rollout search scores per decision (default: 8)")
    p.add_argument("--cpsat-time-limit", type=float, default=10.0, metavar="S", help="cpsat seconds (default: 10)")
    p.add_argument("--out", default="results/eval", metavar="DIR", help="output directory (default: results/eval)")
