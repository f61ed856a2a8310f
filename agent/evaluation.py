"""`mallocbench eval`: a checkpoint against xla-msa and cpsat on the instances of its split.

One row per instance and policy (instance, split, policy, simulated_seconds, optimal,
seconds: the wall time the policy took), for the agent's three policies (`mallocmuzero`,
its search; `mallocmuzero-fortified`; `mallocmuzero-greedy`, the network alone), xla-msa
and cpsat, plus a row "cpsat-bound" whose time is CP-SAT's proven lower bound on any
mapping's simulated time. The summary, over the held-out instances: per agent policy the
geometric-mean speedup over xla-msa, the share of instances where it is no worse, the
share of the room above xla-msa that it captures (sum(t_xla-msa - t_agent) /
sum(t_xla-msa - t_best), t_best the best mapping CP-SAT finds within its limit, never
worse than xla-msa's), the mean gap to the optimum over the instances where cpsat proves
it, and the mean seconds per instance; and the ceiling no policy playing the game can
pass: the geometric mean of xla-msa's time over the bound.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Optional

import numpy as np

from agent.data.split import load
from agent.muzero.policy import load_agent
from agent.registry import solve, solve_detailed
from harness.model.profiles import Profile
from harness.model.simulator import simulate

COLUMNS = ("instance", "split", "policy", "simulated_seconds", "optimal", "seconds")
SPLITS = ("held-out", "train", "all")
AGENT = ("mallocmuzero", "mallocmuzero-fortified", "mallocmuzero-greedy")  # the agent's policies, summarized
BOUND = "cpsat-bound"  # CP-SAT's proven lower bound of the simulated time over every mapping of the game
TOLERANCE = 1e-6  # relative: "no worse than" forgives float32 rounding of the game's times


def evaluate_checkpoint(checkpoint: Optional[str], profile: Profile, budget: float, split: str = "held-out",
                        simulations: Optional[int] = None, cpsat_time_limit: float = 10.0,
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
        solved = []
        for policy in AGENT:
            options = {"checkpoint": checkpoint} | ({} if policy.endswith("greedy") else {"simulations": simulations})
            solved.append(_timed(policy, lambda: (solve(instance, profile, budget, policy=policy, **options), None)))
        xla = _timed("xla-msa", lambda: (solve(instance, profile, budget, policy="xla-msa"), None))
        solved.append(xla)

        def exact():
            result = solve_detailed(instance, profile, budget, policy="cpsat", time_limit=cpsat_time_limit)
            return result.mapping, result

        cpsat = _timed("cpsat", exact)
        solved.append(cpsat)
        for policy, mapping, result, seconds in solved:
            rows.append({"instance": name, "split": part, "policy": policy,
                         "simulated_seconds": simulate(instance, mapping, profile),
                         "optimal": result.optimal if result else None, "seconds": seconds})
        rows.append({"instance": name, "split": part, "policy": BOUND, "simulated_seconds": cpsat[2].bound_seconds,
                     "optimal": None, "seconds": None})
    return rows, summarize(rows, "train" if split == "train" else "held-out")


def _timed(policy: str, solve_it: Callable) -> tuple:
    """(policy, mapping, solver result or None, wall seconds) of `solve_it() -> (mapping, result)`."""
    start = time.perf_counter()
    mapping, result = solve_it()
    return policy, mapping, result, time.perf_counter() - start


def summarize(rows: list[dict], split: str = "held-out") -> dict:
    """The summary figures of eval rows, over the instances of `split` (agent policies absent from
    the rows are left out)."""
    by = {}
    for r in rows:
        if r["split"] == split:
            by.setdefault(r["instance"], {})[r["policy"]] = r
    t = {p: np.array([v[p]["simulated_seconds"] if p in v else np.nan for v in by.values()], np.float64)
         for p in (*AGENT, "xla-msa", "cpsat", BOUND)}
    xla, best = t["xla-msa"], np.minimum(t["cpsat"], t["xla-msa"])
    optimal = np.array([bool(v["cpsat"]["optimal"]) for v in by.values()], bool)
    out = {"n_instances": len(by), "n_optimal": int(optimal.sum())}
    for policy in AGENT:
        if np.isnan(t[policy]).all():
            continue
        ratios, name = xla / t[policy], "" if policy == "mallocmuzero" else policy.split("-")[1] + "_"
        room = float(np.sum(xla - best))
        out.update({
            f"geomean_speedup_{name}vs_xla_msa": _geomean(ratios),
            f"share_no_worse_{name}than_xla_msa": float(np.mean(ratios >= 1.0 - TOLERANCE)) if len(ratios) else math.nan,
            f"share_of_room_captured{'_' + name[:-1] if name else ''}":
                float(np.sum(xla - t[policy]) / room) if room > 0 else None,
            f"mean_gap_to_optimum{'_' + name[:-1] if name else ''}":
                float(np.mean(t[policy][optimal] / t["cpsat"][optimal] - 1.0)) if optimal.any() else None,
            f"seconds_per_instance_{policy.replace('-', '_')}": _mean_seconds(by, policy),
        })
    out["seconds_per_instance_cpsat"] = _mean_seconds(by, "cpsat")
    out["geomean_speedup_bound_vs_xla_msa"] = _geomean(xla / t[BOUND]) if not np.isnan(t[BOUND]).any() else None
    return out


def _geomean(ratios: np.ndarray) -> float:
    return float(np.exp(np.mean(np.log(ratios)))) if len(ratios) else math.nan


def _mean_seconds(by: dict, policy: str) -> Optional[float]:
    seconds = [v[policy].get("seconds") for v in by.values() if policy in v]
    seconds = [s for s in seconds if s is not None]
    return float(np.mean(seconds)) if seconds else None
