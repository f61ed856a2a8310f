"""The mapping-problem instance: the scheduled ops and buffers of one compiled program.

An `Instance` is what every later stage reads (simulator, game, agents,
realization). It is JSON-serialisable with a schema version; reading a file of
another version, or a malformed one, fails with the field named.
"""

import dataclasses
import json
import types
import typing
from typing import Any, Iterable, Optional

import numpy as np

from harness.xla.hlo_costs import OP_KINDS
from harness.xla.jsonfile import load_versioned

SCHEMA_VERSION = 2


class InstanceError(ValueError):
    """A malformed instance or instance file; the message names the field."""


@dataclasses.dataclass(frozen=True)
class Op:
    """One step of the schedule: an instruction of XLA's flattened sequence."""

    step: int
    name: str
    opcode: str
    computation: str
    flops: float
    transcendentals: float
    reads: tuple[int, ...]  # buffer id read by each operand (-1: none, e.g. a tuple)
    operand_bytes: tuple[int, ...]  # bytes read from each operand
    writes: tuple[int, ...]  # buffer ids the op defines
    output_bytes: int
    trip_count: Optional[int]  # executions per program run (None: unknown loop count)
    branch: Optional[str]  # "conditional:k" when the op runs only in branch k of that conditional
    op_name: str
    matmul_flops: float = 0.0  # the part of `flops` done by dots and convolutions
    kind: str = ""  # one of hlo_costs.OP_KINDS ("": an instance written before kinds were recorded)
    iterations: Optional[int] = None  # a while op's body executions per execution of it (None: not a loop, or unknown)


class _HloValue:
    """A value of XLA's buffer analysis: an instruction's `hlo_name` and the `index` of the value in its
    (possibly tuple) shape."""

    hlo_name: str
    index: tuple[int, ...]

    @property
    def key(self) -> str:
        """The value's name as XLA's dumps write it, e.g. `while.6{1}`."""
        return f"{self.hlo_name}{{{','.join(map(str, self.index))}}}"


@dataclasses.dataclass(frozen=True)
class Buffer(_HloValue):
    """One value of the program, live over schedule steps [start, end]."""

    id: int
    hlo_name: str
    index: tuple[int, ...]
    shape: str
    bytes: int
    start: int
    end: int
    uses: tuple[int, ...]
    is_parameter: bool
    is_output: bool
    is_phi: bool
    is_constant: bool
    alias_group: int  # buffers of one group must share memory (loops, in-place ops)
    reuses: int  # a dying operand buffer XLA may write this one over in place (-1: none)
    op_name: str  # metadata of the instruction that computes the value (a fusion's root for fusions)
    parameter_number: int = -1  # the entry parameter it is, else -1


@dataclasses.dataclass(frozen=True)
class LeftOut(_HloValue):
    """A value of XLA's analysis that is not a buffer of the instance, and why."""

    hlo_name: str
    index: tuple[int, ...]
    bytes: int
    reason: str


@dataclasses.dataclass(frozen=True)
class CompilerFigures:
    """The compiler's own totals: `cost_analysis()` and `memory_analysis()`."""

    flops: float
    transcendentals: float
    bytes_accessed: float
    argument_bytes: int
    output_bytes: int
    temp_bytes: int
    alias_bytes: int

    @property
    def total_bytes(self) -> int:
        """Arguments + outputs + temporaries - aliases: the program's footprint."""
        return self.argument_bytes + self.output_bytes + self.temp_bytes - self.alias_bytes


@dataclasses.dataclass(frozen=True)
class Instance:
    """Ops and buffers of one compiled program, with the compiler's figures beside them."""

    name: str
    hlo_module: str
    backend: str
    jax_version: str
    jaxlib_version: str
    ops: tuple[Op, ...]
    buffers: tuple[Buffer, ...]
    left_out: tuple[LeftOut, ...]
    compiler: CompilerFigures
    schema_version: int = SCHEMA_VERSION

    @property
    def flops(self) -> float:
        """The ops' flops summed as `cost_analysis()` sums them: loop bodies once, the costliest branch."""
        total, per_branch = 0.0, {}
        for op in self.ops:
            if op.branch is None:
                total += op.flops
            else:
                per_branch[op.branch] = per_branch.get(op.branch, 0.0) + op.flops
        conditionals: dict[str, float] = {}
        for branch, flops in per_branch.items():
            cond = branch.rsplit(":", 1)[0]
            conditionals[cond] = max(conditionals.get(cond, 0.0), flops)
        return total + sum(conditionals.values())

    def live_bytes(self, buffer_ids: Optional[Iterable[int]] = None, in_place_reuse: bool = True) -> np.ndarray:
        """Bytes live at each step of the schedule (steps 0 to len(ops), the end).

        Buffers that share memory (an alias group, or with `in_place_reuse` an output
        written in place over a dying operand) count once, with the largest, wherever
        any is live. `buffer_ids` restricts the count to those buffers.
        """
        chosen = self.buffers if buffer_ids is None else [self.buffers[b] for b in buffer_ids]
        parent = {b.alias_group: b.alias_group for b in self.buffers}

        def root(g: int) -> int:
            while parent[g] != g:
                g = parent[g]
            return g

        if in_place_reuse:
            for b in self.buffers:
                if b.reuses >= 0:
                    parent[root(b.alias_group)] = root(self.buffers[b.reuses].alias_group)
        groups: dict[int, list[Buffer]] = {}
        for b in chosen:
            groups.setdefault(root(b.alias_group), []).append(b)
        delta = np.zeros(len(self.ops) + 2, dtype=np.int64)
        for members in groups.values():
            size = max(b.bytes for b in members)
            intervals = sorted((b.start, b.end) for b in members)
            start, end = intervals[0]
            for s, e in intervals[1:] + [(len(self.ops) + 2, 0)]:
                if s <= end + 1:
                    end = max(end, e)
                    continue
                delta[start] += size
                delta[end + 1] -= size
                start, end = s, e
        return np.cumsum(delta)[: len(self.ops) + 1]

    @property
    def peak_live_bytes(self) -> int:
        """The peak over the schedule of the bytes of live buffers."""
        return int(self.live_bytes().max(initial=0))

    def to_json(self, indent: Optional[int] = None) -> str:
        """The instance as JSON text."""
        return json.dumps(dataclasses.asdict(self), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "Instance":
        """Read an instance from JSON text; errors name the offending field."""
        data = load_versioned(text, "instance", SCHEMA_VERSION, InstanceError)
        instance = _build(cls, data, "instance")
        _check_references(instance)
        return instance


def _build(tp: Any, value: Any, path: str) -> Any:
    """Convert JSON data to type `tp`, raising InstanceError with the path of a bad field."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise InstanceError(f"{path}: expected an object, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name not in value:
                if f.default is not dataclasses.MISSING:
                    continue
                raise InstanceError(f"{path}.{f.name}: missing")
            kwargs[f.name] = _build(hints[f.name], value[f.name], f"{path}.{f.name}")
        unknown = set(value) - {f.name for f in dataclasses.fields(tp)}
        if unknown:
            raise InstanceError(f"{path}: unknown field(s) {', '.join(sorted(unknown))}")
        return tp(**kwargs)
    if origin is tuple:
        if not isinstance(value, list):
            raise InstanceError(f"{path}: expected a list, got {type(value).__name__}")
        (item_type, _) = typing.get_args(tp)
        return tuple(_build(item_type, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _build(inner, value, path)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InstanceError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise InstanceError(f"{path}: expected an integer, got {value!r}")
    if not isinstance(value, tp):
        raise InstanceError(f"{path}: expected {tp.__name__}, got {value!r}")
    return value


def _check_references(instance: Instance) -> None:
    """Buffer ids, steps and intervals must be consistent."""
    n_steps = len(instance.ops)
    for k, b in enumerate(instance.buffers):
        where = f"instance.buffers[{k}]"
        if b.id != k:
            raise InstanceError(f"{where}.id: expected {k} (ids are positions), got {b.id}")
        if b.bytes < 0:
            raise InstanceError(f"{where}.bytes: negative ({b.bytes})")
        if not -1 <= b.reuses < len(instance.buffers) or b.reuses == k:
            raise InstanceError(f"{where}.reuses: no other buffer has id {b.reuses}")
        if not 0 <= b.start <= b.end <= n_steps:
            raise InstanceError(f"{where}: interval [{b.start}, {b.end}] is not inside the {n_steps} steps")
    for k, op in enumerate(instance.ops):
        where = f"instance.ops[{k}]"
        if op.step != k:
            raise InstanceError(f"{where}.step: expected {k}, got {op.step}")
        if op.kind and op.kind not in OP_KINDS:
            raise InstanceError(f"{where}.kind: {op.kind!r} is not one of {', '.join(OP_KINDS)}")
        if op.iterations is not None and op.iterations < 0:
            raise InstanceError(f"{where}.iterations: negative ({op.iterations})")
        if len(op.reads) != len(op.operand_bytes):
            raise InstanceError(f"{where}.reads: {len(op.reads)} entries for {len(op.operand_bytes)} operands")
        for b in op.reads + op.writes:
            if not -1 <= b < len(instance.buffers):
                raise InstanceError(f"{where}: buffer id {b} does not exist")
