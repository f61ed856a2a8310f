"""Write the agent's demonstrations (`agent.data.demos`): for every training game, the best known mapping.

Games: the default split's training instances x PROFILES x BUDGETS. Per game,
xla-msa's mapping, then CP-SAT (`agent.heuristics.cpsat.solve_cpsat`) hinted
with it, within --limit seconds on --workers workers; the demo is CP-SAT's
mapping where it simulates faster than xla-msa's (source cpsat-optimal when
proven optimal, else cpsat-best), else xla-msa's. One file per (profile,
budget) under agent/data/demos/, written as soon as its games are done.

Usage (one core, the machine is shared):
    PYTHONPATH=$PWD nice -n 10 python scripts/make_agent_demos.py --limit 5 --workers 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from agent.data import demos as D
from agent.data.split import default_split, load
from agent.heuristics.cpsat import solve_cpsat
from agent.heuristics.xla_msa import xla_msa
from harness.model.profiles import Profile, load_profile
from harness.model.simulator import simulate
from harness.xla.instance import Instance

PROFILES = ("tpu-v4i-cmem", "h100-offload")
BUDGETS = (0.25, 0.5, 0.75)


def demo(name: str, instance: Instance, profile: Profile, budget: float, limit: float, workers: int) -> D.Demo:
    """The best known mapping of one game, `name` the instance's split name (module docstring)."""
    hint = xla_msa(instance, profile, budget, 0, None)
    xla_seconds = simulate(instance, hint, profile)
    found = solve_cpsat(instance, profile, budget, time_limit=limit, hint=hint, seed=0, workers=workers)
    if found.objective_seconds < xla_seconds:
        source, offsets, seconds = ("cpsat-optimal" if found.optimal else "cpsat-best"), found.mapping.offsets, \
            found.objective_seconds
    else:
        source, offsets, seconds = "xla-msa", hint.offsets, xla_seconds
    return D.Demo(name, dict(offsets), source, float(seconds), float(xla_seconds),
                  float(found.bound_seconds), float(limit), D.buffers_sha256(instance),
                  bool(found.optimal))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=float, default=5.0, help="CP-SAT seconds per game (default 5)")
    parser.add_argument("--workers", type=int, default=1, help="CP-SAT workers (default 1: one core)")
    parser.add_argument("--profiles", nargs="+", default=list(PROFILES), help=f"default: {' '.join(PROFILES)}")
    parser.add_argument("--budgets", nargs="+", type=float, default=list(BUDGETS), help="default: 0.25 0.5 0.75")
    parser.add_argument("--out", type=Path, default=D.DEMO_DIR, help="directory of the files")
    parser.add_argument("--only", nargs="*", help="remake these training instances' demos only, keeping the "
                        "others in the files (default: all)")
    args = parser.parse_args(argv)
    names = list(default_split().train)
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            parser.error(f"--only: not training instances: {', '.join(unknown)}; valid: {', '.join(names)}")
        names = [n for n in names if n in args.only]
    instances = {n: load(n) for n in names}
    print(f"{len(names)} instances x {len(args.profiles)} profiles x {len(args.budgets)} budgets = "
          f"{len(names) * len(args.profiles) * len(args.budgets)} games, CP-SAT {args.limit:g} s each", flush=True)
    t0 = time.perf_counter()
    for profile_name in args.profiles:
        profile = load_profile(profile_name)
        for budget in args.budgets:
            made = tuple(demo(n, instances[n], profile, budget, args.limit, args.workers) for n in names)
            path = D.save(D.DemoSet(profile.name, budget, D.fingerprint(profile), made), args.out,
                          keep_others=bool(args.only))
            counts = {s: sum(d.source == s for d in made) for s in D.SOURCES}
            counts["proven optimal"] = sum(d.optimal for d in made)
            print(f"{path.name}: {counts}, mean gain {sum(d.gain for d in made) / len(made):.5f}, "
                  f"{time.perf_counter() - t0:.0f} s so far", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
