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
not one. Both bounds include the run's launch (`program_overhead_seconds`), which
every mapping pays once.

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
    _check_inputs(instance, profile, budget, hint)
    game = make_game(instance, profile, budget)
    plane = _Plane.of(game)
    offload = profile.memory_model == "offload"
    objective = _offload_objective(game, plane.n) if offload else _direct_objective(game, plane.n)
    model = _Model.build(plane, objective, _hint_on_grid(hint, game.candidates, plane))
    solver, status = _solve(model.cp, time_limit, seed, workers, instance.name)
    offsets = _offsets(solver, status, model, game.candidates, plane.slot_bytes)
    mapping = Mapping(offsets, len(instance.buffers), instance.name, "cpsat", budget)
    seconds = simulate(instance, mapping, profile)
    bound = objective.floor_seconds if offload else _direct_bound(solver, model, objective)
    optimal = (not offload) and status == cp_model.OPTIMAL
    if hint is not None:
        hint_seconds = simulate(instance, hint, profile)
        if hint_seconds < seconds:
            mapping = Mapping(dict(hint.offsets), len(instance.buffers), instance.name, "cpsat", budget)
            seconds = hint_seconds
            # A hint off the slot grid can beat the grid's optimum: then the bound is not its.
            optimal = optimal and hint_seconds >= bound * (1 - FLOAT32_SLACK)
    bound = min(bound, seconds)  # the simulator's float32 rounding must not lift the bound above
    return CpsatResult(mapping, float(seconds), float(bound), optimal, solver.status_name(status),
                       time.perf_counter() - t0)


def _check_inputs(instance: Instance, profile: Profile, budget: Optional[float], hint: Optional[Mapping]) -> None:
    """A budget is given, and the hint (if any) is a feasible mapping: MappingError names the hint."""
    if budget is None:
        raise ValueError("budget: cpsat needs a fraction of peak live bytes in (0, 1], got None")
    if hint is not None:
        try:
            validate(instance, hint, profile, budget)
        except MappingError as err:
            raise MappingError(f"hint: {err}") from None


@dataclasses.dataclass(frozen=True)
class _Plane:
    """The game's time x address plane: n candidates with their live steps [start, end] and sizes in
    slots, and the usable slots (the game keeps at least one; where the capacity is less than one slot
    there are none)."""

    n: int
    slot_bytes: int
    n_slots: int
    size: np.ndarray
    start: np.ndarray
    end: np.ndarray

    @staticmethod
    def of(game) -> _Plane:
        cands, n = game.candidates, game.candidates.n
        return _Plane(n, game.slot_bytes, min(game.n_slots, game.capacity // game.slot_bytes),
                      np.asarray(game.spec.slots, dtype=np.int64)[:n], np.asarray(cands.start, dtype=np.int64),
                      np.asarray(cands.end, dtype=np.int64))


def _hint_on_grid(hint: Optional[Mapping], cands, plane: _Plane) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """None without a hint; else per candidate whether the hint makes it fast, and its slot where its
    offset lies on the slot grid inside the plane (-1 elsewhere)."""
    if hint is None:
        return None
    fast = np.zeros(plane.n, dtype=bool)
    slot = np.full(plane.n, -1, dtype=np.int64)
    for c, members in enumerate(cands.members):
        off = hint.offsets.get(members[0])
        if off is not None:
            fast[c] = True
            if off % plane.slot_bytes == 0 and off // plane.slot_bytes + plane.size[c] <= plane.n_slots:
                slot[c] = off // plane.slot_bytes
    return fast, slot


@dataclasses.dataclass
class _Model:
    """The CP-SAT model: per useful candidate c a Bool x[c] (fast) and its slot o[c]; the objective's
    variable terms, and its units that no mapping changes (ops compute-bound whatever is fast)."""

    cp: cp_model.CpModel
    x: dict[int, cp_model.IntVar]
    o: dict[int, cp_model.IntVar]
    terms: list = dataclasses.field(default_factory=list)
    constant_units: int = 0

    @staticmethod
    def build(plane: _Plane, objective: _Objective, hint: Optional[tuple[np.ndarray, np.ndarray]]) -> _Model:
        """Placement variables, no-overlap and clique cuts, the objective, and the hint (if any)."""
        model = _Model(cp_model.CpModel(), {}, {})
        useful = objective.useful & (plane.size <= plane.n_slots)
        model.place(np.flatnonzero(useful).tolist(), plane)
        hint_x = hint[0] if hint is not None else np.zeros(plane.n, dtype=bool)
        hint_value = model.minimize(objective, hint_x)
        if hint is not None:
            for c in model.x:
                model.cp.add_hint(model.x[c], bool(hint_x[c]))
                model.cp.add_hint(model.o[c], int(max(hint[1][c], 0)))
            for e, v in hint_value.items():
                model.cp.add_hint(e, int(v))
        return model

    def place(self, chosen: list[int], plane: _Plane) -> None:
        """Rectangles of steps x slots, present iff fast, that do not overlap."""
        t_iv, a_iv = [], []
        for c in chosen:
            self.x[c] = self.cp.new_bool_var(f"x{c}")
            self.o[c] = self.cp.new_int_var(0, int(plane.n_slots - plane.size[c]), f"o{c}")
            t_iv.append(self.cp.new_optional_fixed_size_interval_var(
                int(plane.start[c]), int(plane.end[c] - plane.start[c] + 1), self.x[c], f"t{c}"))
            a_iv.append(self.cp.new_optional_fixed_size_interval_var(self.o[c], int(plane.size[c]), self.x[c],
                                                                     f"a{c}"))
        if len(self.x) > 1:
            self.cp.add_no_overlap_2d(t_iv, a_iv)
        _add_clique_cuts(self.cp, self.x, plane.start, plane.end, plane.size, plane.n_slots)

    def minimize(self, objective: _Objective, hint_x: np.ndarray) -> dict:
        """The objective's terms, max(floor, const - sum_c coef_c x_c) units each; the hint's value of each
        term variable."""
        hint_value = {}
        for const, coef, cs, floor in objective.terms:
            pairs = [(c, d) for c, d in zip(cs, coef) if c in self.x and d != 0]
            lo = const - sum(max(d, 0) for _, d in pairs)
            hi = const - sum(min(d, 0) for _, d in pairs)
            expr = const - sum(d * self.x[c] for c, d in pairs)
            if floor >= hi:  # the floor whatever is fast (compute-bound)
                self.constant_units += floor
            elif floor <= lo:  # the affine term whatever is fast (memory-bound)
                self.terms.append(expr)
            else:
                e = self.cp.new_int_var(floor, hi, f"e{len(self.terms)}")
                self.cp.add(e >= expr)
                self.terms.append(e)
                hint_value[e] = max(floor, const - sum(d for c, d in pairs if hint_x[c]))
        self.cp.minimize(sum(self.terms))
        return hint_value


def _solve(model: cp_model.CpModel, time_limit: Optional[float], seed: int, workers: int,
           name: str) -> tuple[cp_model.CpSolver, int]:
    """The solver after its search, and its status; RuntimeError if the model is infeasible or invalid
    (all-slow is always feasible, so that is a bug)."""
    solver = cp_model.CpSolver()
    if time_limit is not None:
        solver.parameters.max_time_in_seconds = max(float(time_limit), 0.0)
    solver.parameters.num_workers = max(1, int(workers))
    solver.parameters.random_seed = int(seed)
    status = solver.solve(model)
    if status in (cp_model.INFEASIBLE, cp_model.MODEL_INVALID):
        raise RuntimeError(f"CP-SAT: {solver.status_name(status)} on {name!r}: {model.validate()}")
    return solver, status


def _offsets(solver: cp_model.CpSolver, status: int, model: _Model, cands, slot_bytes: int) -> dict[int, int]:
    """Byte offsets of the buffers of the fast candidates of the solution found (none if none was)."""
    offsets = {}
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        for c in model.x:
            if solver.boolean_value(model.x[c]):
                for b in cands.members[c]:
                    offsets[b] = int(solver.value(model.o[c])) * slot_bytes
    return offsets


def _direct_bound(solver: cp_model.CpSolver, model: _Model, objective: _Objective) -> float:
    """CP-SAT's proven bound less the rounding allowance, in seconds, plus the ops outside the model."""
    model_bound = float(solver.best_objective_bound) if model.terms else 0.0
    if not np.isfinite(model_bound):
        model_bound = 0.0
    units = max(model_bound + model.constant_units - objective.eps_units, 0.0)
    return units / objective.scale + objective.constant_seconds


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
    # The run's launch (program_overhead_seconds) is paid once whatever the mapping.
    constant_seconds = float(sum(max(comp[op], mem0[op]) for op in constant_ops)) + float(t.launch)
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
    floor_seconds = float(np.sum(np.asarray(t.weight, dtype=np.float64) * elapsed)) + float(t.launch)
    total = float(seconds.sum())
    scale = SCALE_UNITS / total if total > 0 else 1.0
    coef = [int(round(scale * s)) for s in seconds]
    terms = [(d, [d], [c], 0) for c, d in enumerate(coef) if d > 0]
    useful = np.array([d > 0 for d in coef], dtype=bool)
    return _Objective(terms, useful, scale, 0.5 * len(terms), floor_seconds=floor_seconds)
