"""Mapping policies behind one interface: `solve(instance, profile, budget, policy=...)`.

| policy      | what |
|-------------|------|
| all-fast    | every buffer fast, no budget: the floor any mapping can reach |
| all-slow    | nothing fast |
| random      | the game with uniformly random legal actions |
| first-fit   | the game, each candidate at its lowest free slot |
| xla-msa     | XLA's memory space assignment greedy (see `xla_msa`) |
| cpsat       | OR-Tools CP-SAT: the game's optimum, warm-started with xla-msa |
| mallocmuzero| a trained checkpoint's network playing the game with rollout search (`agent.muzero.policy`) |
| mallocmuzero-fortified | the same search, fortified: never slower than xla-msa by construction |
| mallocmuzero-greedy | the network alone: its most likely legal action at each decision |

Policy options (keyword arguments of `solve`, None meaning the default): the mallocmuzero
policies take `checkpoint` (a checkpoint directory), the searching ones `simulations`
(actions scored per decision).

Plugins: a policy is any function `policy(instance, profile, budget, seed, time_limit)
-> Mapping`. An installed package declares it as an entry point of the group
`mallocbench.policies` (named by the entry point); a `module:function` reference given
as the policy name loads it without a package (named by the reference). A plugin that
cannot be loaded or has the wrong signature is left out and listed by `problems()`; one
that raises is named in a PluginError, one that returns something other than a Mapping in
a MappingError.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Optional

from agent.heuristics.baselines import all_fast, all_slow, first_fit, random_legal
from agent.heuristics.cpsat import solve_cpsat
from agent.heuristics.xla_msa import xla_msa
from agent.muzero.policy import play
from harness.model.mapping import Mapping, MappingError, check_budget
from harness.model.profiles import Profile
from workloads.plugins import PluginError, Problem, check_call, is_reference, load_installed, load_reference
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


def _mallocmuzero(mode: str) -> Callable:
    def policy(instance: Instance, profile: Profile, budget, seed, time_limit, simulations=None,
               checkpoint=None) -> Mapping:
        return play(instance, profile, budget, mode, simulations, checkpoint, time_limit)[0]

    policy.__doc__ = (f"The shipped (or the named) mallocMuZero checkpoint's network, mode {mode!r} (agent.muzero.policy);"
                      " `time_limit` seconds: the search's deadline (its best episode so far when it passes).")
    return policy


_POLICIES: dict[str, Callable] = {
    "all-fast": all_fast,
    "all-slow": all_slow,
    "random": random_legal,
    "first-fit": first_fit,
    "xla-msa": xla_msa,
    "cpsat": _cpsat,
    "mallocmuzero": _mallocmuzero("search"),
    "mallocmuzero-fortified": _mallocmuzero("fortified"),
    "mallocmuzero-greedy": _mallocmuzero("greedy"),
}
_OPTIONS = {"mallocmuzero": ("simulations", "checkpoint"), "mallocmuzero-fortified": ("simulations", "checkpoint"),
            "mallocmuzero-greedy": ("checkpoint",)}
GROUP = "mallocbench.policies"
SIGNATURE = "(instance, profile, budget, seed, time_limit) -> Mapping"
_REFERENCES: dict[str, Callable] = {}  # module:function plugins, loaded when first named


def plugin_policy(name: str, obj) -> Callable:
    """`obj` if it is a function callable as a policy, `SIGNATURE`; else PluginError naming `name`."""
    check_call(obj, name, SIGNATURE, 5)
    return obj


@functools.lru_cache(maxsize=1)
def _installed() -> tuple[dict[str, Callable], list[Problem]]:
    """The installed plugin policies (entry points of `GROUP`, loaded once) and those left out."""
    return load_installed(GROUP, plugin_policy, _POLICIES)


def problems() -> list[Problem]:
    """The installed plugin policies left out, each with its error."""
    return list(_installed()[1])


def plugins() -> list[str]:
    """Names of the installed plugin policies (entry points that loaded)."""
    return list(_installed()[0])


def policies() -> list[str]:
    """Names of the available policies: the built-in ones, then the installed plugins'."""
    return [*_POLICIES, *plugins()]


def _policy(name: str) -> Callable:
    """The function of a policy name or `module:function` reference; ValueError listing the valid names,
    PluginError for a reference that cannot be loaded."""
    found = _POLICIES.get(name) or _installed()[0].get(name) or _REFERENCES.get(name)
    if found is not None:
        return found
    if is_reference(name):
        _REFERENCES[name] = plugin_policy(name, load_reference(name))
        return _REFERENCES[name]
    raise ValueError(f"unknown policy {name!r}; valid policies: {', '.join(policies())} (or module:function)")


def resolve(given, extra: tuple[str, ...] = ()) -> tuple[list[str], list[Problem]]:
    """The names of `given` that are policies or in `extra` (names the caller knows, such as xla-native),
    each once, and the problems of the plugins among them that cannot be loaded; an unknown plain name
    raises ValueError."""
    found, bad = [], []
    for name in dict.fromkeys(given):
        try:
            if name not in extra:
                _policy(name)
            found.append(name)
        except PluginError as err:
            bad.append(Problem(name, "command line", str(err)))
    return found, bad


def _run_plugin(fn: Callable, policy: str, instance: Instance, profile: Profile, budget, seed, time_limit) -> Mapping:
    """A plugin policy's mapping; PluginError naming it when it raises, MappingError when it returns no Mapping."""
    try:
        mapping = fn(instance, profile, budget, seed, time_limit)
    except Exception as err:  # a plugin may raise anything: name it
        raise PluginError(f"policy {policy!r} raised {type(err).__name__}: {err}") from err
    if not isinstance(mapping, Mapping):
        raise MappingError(f"policy {policy!r} returned a {type(mapping).__name__}, not a harness Mapping")
    return mapping


def solve(instance: Instance, profile: Profile, budget: Optional[float], policy: str = "xla-msa",
          seed: int = 0, time_limit: Optional[float] = None, **options) -> Mapping:
    """A mapping of `instance` on `profile` within `budget` x peak live bytes of fast memory
    (`options`: the policy's own settings, see the module docstring)."""
    return solve_detailed(instance, profile, budget, policy, seed, time_limit, **options).mapping


def solve_detailed(instance: Instance, profile: Profile, budget: Optional[float], policy: str = "xla-msa",
                   seed: int = 0, time_limit: Optional[float] = None, **options) -> Solution:
    """`solve`'s mapping with what the policy proved about it (`Solution`: cpsat's optimality and bound)."""
    fn = _policy(policy)
    options = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(options) - set(_OPTIONS.get(policy, ())))
    if unknown:
        valid = ", ".join(_OPTIONS.get(policy, ())) or "none"
        raise ValueError(f"policy {policy!r} has no option {', '.join(unknown)} (its options: {valid})")
    if policy != "all-fast":
        if budget is None:
            raise ValueError(f"policy {policy!r} needs a budget, a fraction of peak live bytes in (0, 1]")
        check_budget(budget)
    found = fn(instance, profile, budget, seed, time_limit, **options) if policy in _POLICIES else \
        _run_plugin(fn, policy, instance, profile, budget, seed, time_limit)
    solution = found if isinstance(found, Solution) else Solution(found)
    mapping = solution.mapping
    return dataclasses.replace(solution, mapping=Mapping(mapping.offsets, mapping.n_buffers, instance.name, policy,
                                                         mapping.budget))
