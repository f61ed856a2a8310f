"""Search against the network alone on the held-out split: the shipped checkpoint's greedy play and its
rollout search at several simulation counts, with the wall seconds per instance.

    python scripts/search_sweep.py --profile tpu-v4i-cmem --budget 0.5 --simulations 16 64 256 \
        [--names NAME ...] [--out results/eval]

Writes OUT/search-PROFILE-BUDGET.csv (instance, policy, simulations, simulated_seconds, seconds,
speedup_vs_xla_msa) and prints the geometric-mean speedup over xla-msa, the share no worse and the
mean seconds of each setting. CP-SAT's seconds are in the eval tables (`mallocbench eval`).
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from agent.data.split import load
from agent.evaluation import TOLERANCE
from agent.muzero.policy import load_agent
from agent.registry import solve
from harness.model.profiles import load_profile
from harness.model.simulator import simulate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", required=True)
    p.add_argument("--budget", type=float, default=0.5)
    p.add_argument("--simulations", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--names", nargs="*", help="instances (default: the shipped checkpoint's held-out split)")
    p.add_argument("--out", default="results/eval")
    args = p.parse_args()
    profile = load_profile(args.profile)
    names = args.names or load_agent(None).split.held_out
    settings = [("mallocmuzero-greedy", None)] + [("mallocmuzero", s) for s in args.simulations]
    rows = []
    for name in names:
        instance = load(name)
        xla = simulate(instance, solve(instance, profile, args.budget, policy="xla-msa"), profile)
        for policy, sims in settings:
            start = time.perf_counter()
            options = {} if sims is None else {"simulations": sims}
            mapping = solve(instance, profile, args.budget, policy=policy, **options)
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
