"""The mallocGame solved exactly with OR-Tools CP-SAT.

The game (`agent.game`) places candidates (alias groups of buffers, which share
memory) on a plane of schedule steps x address slots. CP-SAT decides all of
them at once:

- per candidate c a Bool ``x_c`` (fast), a fixed time interval
  ``[start_c, end_c + 1)`` and an address interval ``[o_c, o_c + size_c)``
  with ``o_c`` in ``[0, n_slots - size_c]``, both present iff ``x_c``; an
  ``AddNoOverlap2D`` over the pairs keeps fast rectangles apart. Candidates
  larger than the plane are slow. A candidate that no variable term of the
  objective rewards (no accesses, only accesses by ops that stay compute-bound,
  or a fast tier no faster than the slow one) is set slow: that never makes a
  mapping slower or infeasible, and it shrinks the search.
- redundant clique cuts: at each candidate's start step, the sizes of the fast
  candidates live there sum to at most ``n_slots`` (they strengthen the LP
  relaxation; NoOverlap2D implies them).

Objective, memory model ``direct``: exactly the cost model
(`harness.costmodel`), on integer-scaled times. Per op t with executions w_t,
compute time C_t and accesses of n_tc bytes to candidate c,

    w_t * elapsed_t = w_t * max(C_t, op_bytes_t / slow_bw + overhead_t - sum_c x_c n_tc (1/slow_bw - 1/fast_bw))

so a variable E_t >= both affine terms (scaled by w_t) and the objective is sum_t E_t. Ops
without accesses, and ops compute-bound whatever is fast, are constants kept
out of the model; ops memory-bound whatever is fast need no E_t (their memory
term is the objective term). Times are scaled by S units per second, S chosen
so the variable ops' all-slow time is ``SCALE_UNITS`` (1e9) units, and every
coefficient (S w_t C_t, S w_t (op_bytes_t / slow_bw + overhead_t), and each
S w_t n_tc (1/slow_bw - 1/fast_bw)) is rounded to the nearest integer. An op
with k_t accesses is then off by at most 0.5 (1 + k_t) units for any mapping,
so the model's objective is within eps = sum_t 0.5 (1 + k_t) units of S times
the true time, and CP-SAT's optimum is within 2 eps / S seconds of the true
optimum of the game (relative to the variable ops' all-slow time: 2 eps / 1e9,
e.g. 1.5e-6 for 500 ops with 1000 accesses; usually far less, as rounding
errors do not all point one way). The reported bound is
``(CP-SAT bound - eps) / S`` plus the constant ops: a lower bound on the true
optimum over the game's grid. The cost model itself computes in float32; the
bound is capped at the returned objective so that its rounding (about 1e-7
relative) can never put the bound above it.

Objective, memory model ``offload``: the copy-queue simulation (stalls when
the queued copies are not hidden by compute) is not linear. CP-SAT minimises a
linear surrogate instead: the weighted bytes of the copies each slow candidate
causes (one copy out after each definition, one copy in before each read, as
the cost model queues them), divided by the copy bandwidth. In this model an
op's own time does not depend on the mapping, so the surrogate's optimum is
not the game's; the result has ``optimal=False``. Its ``bound_seconds`` is the
simulated time with no stalls at all (the ops' time, which no mapping can beat):
a valid lower bound of the simulated time, where the surrogate's own bound is
not one.

Warm start: a `hint` mapping (e.g. xla-msa's) is given to CP-SAT as a complete
solution hint (x_c, o_c where it lies on the slot grid, and E_t). After
solving, the CP-SAT mapping and the hint are both simulated with
`harness.model.simulator.simulate` and the faster is returned, so the result is never
worse than the hint. ``optimal`` stays True when the hint wins after a proof
of optimality (it can only win by rounding), unless the hint lies off the slot
grid and beats the grid's bound.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Optional

import jax.numpy as jnp
import numpy as np
from ortools.sat.python import cp_model

from agent.game.rules import make_game
from harness.model.costmodel import op_elapsed
from harness.xla.instance import Instance
from harness.model.mapping import Mapping, MappingError, validate
from harness.model.profiles import Profile
from harness.model.simulator import simulate

SCALE_UNITS = 1e9  # the variable part of the all-slow time, in model units
FLOAT32_SLACK = 1e-6  # relative rounding of the simulator's float32 sums


@dataclasses.dataclass(frozen=True)
class CpsatResult:
    """What `solve_cpsat` found.

    `objective_seconds` is `harness.model.simulator.simulate` of `mapping`;
    `bound_seconds` a proven lower bound of the simulated time of every
    mapping on the game's grid (see the module docstring for its rounding);
    `optimal` whether `mapping` is proven optimal (direct model, CP-SAT status
    OPTIMAL; within the rounding bound of the module docstring); `status`
    CP-SAT's status name (OPTIMAL, FEASIBLE, UNKNOWN, ...); `wall_seconds`
    the whole call, model building and evaluation included.
    """

    mapping: Mapping
    objective_seconds: float
    bound_seconds: float
    optimal: bool
    status: str
    wall_seconds: float


def solve_cpsat(instance: Instance, profile: Profile, budget: float, time_limit: Optional[float] = None,
                hint: Optional[Mapping] = None, seed: int = 0, workers: int = 2) -> CpsatResult:
    """The best mapping of `instance` on `profile` within `budget` x peak live bytes, by CP-SAT.

    Solves the mallocGame on its slot grid (`agent.game.rules.make_game`) exactly for
    the ``direct`` memory model and through a linear surrogate for ``offload``
    (module docstring). `time_limit` (seconds, None: until proven) bounds
    CP-SAT's search; the best mapping found and the proven bound are returned.
    `hint` (a feasible mapping, checked with `harness.model.mapping.validate`) warm
    starts the search, and is returned instead if it simulates faster. `seed`
    and `workers` are CP-SAT's ``random_seed`` and ``num_workers``. The
    returned mapping passes `validate(instance, mapping, profile, budget)`.
    """
    t0 = time.perf_counter()
    if budget is None:
        raise ValueError("budget: cpsat needs a fraction of peak live bytes in (0, 1], got None")
    if hint is not None:
        try:
            validate(instance, hint, profile, budget)
        except MappingError as err:
            raise MappingError(f"hint: {err}") from None
    game = make_game(instance, profile, budget)
    cands = game.candidates
    # The game keeps at least one slot; where the capacity is less than one slot there are none.
    n, slot_bytes = cands.n, game.slot_bytes
    n_slots = min(game.n_slots, game.capacity // slot_bytes)
    size = np.asarray(game.spec.slots, dtype=np.int64)[:n]
    start = np.asarray(cands.start, dtype=np.int64)
    end = np.asarray(cands.end, dtype=np.int64)
    offload = profile.memory_model == "offload"

    hint_x = np.zeros(n, dtype=bool)
    hint_slot = np.full(n, -1, dtype=np.int64)
    if hint is not None:
        for c, members in enumerate(cands.members):
            off = hint.offsets.get(members[0])
            if off is not None:
                hint_x[c] = True
                if off % slot_bytes == 0 and off // slot_bytes + size[c] <= n_slots:
                    hint_slot[c] = off // slot_bytes

    objective = _offload_objective(game, n) if offload else _direct_objective(game, n)
    useful = objective.useful & (size <= n_slots)

    model = cp_model.CpModel()
    x: dict[int, cp_model.IntVar] = {}
    o: dict[int, cp_model.IntVar] = {}
    t_iv, a_iv = [], []
    for c in np.flatnonzero(useful).tolist():
        x[c] = model.new_bool_var(f"x{c}")
        o[c] = model.new_int_var(0, int(n_slots - size[c]), f"o{c}")
        t_iv.append(model.new_optional_fixed_size_interval_var(int(start[c]), int(end[c] - start[c] + 1), x[c],
                                                               f"t{c}"))
        a_iv.append(model.new_optional_fixed_size_interval_var(o[c], int(size[c]), x[c], f"a{c}"))
    if len(x) > 1:
        model.add_no_overlap_2d(t_iv, a_iv)
    _add_clique_cuts(model, x, start, end, size, n_slots)

    # Objective terms: max(floor, const - sum_c coef_c x_c) units each.
    terms = []
    constant_units = 0
    hint_value = {}
    for const, coef, cs, floor in objective.terms:
        pairs = [(c, d) for c, d in zip(cs, coef) if c in x and d != 0]
        lo = const - sum(max(d, 0) for _, d in pairs)
        hi = const - sum(min(d, 0) for _, d in pairs)
        expr = const - sum(d * x[c] for c, d in pairs)
        if floor >= hi:  # the floor whatever is fast (compute-bound)
            constant_units += floor
        elif floor <= lo:  # the affine term whatever is fast (memory-bound)
            terms.append(expr)
        else:
            e = model.new_int_var(floor, hi, f"e{len(terms)}")
            model.add(e >= expr)
            terms.append(e)
            hint_value[e] = max(floor, const - sum(d for c, d in pairs if hint_x[c]))
    model.minimize(sum(terms))

    if hint is not None:
        for c in x:
            model.add_hint(x[c], bool(hint_x[c]))
            model.add_hint(o[c], int(max(hint_slot[c], 0)))
        for e, v in hint_value.items():
            model.add_hint(e, int(v))

    solver = cp_model.CpSolver()
    if time_limit is not None:
        solver.parameters.max_time_in_seconds = max(float(time_limit), 0.0)
    solver.parameters.num_workers = max(1, int(workers))
    solver.parameters.random_seed = int(seed)
    status = solver.solve(model)
    status_name = solver.status_name(status)
    if status in (cp_model.INFEASIBLE, cp_model.MODEL_INVALID):  # all-slow is always feasible
        raise RuntimeError(f"CP-SAT: {status_name} on {instance.name!r}: {model.validate()}")
    found = status in (cp_model.OPTIMAL, cp_model.FEASIBLE)

    offsets = {}
    if found:
        for c in x:
            if solver.boolean_value(x[c]):
                for b in cands.members[c]:
                    offsets[b] = int(solver.value(o[c])) * slot_bytes
    mapping = Mapping(offsets, len(instance.buffers), instance.name, "cpsat", budget)
    seconds = simulate(instance, mapping, profile)

    if offload:
        bound = objective.floor_seconds
    else:
        model_bound = float(solver.best_objective_bound) if terms else 0.0
        if not np.isfinite(model_bound):
            model_bound = 0.0
        units = max(model_bound + constant_units - objective.eps_units, 0.0)
        bound = units / objective.scale + objective.constant_seconds
    optimal = (not offload) and status == cp_model.OPTIMAL

    if hint is not None:
        hint_seconds = simulate(instance, hint, profile)
        if hint_seconds < seconds:
            mapping = Mapping(dict(hint.offsets), len(instance.buffers), instance.name, "cpsat", budget)
            seconds = hint_seconds
            # A hint off the slot grid can beat the grid's optimum: then the bound is not its.
            optimal = optimal and hint_seconds >= bound * (1 - FLOAT32_SLACK)
    bound = min(bound, seconds)  # the simulator's float32 rounding must not lift the bound above
    return CpsatResult(mapping, float(seconds), float(bound), optimal, status_name, time.perf_counter() - t0)


def _add_clique_cuts(model: cp_model.CpModel, x: dict, start: np.ndarray, end: np.ndarray, size: np.ndarray,
                     n_slots: int) -> None:
    """At each start step, the fast candidates live there fit in the plane (implied by NoOverlap2D;
    stated for the LP relaxation). Steps whose live candidates fit anyway need no cut."""
    chosen = sorted(x)
    seen = set()
    for s in sorted({int(start[c]) for c in chosen}):
        live = tuple(c for c in chosen if start[c] <= s <= end[c])
        if live in seen or sum(int(size[c]) for c in live) <= n_slots:
            continue
        seen.add(live)
        model.add(sum(int(size[c]) * x[c] for c in live) <= n_slots)


@dataclasses.dataclass
class _Objective:
    """A linear objective in integer units: terms (const, coefs, candidates, floor), each
    max(floor, const - sum_c coef_c x_c); which candidates some term rewards for being
    fast; units per second; the rounding allowance (units); what stays outside the model."""

    terms: list[tuple[int, list[int], list[int], int]]
    useful: np.ndarray  # [candidates]
    scale: float
    eps_units: float
    constant_seconds: float = 0.0  # direct: ops whose time no mapping changes
    floor_seconds: float = 0.0  # offload: the stall-free time, a lower bound of every mapping's


def _direct_objective(game, n: int) -> _Objective:
    """The direct model's cost, op by op, on integer-scaled times (module docstring)."""
    t = game.spec.tables
    n_ops = len(np.asarray(t.weight))
    weight = np.asarray(t.weight, dtype=np.float64)
    comp = weight * np.asarray(t.compute, dtype=np.float64)
    fast_bw, slow_bw = (float(np.float32(v)) for v in (t.fast_bw, t.op_slow_bw))
    overhead = np.asarray(t.overhead, dtype=np.float64)
    mem0 = weight * (np.asarray(t.op_bytes, dtype=np.float64) / slow_bw + overhead)
    delta = 1.0 / slow_bw - 1.0 / fast_bw  # seconds saved per byte moved to the fast tier
    per_op: dict[int, list[tuple[int, float]]] = {}
    for op, c, nb in zip(np.asarray(t.acc_op).tolist(), np.asarray(t.acc_cand).tolist(),
                         np.asarray(t.acc_bytes, dtype=np.float64).tolist()):
        if nb > 0 and weight[op] > 0:
            per_op.setdefault(op, []).append((c, nb))
    variable = [op for op in sorted(per_op) if delta != 0]
    constant_ops = sorted(set(range(n_ops)) - set(variable))
    constant_seconds = float(sum(max(comp[op], mem0[op]) for op in constant_ops))
    all_slow = float(sum(max(comp[op], mem0[op]) for op in variable))
    scale = SCALE_UNITS / all_slow if all_slow > 0 else 1.0
    terms, useful, eps = [], np.zeros(n, dtype=bool), 0.0
    for op in variable:
        cs = [c for c, _ in per_op[op]]
        coef = [int(round(scale * weight[op] * nb * delta)) for _, nb in per_op[op]]
        const, floor = int(round(scale * mem0[op])), int(round(scale * comp[op]))
        terms.append((const, coef, cs, floor))
        eps += 0.5 * (1 + len(cs))
        if floor < const:  # memory-bound when all slow: a faster operand saves time
            useful[[c for c, d in zip(cs, coef) if d > 0]] = True
    return _Objective(terms, useful, scale, eps, constant_seconds=constant_seconds)


def _offload_objective(game, n: int) -> _Objective:
    """The offload surrogate: weighted bytes of the copies slow candidates cause, over the copy bandwidth."""
    t = game.spec.tables
    moved = np.zeros(n)
    for cand, nbytes in ((t.pf_cand, t.pf_bytes), (t.ev_cand, t.ev_bytes)):
        cand, nbytes = np.asarray(cand, dtype=np.int64), np.asarray(nbytes, dtype=np.float64)
        keep = nbytes > 0
        np.add.at(moved, cand[keep], nbytes[keep])
    seconds = moved / float(np.float32(t.copy_bw))
    # Ops run at device bandwidth whatever the mapping: their time is a floor no mapping beats.
    elapsed = np.asarray(op_elapsed(t, jnp.zeros_like(t.op_bytes)), dtype=np.float64)
    floor_seconds = float(np.sum(np.asarray(t.weight, dtype=np.float64) * elapsed))
    total = float(seconds.sum())
    scale = SCALE_UNITS / total if total > 0 else 1.0
    coef = [int(round(scale * s)) for s in seconds]
    terms = [(d, [d], [c], 0) for c, d in enumerate(coef) if d > 0]
    useful = np.array([d > 0 for d in coef], dtype=bool)
    return _Objective(terms, useful, scale, 0.5 * len(terms), floor_seconds=floor_seconds)
