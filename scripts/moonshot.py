"""The moonshot: the agent's search in at most --seconds against CP-SAT's best in --cpsat-time-limit seconds.

On each held-out instance of the shipped checkpoint's split (or --names): xla-msa's mapping, CP-SAT's
(`cpsat` policy: hinted with xla-msa, never worse) within --cpsat-time-limit seconds, and the `mallocmuzero`
policy's search with --simulations and a deadline of --seconds (`agent.muzero.policy.play`: the anytime
rollout stops at it with its best episode so far; the wall time counts the whole call). A first call with a
deadline of 0 compiles the programs of the instance's shapes outside the timing (one searched decision; the
persistent compilation cache makes that the steady state of a fresh process too).

    PYTHONPATH=$PWD python scripts/moonshot.py --profile tpu-v4i-cmem [--budget 0.5] [--seconds 1] \
        [--cpsat-time-limit 10] [--simulations 8] [--names NAME ...] [--out results/eval]

Writes OUT/moonshot-PROFILE-BUDGET.csv, one row per instance: the simulated seconds of xla-msa, CP-SAT and
the agent, whether CP-SAT proved optimality, the wall seconds of CP-SAT and the agent, the decisions the
agent searched before its deadline (of all), and `agent_wins` (the agent faster than CP-SAT's best). Prints,
over the instances CP-SAT did not prove, on how many the agent wins and the share of the room captured,
sum(t_xla-msa - t_agent) / sum(t_xla-msa - t_best) with t_best CP-SAT's best (never worse than xla-msa's),
and the same share over every instance.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

from agent.data.split import load
from agent.evaluation import TOLERANCE
from agent.game.rules import make_game
from agent.muzero.policy import load_agent, play
from agent.registry import solve, solve_detailed
from harness.model.profiles import load_profile
from harness.model.simulator import simulate


def row(name: str, profile, budget: float, seconds: float, cpsat_limit: float, simulations: int) -> dict:
    """The moonshot's figures of one instance (module docstring)."""
    instance = load(name)
    xla = simulate(instance, solve(instance, profile, budget, policy="xla-msa"), profile)
    start = time.perf_counter()
    cpsat = solve_detailed(instance, profile, budget, policy="cpsat", time_limit=cpsat_limit)
    cpsat_wall = time.perf_counter() - start
    play(instance, profile, budget, "search", simulations, seconds=0.0)  # compile outside the timing
    start = time.perf_counter()
    mapping, stats = play(instance, profile, budget, "search", simulations, seconds=seconds)
    agent_wall = time.perf_counter() - start
    best = min(simulate(instance, cpsat.mapping, profile), xla)
    agent = simulate(instance, mapping, profile)
    return {"instance": name, "xla_msa_seconds": xla, "cpsat_seconds": best, "cpsat_optimal": cpsat.optimal,
            "cpsat_wall_seconds": round(cpsat_wall, 3), "agent_seconds": agent, "agent_wall_seconds": round(agent_wall, 3),
            "decisions_searched": stats["decisions_searched"], "decisions": make_game(instance, profile, budget).candidates.n,
            "agent_wins": bool(agent < best * (1 - TOLERANCE))}


def summary(rows: list[dict]) -> str:
    """Wins and shares of the room, over the instances CP-SAT did not prove and over all."""
    def share(sel: list[dict]):
        room = sum(r["xla_msa_seconds"] - r["cpsat_seconds"] for r in sel)
        gain = sum(r["xla_msa_seconds"] - r["agent_seconds"] for r in sel)
        return f"{gain / room:.1%}" if room > 0 else "n/a (no room)"

    hard = [r for r in rows if not r["cpsat_optimal"]]
    ratios = np.array([r["xla_msa_seconds"] / r["agent_seconds"] for r in rows])
    return (f"{len(hard)} of {len(rows)} instances not proven optimal by CP-SAT: the agent beats CP-SAT's best on "
            f"{sum(r['agent_wins'] for r in hard)}, share of the room captured {share(hard)}; over all "
            f"{len(rows)}: share of the room {share(rows)}, geomean speedup over xla-msa "
            f"{np.exp(np.mean(np.log(ratios))):.4f}, mean agent wall {np.mean([r['agent_wall_seconds'] for r in rows]):.2f} s, "
            f"searched to the end on {sum(r['decisions_searched'] == r['decisions'] for r in rows)}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", required=True)
    p.add_argument("--budget", type=float, default=0.5)
    p.add_argument("--seconds", type=float, default=1.0, help="the agent's deadline per instance (default 1)")
    p.add_argument("--cpsat-time-limit", type=float, default=10.0, help="CP-SAT's seconds (default 10)")
    p.add_argument("--simulations", type=int, default=8, help="actions the search scores per decision (default 8)")
    p.add_argument("--names", nargs="*", help="instances (default: the shipped checkpoint's held-out split)")
    p.add_argument("--out", default="results/eval")
    args = p.parse_args(argv)
    profile = load_profile(args.profile)
    names = args.names or load_agent(None).split.held_out
    rows = []
    for name in names:
        rows.append(row(name, profile, args.budget, args.seconds, args.cpsat_time_limit, args.simulations))
        r = rows[-1]
        print(f"{name:40s} xla/agent {r['xla_msa_seconds'] / r['agent_seconds']:.5f} xla/cpsat "
              f"{r['xla_msa_seconds'] / r['cpsat_seconds']:.5f} optimal {r['cpsat_optimal']!s:5s} agent "
              f"{r['agent_wall_seconds']:.2f} s ({r['decisions_searched']}/{r['decisions']})", flush=True)
    out = Path(args.out) / f"moonshot-{profile.name}-{args.budget:g}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{summary(rows)} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
