"""Search against the network alone on the held-out split: the shipped checkpoint's greedy play and its
rollout search at several simulation counts, with the wall seconds per instance beside CP-SAT's.

    python scripts/search_sweep.py --profile tpu-v4i-cmem --budget 0.5 --simulations 16 64 256 --ci-subset \
        [--names NAME ...] [--cpsat-time-limit 10] [--out results/eval]

Instances: --names, else the shipped checkpoint's held-out split, or with --ci-subset its workloads at size
ci and its first four synthetic instances (40 to 160 buffers). Per instance, each setting (the network alone,
then the search at each simulation count) is first played once untimed so that JIT compilation stays out of
its seconds (for the search, a call with a deadline of 0: one searched decision), then timed; CP-SAT (the
`cpsat` policy: hinted with xla-msa) is timed within --cpsat-time-limit seconds.

Writes OUT/search-PROFILE-BUDGET.csv (instance, policy, simulations, simulated_seconds, seconds,
speedup_vs_xla_msa) and prints the geometric-mean speedup over xla-msa, the share no worse and the mean
seconds of each setting and of CP-SAT.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from agent.data.split import load
from agent.evaluation import TOLERANCE
from agent.muzero.policy import load_agent, play
from agent.registry import solve
from harness.model.profiles import load_profile
from harness.model.simulator import simulate

CI_SYNTHETIC = 4  # synthetic instances of the ci subset: the split's first ones (40, 80, 120, 160 buffers)


def ci_subset(held_out) -> list[str]:
    """The held-out workloads at size ci and the first `CI_SYNTHETIC` held-out synthetic instances."""
    return [n for n in held_out if n.endswith("@ci")] + [n for n in held_out if n.startswith("synthetic-")][:CI_SYNTHETIC]


def warm_up(instance, profile, budget: float, policy: str, sims) -> None:
    """Compile what `policy` runs on `instance`'s shapes, untimed."""
    if sims is None:
        solve(instance, profile, budget, policy=policy)
    else:
        play(instance, profile, budget, "search", sims, seconds=0.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", required=True)
    p.add_argument("--budget", type=float, default=0.5)
    p.add_argument("--simulations", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--names", nargs="*", help="instances (default: the shipped checkpoint's held-out split)")
    p.add_argument("--ci-subset", action="store_true", help="the held-out split's ci-size subset (see above)")
    p.add_argument("--cpsat-time-limit", type=float, default=10.0, help="CP-SAT's seconds (default 10)")
    p.add_argument("--out", default="results/eval")
    args = p.parse_args()
    profile = load_profile(args.profile)
    held_out = load_agent(None).split.held_out
    names = args.names or (ci_subset(held_out) if args.ci_subset else held_out)
    settings = [("mallocmuzero-greedy", None)] + [("mallocmuzero", s) for s in args.simulations] + [("cpsat", None)]
    rows = []
    for name in names:
        instance = load(name)
        xla = simulate(instance, solve(instance, profile, args.budget, policy="xla-msa"), profile)
        for policy, sims in settings:
            if policy != "cpsat":
                warm_up(instance, profile, args.budget, policy, sims)
            options = {"simulations": sims} if sims else {}
            limit = args.cpsat_time_limit if policy == "cpsat" else None
            start = time.perf_counter()
            mapping = solve(instance, profile, args.budget, policy=policy, time_limit=limit, **options)
            seconds = time.perf_counter() - start
            t = simulate(instance, mapping, profile)
            rows.append({"instance": name, "policy": policy, "simulations": sims or "", "simulated_seconds": t,
                         "seconds": round(seconds, 3), "speedup_vs_xla_msa": xla / t})
            print(f"{name:40s} {policy:20s} {sims or '':>4} {xla / t:.5f} {seconds:6.2f}s", flush=True)
    out = Path(args.out) / f"search-{profile.name}-{args.budget:g}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for policy, sims in settings:
        sel = [r for r in rows if r["policy"] == policy and r["simulations"] == (sims or "")]
        ratios = np.array([r["speedup_vs_xla_msa"] for r in sel])
        print(f"{policy} {sims or ''}: geomean {np.exp(np.mean(np.log(ratios))):.4f}, no worse "
              f"{np.mean(ratios >= 1 - TOLERANCE):.0%}, {np.mean([r['seconds'] for r in sel]):.2f} s/instance")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
