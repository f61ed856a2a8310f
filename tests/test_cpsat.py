"""CP-SAT policy: the exact optimum of the mallocGame against brute force, hints, time limits, offload."""

import dataclasses

import pytest

from agent.heuristics.cpsat import CpsatResult, solve_cpsat
from agent.game.rules import make_game
from agent.registry import solve
from agent.data.synthesize import synthetic
from harness.xla.instance import Buffer, CompilerFigures, Instance, Op
from harness.model.mapping import Mapping, MappingError, validate
from harness.model.profiles import Profile
from harness.model.simulator import simulate

BUDGET = 0.5
DIRECT = Profile(
    name="test-direct", description="cpsat tests", backend="tpu", memory_model="direct",
    fast_capacity_bytes=1 << 30, granule_bytes=64, fast_bandwidth=1e9, slow_bandwidth=1e8, copy_bandwidth=1e8,
    flop_rate=1e10, vector_flop_rate=1e10, transcendental_rate=1e9, op_overhead_seconds=1e-6, realizable=False, sources={})
OFFLOAD = dataclasses.replace(DIRECT, name="test-offload", memory_model="offload")


# --- brute force ------------------------------------------------------------------------------


def _first_fit(slot_of: dict, c: int, game) -> int:
    """Lowest slot where candidate c's rectangle misses every placed rectangle overlapping it in time."""
    start, end, size = game.candidates.start, game.candidates.end, game.spec.slots
    busy = sorted((slot_of[p], slot_of[p] + int(size[p])) for p in slot_of
                  if start[p] <= end[c] and start[c] <= end[p])
    lo = 0
    for a, b in busy:
        if a >= lo + int(size[c]):
            break
        lo = max(lo, b)
    return lo


def _pack(subset: tuple[int, ...], game) -> dict | None:
    """Slots for `subset` on the game's grid with no two time-overlapping rectangles sharing a slot,
    or None if there are none.

    Complete: in any packing, taking the rectangles by increasing slot and placing each at its
    lowest free slot (first fit) puts each at or below where it was, so some placement order
    makes first fit succeed. The search tries orders depth-first, merging equal partial packings.
    """
    size, n_slots = game.spec.slots, game.n_slots
    start, end = game.candidates.start, game.candidates.end
    for c in subset:  # quick refusal: the rectangles live at one step must fit side by side
        if sum(int(size[d]) for d in subset if start[d] <= start[c] <= end[d]) > n_slots:
            return None
    seen = set()

    def search(slot_of: dict) -> dict | None:
        if len(slot_of) == len(subset):
            return slot_of
        key = frozenset(slot_of.items())
        if key in seen:
            return None
        seen.add(key)
        for c in subset:
            if c in slot_of:
                continue
            lo = _first_fit(slot_of, c, game)
            if lo + int(size[c]) <= n_slots:
                found = search({**slot_of, c: lo})
                if found is not None:
                    return found
        return None

    return search({})


def _brute_force(instance, profile, budget) -> tuple[float, int]:
    """The least simulated time over every feasible set of fast candidates, and how many sets were feasible."""
    game = make_game(instance, profile, budget)
    n = game.candidates.n
    assert n <= 10, n
    feasible = {}
    best = simulate(instance, Mapping({}, len(instance.buffers)), profile)
    for mask in range(1 << n):  # a subset comes after its subsets
        subset = tuple(c for c in range(n) if mask >> c & 1)
        if any(not feasible[mask & ~(1 << c)] for c in subset):
            feasible[mask] = False  # a superset of an infeasible set
            continue
        slot_of = _pack(subset, game)
        feasible[mask] = slot_of is not None
        if slot_of is None:
            continue
        offsets = {b: slot * game.slot_bytes for c, slot in slot_of.items() for b in game.candidates.members[c]}
        mapping = Mapping(offsets, len(instance.buffers))
        validate(instance, mapping, profile, budget)
        best = min(best, simulate(instance, mapping, profile))
    return best, sum(feasible.values())


def _instance(ops, buffers, name="hand") -> Instance:
    figures = CompilerFigures(0.0, 0.0, 0.0, 0, 0, 0, 0)
    return Instance(name, name, "synthetic", "", "", tuple(ops), tuple(buffers), (), figures)


def _op(step, reads, nbytes, writes, out, flops=0.0, trip_count=1) -> Op:
    return Op(step, f"op{step}", "fusion", "main", flops, 0.0, tuple(reads), tuple(nbytes), tuple(writes), out,
              trip_count, None, "")


def _buf(i, nbytes, start, end, uses, alias_group=None) -> Buffer:
    return Buffer(i, f"b{i}", (), "f32[]", nbytes, start, end, tuple(uses), False, False, False, False,
                  i if alias_group is None else alias_group, -1, "")


def _hand_instance() -> Instance:
    """Six buffers, one alias group of two (a loop-carried value), a loop body op run 5 times and a
    compute-bound op; sizes chosen so that not everything fits at budget 0.5."""
    k = 1024
    buffers = [
        _buf(0, 64 * k, 0, 3, [1, 3]),
        _buf(1, 32 * k, 1, 2, [2], alias_group=1),
        _buf(2, 32 * k, 2, 4, [4], alias_group=1),  # shares memory with buffer 1
        _buf(3, 96 * k, 2, 5, [3, 5]),
        _buf(4, 16 * k, 3, 5, [5]),
        _buf(5, 48 * k, 4, 5, [5]),
    ]
    ops = [
        _op(0, [], [], [0], 64 * k),
        _op(1, [0], [64 * k], [1], 32 * k),
        _op(2, [1], [32 * k], [2, 3], 128 * k, trip_count=5),
        _op(3, [0, 3], [64 * k, 96 * k], [4], 16 * k, flops=5e8),  # compute-bound
        _op(4, [2], [32 * k], [5], 48 * k),
        _op(5, [3, 4, 5], [96 * k, 16 * k, 48 * k], [], 0),
    ]
    return _instance(ops, buffers)


def _fragmenting_instance() -> Instance:
    """Eight buffers whose load is exactly 4 slots at every step, yet which no packing holds.

    With 4 slots of 64 bytes (the whole peak as fast memory): Z (3 slots, step 0) pins X to an
    edge, W (3 slots, step 4) pins Y to an edge; at step 2 X and Y are live together, so on
    opposite edges, and M sits between them. G (2 slots, step 1) needs M next to X, H (2 slots,
    step 3) needs M next to Y: impossible. The clique bound alone would let all of them be fast.
    """
    u = 64
    items = [(0, 2, 1), (2, 4, 1), (0, 0, 3), (4, 4, 3), (1, 3, 1), (2, 2, 1), (1, 1, 2), (3, 3, 2)]  # X Y Z W M F G H
    buffers = [_buf(i, z * u, s, e, [t for t in range(s + 1, e + 1)]) for i, (s, e, z) in enumerate(items)]
    ops = []
    for t in range(5):
        reads = [b.id for b in buffers if b.start < t <= b.end]
        writes = [b.id for b in buffers if b.start == t]
        ops.append(_op(t, reads, [buffers[b].bytes for b in reads], writes, sum(buffers[b].bytes for b in writes)))
    return _instance(ops, buffers, "fragmenting")


CASES = [(seed, n, pattern) for seed, (n, pattern) in enumerate(
    [(8, "training"), (10, "training"), (10, "training"), (9, "random"), (10, "random"), (10, "inference")])]


@pytest.mark.parametrize("seed,n_buffers,pattern", CASES)
def test_optimum_equals_brute_force(seed, n_buffers, pattern):
    instance = synthetic(seed, n_buffers, pattern=pattern)
    for budget in (0.25, BUDGET):
        best, n_feasible = _brute_force(instance, DIRECT, budget)
        result = solve_cpsat(instance, DIRECT, budget)
        validate(instance, result.mapping, DIRECT, budget)
        assert n_feasible > 1
        assert result.optimal and result.status == "OPTIMAL"
        assert result.objective_seconds == pytest.approx(best, rel=1e-6)
        assert result.objective_seconds == pytest.approx(simulate(instance, result.mapping, DIRECT), rel=1e-12)
        assert result.bound_seconds <= result.objective_seconds
        assert result.bound_seconds == pytest.approx(best, rel=1e-6)


def test_optimum_equals_brute_force_with_alias_groups_and_loops():
    instance = _hand_instance()
    game = make_game(instance, DIRECT, BUDGET)
    assert game.candidates.n == 5  # buffers 1 and 2 are one candidate
    best, n_feasible = _brute_force(instance, DIRECT, BUDGET)
    assert 1 < n_feasible < 2 ** game.candidates.n  # the budget binds
    result = solve_cpsat(instance, DIRECT, BUDGET)
    validate(instance, result.mapping, DIRECT, BUDGET)
    assert result.optimal
    assert result.objective_seconds == pytest.approx(best, rel=1e-6)
    assert result.mapping.is_fast(1) == result.mapping.is_fast(2)


def test_optimum_when_the_plane_fragments():
    instance = _fragmenting_instance()
    budget = 1.0
    game = make_game(instance, DIRECT, budget)
    assert game.n_slots == 4 and game.slot_bytes == 64
    everything = tuple(range(game.candidates.n))
    assert _pack(everything, game) is None  # not packable, though every step's load is exactly 4 slots
    all_fast = simulate(instance, solve(instance, DIRECT, None, policy="all-fast"), DIRECT)
    best, _ = _brute_force(instance, DIRECT, budget)
    assert best > all_fast * (1 + 1e-6)
    result = solve_cpsat(instance, DIRECT, budget)
    validate(instance, result.mapping, DIRECT, budget)
    assert result.optimal
    assert result.objective_seconds == pytest.approx(best, rel=1e-6)
    assert len(result.mapping.offsets) == game.candidates.n - 1  # one buffer (G or H, the cheapest) is left out


# --- hints, limits, offload -------------------------------------------------------------------


def _greedy(instance, profile, budget) -> Mapping:
    """Largest candidates first, each at its first free slot: a plain, feasible hint."""
    game = make_game(instance, profile, budget)
    cands, size = game.candidates, game.spec.slots
    slot_of = {}
    for c in sorted(range(cands.n), key=lambda c: -int(cands.bytes[c])):
        lo = _first_fit(slot_of, c, game)
        if lo + int(size[c]) <= game.n_slots:
            slot_of[c] = lo
    offsets = {b: s * game.slot_bytes for c, s in slot_of.items() for b in cands.members[c]}
    return Mapping(offsets, len(instance.buffers), instance.name, "greedy", budget)


@pytest.mark.parametrize("hint_name", ["all-slow", "greedy", "xla-msa"])
def test_never_worse_than_the_hint(hint_name):
    for seed in range(3):
        instance = synthetic(seed, 30, pattern=("training", "random", "inference")[seed])
        if hint_name == "greedy":
            hint = _greedy(instance, DIRECT, BUDGET)
        else:
            hint = solve(instance, DIRECT, BUDGET, policy=hint_name)
        validate(instance, hint, DIRECT, BUDGET)
        result = solve_cpsat(instance, DIRECT, BUDGET, time_limit=10, hint=hint, seed=seed)
        assert isinstance(result, CpsatResult)
        validate(instance, result.mapping, DIRECT, BUDGET)
        hint_seconds = simulate(instance, hint, DIRECT)
        assert result.objective_seconds <= hint_seconds
        assert result.bound_seconds <= result.objective_seconds
        assert result.optimal  # 30 buffers: proven within the limit
        assert result.mapping.policy == "cpsat" and result.mapping.budget == BUDGET


def test_hint_off_the_slot_grid_is_accepted():
    instance = synthetic(3, 12)
    game = make_game(instance, DIRECT, BUDGET)
    assert game.slot_bytes > DIRECT.granule_bytes
    b = min(range(len(instance.buffers)), key=lambda i: instance.buffers[i].bytes)
    hint = Mapping({b: DIRECT.granule_bytes}, len(instance.buffers))  # aligned to the granule, not to a slot
    validate(instance, hint, DIRECT, BUDGET)
    result = solve_cpsat(instance, DIRECT, BUDGET, hint=hint)
    validate(instance, result.mapping, DIRECT, BUDGET)
    assert result.objective_seconds <= simulate(instance, hint, DIRECT)


def test_infeasible_hint_is_refused():
    instance = synthetic(0, 10)
    hint = Mapping({0: 3}, len(instance.buffers))  # not granule-aligned
    with pytest.raises(MappingError, match="hint"):
        solve_cpsat(instance, DIRECT, BUDGET, hint=hint)


def test_tiny_time_limit_still_returns_a_valid_mapping_and_a_bound():
    instance = synthetic(1, 200)
    hint = solve(instance, DIRECT, BUDGET, policy="xla-msa")
    all_slow = simulate(instance, Mapping({}, len(instance.buffers)), DIRECT)
    for h in (None, hint):
        result = solve_cpsat(instance, DIRECT, BUDGET, time_limit=0.05, hint=h)
        validate(instance, result.mapping, DIRECT, BUDGET)
        assert result.status in ("OPTIMAL", "FEASIBLE", "UNKNOWN")
        assert not result.optimal or result.status == "OPTIMAL"
        assert 0 <= result.bound_seconds <= result.objective_seconds <= all_slow
        if h is not None:
            assert result.objective_seconds <= simulate(instance, hint, DIRECT)


def test_offload_uses_a_surrogate_and_is_never_worse_than_the_hint():
    for seed in range(3):
        instance = synthetic(seed, 30)
        hint = solve(instance, OFFLOAD, BUDGET, policy="xla-msa")
        result = solve_cpsat(instance, OFFLOAD, BUDGET, time_limit=10, hint=hint)
        validate(instance, result.mapping, OFFLOAD, BUDGET)
        assert result.optimal is False
        assert result.objective_seconds <= simulate(instance, hint, OFFLOAD)
        # The bound is the stall-free time: below every mapping, the everything-fast one included.
        everything = solve(instance, OFFLOAD, None, policy="all-fast")
        assert result.bound_seconds <= simulate(instance, everything, OFFLOAD) * (1 + 1e-6)
        assert result.bound_seconds <= result.objective_seconds


def test_forty_candidates_are_solved_to_optimality():
    for seed, pattern in ((0, "training"), (1, "random")):
        instance = synthetic(seed, 40, pattern=pattern)
        assert make_game(instance, DIRECT, BUDGET).candidates.n == 40
        result = solve_cpsat(instance, DIRECT, BUDGET, time_limit=60)
        assert result.status == "OPTIMAL" and result.optimal
        validate(instance, result.mapping, DIRECT, BUDGET)
        xla = simulate(instance, solve(instance, DIRECT, BUDGET, policy="xla-msa"), DIRECT)
        assert result.bound_seconds <= result.objective_seconds <= xla


def test_the_bound_counts_the_runs_launch():
    """A run's launch (program_overhead_seconds) is paid by every mapping: a proven optimum's bound is its time,
    and the offload bound (the stall-free time) holds the launch too."""
    instance = synthetic(0, 10)
    for profile in (DIRECT, OFFLOAD):
        launched = dataclasses.replace(profile, program_overhead_seconds=1e-3)
        result = solve_cpsat(instance, launched, BUDGET)
        unlaunched = solve_cpsat(instance, profile, BUDGET)
        assert result.bound_seconds == pytest.approx(unlaunched.bound_seconds + 1e-3, rel=1e-6)
        assert result.bound_seconds <= result.objective_seconds
        if profile is DIRECT:
            assert result.optimal and result.bound_seconds == pytest.approx(result.objective_seconds, rel=1e-6)
