"""XLA's dataflow, alias and live-range analyses, recomputed from the HLO text.

This follows `HloDataflowAnalysis` (SSA form: phi values at while loops),
`HloAliasAnalysis` (values that must share one buffer) and `HloLiveRange`
(module-scoped: while conditions and bodies, calls and conditionals flattened
into one instruction sequence), so that every value's live range equals the one
in XLA's `*-live-range.txt` dump of the same compile.
"""

from __future__ import annotations

import dataclasses

from harness.xla.hlo_costs import ELEMENTWISE
from harness.xla.hlo_text import ArrayShape, Index, Instruction, Module, TupleShape, leaf_indices, subshape

# Opcodes whose value set is their operand's: they define no value.
_FORWARDING = {"bitcast", "domain", "add-dependency", "optimization-barrier"}
# Opcodes through which a fused in-place operand is traced back to a parameter.
_IN_PLACE_ROOTS = {"dynamic-update-slice", "scatter"}


@dataclasses.dataclass(eq=False)
class Value:
    """One HloValue: defined once, at `(instruction, index)`."""

    id: int
    instruction: Instruction
    index: Index
    is_phi: bool = False
    positions: list[tuple[Instruction, Index]] = dataclasses.field(default_factory=list)
    start: int = -1
    end: int = -1
    use_times: list[int] = dataclasses.field(default_factory=list)
    buffer: int = -1  # id of the HloBuffer (alias group) holding the value

    @property
    def shape(self):
        """The value's shape."""
        return subshape(self.instruction.shape, self.index)


@dataclasses.dataclass
class Liveness:
    """The result of the analyses over one module."""

    sequence: list[Instruction]  # the flattened instruction sequence
    values: list[Value]
    value_sets: dict[str, dict[Index, Value]]  # instruction name -> index -> value
    trip_counts: dict[str, int | None]  # instruction name -> product of enclosing loops' trip counts
    branches: dict[str, str | None]  # instruction name -> "conditional:branch" it runs in, if any


class _Dataflow:
    """SSA dataflow over the computations reached from the entry (not fusions)."""

    def __init__(self, module: Module):
        self.module = module
        self.values: dict[tuple[str, Index], Value] = {}
        self.sets: dict[str, dict[Index, Value]] = {}
        self.phi_at: dict[str, set[Index]] = {}  # while name -> indices that need a phi

    def define(self, inst: Instruction, index: Index, is_phi: bool = False) -> Value:
        key = (inst.name, index)
        if key not in self.values:
            self.values[key] = Value(len(self.values), inst, index, is_phi)
        return self.values[key]

    def define_all(self, inst: Instruction) -> dict[Index, Value]:
        return {i: self.define(inst, i) for i in leaf_indices(inst.shape)}

    def forward(self, source: dict[Index, Value], prefix: Index = ()) -> dict[Index, Value]:
        n = len(prefix)
        return {i[n:]: v for i, v in source.items() if i[:n] == prefix}

    def run_computation(self, name: str, params: dict[int, dict[Index, Value]] | None) -> dict[Index, Value]:
        """Value sets of every instruction of `name`; returns the root's."""
        comp = self.module.computations[name]
        for inst in comp.instructions:
            self.sets[inst.name] = self.instruction_values(inst, params)
        return self.sets[comp.root.name]

    def instruction_values(self, inst: Instruction, params) -> dict[Index, Value]:
        op, sets = inst.opcode, self.sets
        if op == "parameter":
            number = int(inst.attrs["_payload"])
            return self.define_all(inst) if params is None else params[number]
        if op in _FORWARDING:
            return dict(sets[inst.operands[0]])
        if op == "get-tuple-element":
            return self.forward(sets[inst.operands[0]], (int(inst.attrs["index"]),))
        if op == "tuple":
            out = {(): self.define(inst, ())}
            for k, operand in enumerate(inst.operands):
                out.update({(k,) + i: v for i, v in sets[operand].items()})
            return out
        if op == "copy" and isinstance(inst.shape, TupleShape):
            out = dict(sets[inst.operands[0]])
            out[()] = self.define(inst, ())
            return out
        if op == "while":
            return self.while_values(inst)
        if op == "call":
            bound = {k: sets[o] for k, o in enumerate(inst.operands)}
            return dict(self.run_computation(inst.called("to_apply")[0], bound))
        if op == "conditional":
            return self.conditional_values(inst)
        return self.define_all(inst)

    def while_values(self, inst: Instruction) -> dict[Index, Value]:
        init = self.sets[inst.operands[0]]
        cond, body = inst.called("condition")[0], inst.called("body")[0]
        body_param = self.module.computations[body].parameter(0)
        cond_param = self.module.computations[cond].parameter(0)
        phis = self.phi_at.setdefault(inst.name, set())
        while True:
            binding = {i: (self.define(body_param, i, True) if i in phis else v) for i, v in init.items()}
            cond_binding = {i: (self.define(cond_param, i, True) if i in phis else v) for i, v in init.items()}
            self.run_computation(cond, {0: cond_binding})
            root = self.run_computation(body, {0: binding})
            new = {i for i in init if root[i] is not binding[i]} - phis
            if not new:
                break
            phis |= new
        return {i: (self.define(inst, i, True) if i in phis else v) for i, v in init.items()}

    def conditional_values(self, inst: Instruction) -> dict[Index, Value]:
        branches = _branches(inst)
        roots = [self.run_computation(b, {0: self.sets[inst.operands[k + 1]]}) for k, b in enumerate(branches)]
        out = {}
        for i in leaf_indices(inst.shape):
            same = all(r[i] is roots[0][i] for r in roots)
            out[i] = roots[0][i] if same else self.define(inst, i, True)
        return out


def _flatten(module: Module):
    """The module-scoped flattened sequence, computation spans, trip counts and branches."""
    sequence: list[Instruction] = []
    spans: dict[str, tuple[int, int]] = {}
    trips: dict[str, int | None] = {}
    branches: dict[str, str | None] = {}

    def visit(name: str, trip: int | None, branch: str | None) -> None:
        if name in spans:
            return
        start = len(sequence)
        spans[name] = (start, start)
        for inst in module.computations[name].instructions:
            if inst.opcode == "call":
                visit(inst.called("to_apply")[0], trip, branch)
            elif inst.opcode == "conditional":
                for k, called in enumerate(_branches(inst)):
                    visit(called, trip, f"{inst.name}:{k}")
            elif inst.opcode == "while":
                n = inst.backend_config.get("known_trip_count", {}).get("n")
                inner = None if n is None or trip is None else trip * int(n)
                visit(inst.called("condition")[0], inner, branch)
                visit(inst.called("body")[0], inner, branch)
            trips[inst.name] = trip
            branches[inst.name] = branch
            sequence.append(inst)
        spans[name] = (start, len(sequence))

    visit(module.entry, 1, None)
    return sequence, spans, trips, branches


def _branches(inst: Instruction) -> list[str]:
    """The branch computations of a conditional, in branch order."""
    return inst.called("branch_computations") or (inst.called("true_computation") + inst.called("false_computation"))


def _in_place_pairs(module: Module, inst: Instruction) -> list[tuple[int, Index, Index]]:
    """(operand number, operand index, output index) that an in-place op aliases."""
    if inst.opcode in _IN_PLACE_ROOTS:
        return [(0, (), ())]
    if inst.opcode != "fusion":
        return []
    fused = module.computations[inst.called("calls")[0]]
    by_name = {i.name: i for i in fused.instructions}
    pairs = []
    root = fused.root
    outputs = [((k,), by_name[o]) for k, o in enumerate(root.operands)] if root.opcode == "tuple" else [((), root)]
    for out_index, node in outputs:
        while node.opcode == "bitcast":
            node = by_name[node.operands[0]]
        if node.opcode not in _IN_PLACE_ROOTS:
            continue
        source = by_name[node.operands[0]]
        while source.opcode == "bitcast":
            source = by_name[source.operands[0]]
        if source.opcode == "parameter":
            pairs.append((int(source.attrs["_payload"]), (), out_index))
    return pairs


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, items: list[int]) -> None:
        for other in items[1:]:
            self.parent[self.find(other)] = self.find(items[0])


def analyze(module: Module) -> Liveness:
    """Run dataflow, alias and live-range analysis over a scheduled module."""
    flow = _Dataflow(module)
    flow.run_computation(module.entry, None)
    sets = flow.sets
    values = sorted(flow.values.values(), key=lambda v: v.id)
    sequence, spans, trips, branches = _flatten(module)
    time = {inst.name: t for t, inst in enumerate(sequence)}
    comps = module.computations

    users: dict[str, list[Instruction]] = {}
    for comp in comps.values():
        for inst in comp.instructions:
            for operand in dict.fromkeys(inst.operands):
                users.setdefault(operand, []).append(inst)
    for name, value_set in sets.items():
        inst = module.instruction(name)
        for index, value in value_set.items():
            if value.instruction is not inst or value.index != index:
                value.positions.append((inst, index))

    # Alias analysis: values that must live in one buffer.
    groups = _UnionFind(len(values))
    for inst in sequence:
        if inst.opcode == "while":
            cond, body = comps[inst.called("condition")[0]], comps[inst.called("body")[0]]
            for i in leaf_indices(inst.shape):
                members = [sets[inst.operands[0]][i], sets[body.parameter(0).name][i],
                           sets[body.root.name][i], sets[cond.parameter(0).name][i], sets[inst.name][i]]
                groups.union([v.id for v in members])
        elif inst.opcode == "conditional":
            for i in leaf_indices(inst.shape):
                groups.union([sets[inst.name][i].id] + [sets[comps[b].root.name][i].id for b in _branches(inst)])
        for operand, operand_index, out_index in _in_place_pairs(module, inst):
            groups.union([sets[inst.operands[operand]][operand_index].id, sets[inst.name][out_index].id])
    entry = comps[module.entry]
    for (param, param_index), out_index in module.input_output_alias.items():
        groups.union([sets[entry.parameter(param).name][param_index].id, sets[entry.root.name][out_index].id])
    for v in values:
        v.buffer = groups.find(v.id)

    # Live ranges (HloLiveRange::CalculateBufferStartEndMap).
    end_time = len(sequence)
    for v in values:
        inst = v.instruction
        if inst.name not in time:
            continue
        span = spans[inst.computation]
        t = time[inst.name]
        start = span[0] if inst.opcode == "parameter" else t
        end = span[1] if inst.is_root else t
        for pos_inst, _ in v.positions:
            if pos_inst.is_root:
                end = max(end, spans.get(pos_inst.computation, (0, -1))[1])
            elif pos_inst.name in time:
                end = max(end, time[pos_inst.name])
        uses = _use_times(v, users, time, comps)
        v.use_times = sorted(set(uses))
        entry_param = inst.opcode == "parameter" and inst.computation == module.entry
        if entry_param and (int(inst.attrs["_payload"]), v.index) not in module.input_output_alias:
            end = end_time
        else:
            end = max([end] + uses)
        v.start, v.end = start, end

    # HloLiveRange::NormalizeAliasedBuffers.
    by_buffer: dict[int, list[Value]] = {}
    for v in values:
        if v.start >= 0:
            by_buffer.setdefault(v.buffer, []).append(v)
    for members in by_buffer.values():
        members.sort(key=lambda v: (v.start, v.end, v.id))
        for a, b in zip(members, members[1:]):
            b.end = max(a.end, b.end)
            a.end = min(a.end, b.start)

    return Liveness(sequence, [v for v in values if v.start >= 0], sets, trips, branches)


def _use_times(value: Value, users, time, comps) -> list[int]:
    """Times of the value's uses (HloValue::ComputeUses, HloLiveRange::GetLastUsageTime)."""
    positions = [(value.instruction, value.index)] + value.positions
    roots = {p.name for p, _ in positions if p.is_root}
    out = []
    for inst, index in positions:
        for user in users.get(inst.name, []):
            if user.opcode in ("get-tuple-element", "copy"):
                uses = index == ()
            else:
                uses = user.opcode not in ("domain", "tuple")
            if not uses and not (user.is_root and user.name in roots):
                continue
            if user.opcode == "call":
                continue
            target = user
            if user.opcode == "while":
                target = comps[user.called("body")[0]].parameter(0)
            if target.name in time:
                out.append(time[target.name])
    return out


def may_share_operand(module: Module, inst: Instruction, operand: int) -> bool:
    """Whether XLA may write `inst`'s output into the buffer of operand `operand`.

    As HloDataflowAnalysis::CanShareOperandBufferWithUser: equal array shapes,
    and an elementwise op, or a loop fusion whose fused parameter reaches the
    root through elementwise ops only. Buffer assignment then reuses the buffer
    when the operand dies at `inst`.
    """
    shape, source = inst.shape, module.instruction(inst.operands[operand]).shape
    if not (isinstance(shape, ArrayShape) and isinstance(source, ArrayShape)):
        return False
    if (shape.dtype, shape.dims, shape.minor_to_major) != (source.dtype, source.dims, source.minor_to_major):
        return False
    if inst.opcode in ELEMENTWISE:
        return True
    if inst.opcode != "fusion" or inst.attrs.get("kind") not in ("kLoop", "kInput"):
        return False
    fused = module.computations[inst.called("calls")[0]]
    users: dict[str, list[Instruction]] = {}
    for i in fused.instructions:
        for o in i.operands:
            users.setdefault(o, []).append(i)
    frontier = [fused.parameter(operand).name]
    while frontier:
        for user in users.get(frontier.pop(), []):
            if user.opcode not in ELEMENTWISE and user.opcode != "tuple":
                return False
            frontier.append(user.name)
    return True
