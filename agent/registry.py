"""Mapping policies behind one interface: `solve(instance, profile, budget, policy=...)`.

| policy      | what |
|-------------|------|
| all-fast    | every buffer fast, no budget: the floor any mapping can reach |
| all-slow    | nothing fast |
| random      | the game with uniformly random legal actions |
| first-fit   | the game, each candidate at its lowest free slot |
| xla-msa     | XLA's memory space assignment greedy (see `xla_msa`) |
| cpsat       | OR-Tools CP-SAT: the game's optimum, warm-started with xla-msa |
| mallocmuzero| a trained MuZero checkpoint playing the game with search (`agent.muzero.policy`) |

Policy options (keyword arguments of `solve`, None meaning the default): mallocmuzero
takes `simulations`, `episodes` and `checkpoint` (a checkpoint directory).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from agent.heuristics.baselines import all_fast, all_slow, first_fit, random_legal
from agent.heuristics.cpsat import solve_cpsat
from agent.heuristics.xla_msa import xla_msa
from agent.muzero.policy import EPISODES, solve_mallocmuzero
from harness.model.mapping import Mapping, check_budget
from harness.model.profiles import Profile
from harness.xla.instance import Instance


@dataclasses.dataclass(frozen=True)
class Solution:
    """A policy's mapping with what the policy proved about it: `optimal`, whether no mapping of the game
    simulates faster, and `bound_seconds`, a proven lower bound on the simulated seconds of every mapping
    of the game (None where the policy proves none; only cpsat proves)."""

    mapping: Mapping
    optimal: bool = False
    bound_seconds: Optional[float] = None


def _cpsat(instance: Instance, profile: Profile, budget, seed, time_limit) -> Solution:
    """CP-SAT's best mapping, warm-started with (and never worse than) xla-msa's, with its proof."""
    hint = xla_msa(instance, profile, budget, seed, time_limit)
    result = solve_cpsat(instance, profile, budget, time_limit=time_limit, hint=hint, seed=seed)
    return Solution(result.mapping, bool(result.optimal), float(result.bound_seconds))


def _mallocmuzero(instance: Instance, profile: Profile, budget, seed, time_limit, simulations=None,
                  episodes=None, checkpoint=None) -> Mapping:
    """The shipped (or the named) mallocMuZero checkpoint's best of `episodes` searched episodes."""
    return solve_mallocmuzero(instance, profile, budget, seed, time_limit, simulations, checkpoint,
                              episodes or EPISODES)


_POLICIES: dict[str, Callable] = {
    "all-fast": all_fast,
    "all-slow": all_slow,
    "random": random_legal,
    "first-fit": first_fit,
    "xla-msa": xla_msa,
    "cpsat": _cpsat,
    "mallocmuzero": _mallocmuzero,
}
_OPTIONS = {"mallocmuzero": ("simulations", "episodes", "checkpoint")}


def policies() -> list[str]:
    """Names of the available policies."""
    return list(_POLICIES)


def solve(instance: Instance, profile: Profile, budget: Optional[float], policy: str = "xla-msa",
          seed: int = 0, time_limit: Optional[float] = None, **options) -> Mapping:
    """A mapping of `instance` on `profile` within `budget` x peak live bytes of fast memory
    (`options`: the policy's own settings, see the module docstring)."""
    return solve_detailed(instance, profile, budget, policy, seed, time_limit, **options).mapping


def solve_detailed(instance: Instance, profile: Profile, budget: Optional[float], policy: str = "xla-msa",
                   seed: int = 0, time_limit: Optional[float] = None, **options) -> Solution:
    """`solve`'s mapping with what the policy proved about it (`Solution`: cpsat's optimality and bound)."""
    if policy not in _POLICIES:
        raise ValueError(f"unknown policy {policy!r}; valid policies: {', '.join(_POLICIES)}")
    options = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(options) - set(_OPTIONS.get(policy, ())))
    if unknown:
        valid = ", ".join(_OPTIONS.get(policy, ())) or "none"
        raise ValueError(f"policy {policy!r} has no option {', '.join(unknown)} (its options: {valid})")
    if policy != "all-fast":
        if budget is None:
            raise ValueError(f"policy {policy!r} needs a budget, a fraction of peak live bytes in (0, 1]")
        check_budget(budget)
    found = _POLICIES[policy](instance, profile, budget, seed, time_limit, **options)
    solution = found if isinstance(found, Solution) else Solution(found)
    mapping = solution.mapping
    return dataclasses.replace(solution, mapping=Mapping(mapping.offsets, mapping.n_buffers, instance.name, policy,
                                                         mapping.budget))
