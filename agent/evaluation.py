"""`mallocbench eval`: a checkpoint against xla-msa and cpsat on the instances of its split.

One row per instance and policy (instance, split, policy, simulated_seconds, optimal),
plus a row "cpsat-bound" whose time is CP-SAT's proven lower bound on any mapping's
simulated time, and a summary over the held-out instances: the geometric-mean speedup
of mallocmuzero over xla-msa, the share of instances where it is no worse, the mean
gap to the optimum over the instances where cpsat proves optimality, and the ceiling
no policy playing the game can pass: the geometric mean of xla-msa's time over the
bound.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np

from agent.data.split import load
from agent.muzero.policy import EPISODES, load_agent
from agent.registry import solve, solve_detailed
from harness.model.profiles import Profile
from harness.model.simulator import simulate

COLUMNS = ("instance", "split", "policy", "simulated_seconds", "optimal")
SPLITS = ("held-out", "train", "all")
BOUND = "cpsat-bound"  # CP-SAT's proven lower bound of the simulated time over every mapping of the game
TOLERANCE = 1e-6  # relative: "no worse than" forgives float32 rounding of the game's times


def evaluate_checkpoint(checkpoint: Optional[str], profile: Profile, budget: float, split: str = "held-out",
                        simulations: Optional[int] = None, episodes: int = EPISODES,
                        cpsat_time_limit: float = 10.0,
                        on_instance: Optional[Callable[[str], None]] = None) -> tuple[list[dict], dict]:
    """Rows of the eval table and its summary (over the held-out instances, or the training ones
    for `split="train"`)."""
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
    agent = load_agent(checkpoint)
    names = [(n, "held-out") for n in agent.split.held_out] if split != "train" else []
    names += [(n, "train") for n in agent.split.train] if split != "held-out" else []
    rows = []
    for name, part in names:
        if on_instance:
            on_instance(name)
        instance = load(name)
        mz = solve(instance, profile, budget, policy="mallocmuzero", simulations=simulations, episodes=episodes,
                   checkpoint=checkpoint)
        xla = solve(instance, profile, budget, policy="xla-msa")
        exact = solve_detailed(instance, profile, budget, policy="cpsat", time_limit=cpsat_time_limit)
        for policy, mapping, optimal in (("mallocmuzero", mz, None), ("xla-msa", xla, None),
                                         ("cpsat", exact.mapping, exact.optimal)):
            rows.append({"instance": name, "split": part, "policy": policy,
                         "simulated_seconds": simulate(instance, mapping, profile), "optimal": optimal})
        rows.append({"instance": name, "split": part, "policy": BOUND, "simulated_seconds": exact.bound_seconds,
                     "optimal": None})
    return rows, summarize(rows, "train" if split == "train" else "held-out")


def summarize(rows: list[dict], split: str = "held-out") -> dict:
    """The summary figures of eval rows, over the instances of `split`."""
    by = {}
    for r in rows:
        if r["split"] == split:
            by.setdefault(r["instance"], {})[r["policy"]] = r
    ratios, gaps, ceilings = [], [], []
    for policies in by.values():
        mz = policies["mallocmuzero"]["simulated_seconds"]
        ratios.append(policies["xla-msa"]["simulated_seconds"] / mz)
        if BOUND in policies:
            ceilings.append(policies["xla-msa"]["simulated_seconds"] / policies[BOUND]["simulated_seconds"])
        if policies["cpsat"]["optimal"]:
            gaps.append(mz / policies["cpsat"]["simulated_seconds"] - 1.0)
    ratios = np.asarray(ratios)
    return {
        "n_instances": len(by),
        "geomean_speedup_vs_xla_msa": float(np.exp(np.mean(np.log(ratios)))) if len(ratios) else math.nan,
        "share_no_worse_than_xla_msa": float(np.mean(ratios >= 1.0 - TOLERANCE)) if len(ratios) else math.nan,
        "mean_gap_to_optimum": float(np.mean(gaps)) if gaps else None,
        "n_optimal": len(gaps),
        "geomean_speedup_bound_vs_xla_msa": float(np.exp(np.mean(np.log(ceilings)))) if ceilings else None,
    }
