"""Parse the text of a scheduled, optimized HLO module (`compiled.as_text()`).

Only what the instance extraction needs is kept: computations with their
instructions in schedule order, each instruction's shape, opcode, operands,
called computations and the attributes used to count flops.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Union

# Bytes per element of XLA's primitive types (sub-byte types round up to a byte).
DTYPE_BYTES = {
    "pred": 1, "s2": 1, "s4": 1, "s8": 1, "s16": 2, "s32": 4, "s64": 8,
    "u2": 1, "u4": 1, "u8": 1, "u16": 2, "u32": 4, "u64": 8,
    "f4e2m1fn": 1, "f8e3m4": 1, "f8e4m3": 1, "f8e4m3fn": 1, "f8e4m3b11fnuz": 1,
    "f8e4m3fnuz": 1, "f8e5m2": 1, "f8e5m2fnuz": 1, "f8e8m0fnu": 1,
    "bf16": 2, "f16": 2, "f32": 4, "f64": 8, "c64": 8, "c128": 16,
    "token": 0, "opaque": 0,
}
POINTER_BYTES = 8  # a tuple's index table holds one pointer per element


class HloParseError(ValueError):
    """The HLO text could not be parsed; the message names the line."""


@dataclasses.dataclass(frozen=True)
class ArrayShape:
    """An array shape: element type, dimensions and (optional) tiled layout."""

    dtype: str
    dims: tuple[int, ...]
    minor_to_major: tuple[int, ...] | None = None
    tile: tuple[int, ...] | None = None

    @property
    def elements(self) -> int:
        """Number of elements."""
        return math.prod(self.dims)

    @property
    def byte_size(self) -> int:
        """Bytes of the array in memory, padded to its first layout tile as XLA pads it."""
        dims = list(self.dims)
        if self.tile and self.minor_to_major is not None and len(self.tile) <= len(dims):
            for t, dim in zip(reversed(self.tile), self.minor_to_major):
                dims[dim] = -(-dims[dim] // t) * t
        return math.prod(dims) * DTYPE_BYTES[self.dtype]

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(map(str, self.dims))}]"


@dataclasses.dataclass(frozen=True)
class TupleShape:
    """A tuple of shapes."""

    elements: tuple["Shape", ...]

    @property
    def byte_size(self) -> int:
        """Bytes of the tuple's own index table (one pointer per element)."""
        return POINTER_BYTES * len(self.elements)

    def __str__(self) -> str:
        return "(" + ", ".join(map(str, self.elements)) + ")"


Shape = Union[ArrayShape, TupleShape]
Index = tuple[int, ...]


def subshape(shape: Shape, index: Index) -> Shape:
    """The shape at `index` inside `shape`."""
    for i in index:
        assert isinstance(shape, TupleShape)
        shape = shape.elements[i]
    return shape


def leaf_indices(shape: Shape, prefix: Index = ()) -> list[Index]:
    """Every index of `shape`, the tuple nodes before their elements (pre-order)."""
    out = [prefix]
    if isinstance(shape, TupleShape):
        for i, element in enumerate(shape.elements):
            out.extend(leaf_indices(element, prefix + (i,)))
    return out


@dataclasses.dataclass
class Instruction:
    """One HLO instruction."""

    name: str
    opcode: str
    shape: Shape
    operands: list[str]
    attrs: dict[str, str]
    computation: str
    is_root: bool = False

    @property
    def op_name(self) -> str:
        """The `op_name` of the instruction's metadata ('' when absent)."""
        m = re.search(r'op_name="((?:[^"\\]|\\.)*)"', self.attrs.get("metadata", ""))
        return m.group(1) if m else ""

    def called(self, key: str) -> list[str]:
        """Names of the computations in attribute `key` (calls, body, to_apply, ...)."""
        value = self.attrs.get(key, "")
        return [v.strip().lstrip("%") for v in value.strip("{}").split(",") if v.strip()]

    def ints(self, key: str) -> list[int]:
        """An attribute of the form `{1,2}` as a list of ints."""
        value = self.attrs.get(key, "{}").strip("{}")
        return [int(v) for v in value.split(",") if v.strip()]

    @property
    def backend_config(self) -> dict:
        """The instruction's backend_config JSON ({} when absent or not JSON)."""
        raw = self.attrs.get("backend_config", "")
        try:
            return json.loads(raw) if raw.startswith("{") else {}
        except json.JSONDecodeError:
            return {}


@dataclasses.dataclass
class Computation:
    """A computation: its instructions in (schedule) order."""

    name: str
    instructions: list[Instruction]
    is_entry: bool = False

    @property
    def root(self) -> Instruction:
        """The root instruction."""
        return next(i for i in self.instructions if i.is_root)

    def parameter(self, number: int) -> Instruction:
        """The parameter instruction with this number."""
        for inst in self.instructions:
            if inst.opcode == "parameter" and int(inst.attrs["_payload"]) == number:
                return inst
        raise KeyError(f"computation {self.name} has no parameter {number}")


@dataclasses.dataclass
class Module:
    """A parsed HLO module."""

    name: str
    computations: dict[str, Computation]
    entry: str
    input_output_alias: dict[tuple[int, Index], Index]  # (param, param index) -> output index

    @property
    def entry_computation(self) -> Computation:
        """The entry computation."""
        return self.computations[self.entry]

    def instruction(self, name: str) -> Instruction:
        """The instruction called `name` (names are unique in a module)."""
        return self._by_name[name]

    def __post_init__(self) -> None:
        self._by_name = {i.name: i for c in self.computations.values() for i in c.instructions}


def _scan(text: str, start: int = 0):
    """Yield (index, char, bracket depth after it) for the characters outside quoted strings."""
    depth, quote, i = 0, False, start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quote = False
        elif ch == '"':
            quote = True
        else:
            depth += (ch in "([{") - (ch in ")]}")
            yield i, ch, depth
        i += 1


def _split_top(text: str, sep: str = ",") -> list[str]:
    """Split `text` at `sep` outside brackets and quotes."""
    parts, start = [], 0
    for i, ch, depth in _scan(text):
        if ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _matching(text: str, start: int) -> int:
    """Index just past the bracket that closes the one at `start`."""
    for i, ch, depth in _scan(text, start):
        if depth == 0 and ch in ")]}":
            return i + 1
    raise HloParseError(f"unbalanced brackets in: {text[:200]}")


_ARRAY_RE = re.compile(r"^([a-z][a-z0-9]*)\[([^\]]*)\](\{[^}]*\})?$")


def parse_shape(text: str) -> Shape:
    """Parse an HLO shape such as `f32[8,16]{1,0}` or `(s32[], f32[4]{0})`."""
    text = text.strip()
    if text.startswith("("):
        return TupleShape(tuple(parse_shape(p) for p in _split_top(text[1:-1])))
    m = _ARRAY_RE.match(text)
    if not m or m.group(1) not in DTYPE_BYTES:
        raise HloParseError(f"cannot parse shape {text!r}")
    dims = tuple(int(d.lstrip("<=")) for d in m.group(2).split(",") if d.strip())
    minor_to_major = tile = None
    if m.group(3):
        layout = m.group(3)[1:-1]
        order = layout.split(":")[0]
        minor_to_major = tuple(int(d) for d in order.split(",") if d.strip())
        t = re.search(r"T\(([0-9,]+)\)", layout)
        if t:
            tile = tuple(int(x) for x in t.group(1).split(","))
    return ArrayShape(m.group(1), dims, minor_to_major, tile)


def _parse_instruction(line: str, computation: str) -> Instruction:
    is_root = line.startswith("ROOT ")
    if is_root:
        line = line[5:]
    name, _, rest = line.partition(" = ")
    rest = rest.strip()
    if rest.startswith("("):
        end = _matching(rest, 0)
    else:
        end = rest.index(" ")
    shape = parse_shape(rest[:end])
    rest = rest[end:].strip()
    paren = rest.index("(")
    opcode = rest[:paren]
    close = _matching(rest, paren)
    payload = rest[paren + 1 : close - 1]
    operands = []
    if opcode not in ("constant", "parameter", "iota", "rng-get-and-update-state"):
        operands = [p.split()[-1].lstrip("%") for p in _split_top(payload)]
    attrs = {"_payload": payload}
    for item in _split_top(rest[close:].lstrip(",")):
        key, _, value = item.partition("=")
        attrs[key.strip()] = value.strip()
    return Instruction(name.strip().lstrip("%"), opcode, shape, operands, attrs, computation, is_root)


_COMMENT_RE = re.compile(r"/\*.*?\*/")


def parse_module(text: str) -> Module:
    """Parse a whole HLO module as printed by `compiled.as_text()`."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("HloModule"):
        raise HloParseError("the text is not an HLO module (no 'HloModule' header)")
    header = lines[0]
    module_name = header.split()[1].rstrip(",")
    computations: dict[str, Computation] = {}
    entry = None
    current: Computation | None = None
    for number, raw in enumerate(lines[1:], start=2):
        line = _COMMENT_RE.sub("", raw).strip()
        if current is None:
            m = re.match(r"^(ENTRY )?%?([^\s(]+) \(.*\{$", line)
            if m:
                current = Computation(m.group(2), [], is_entry=bool(m.group(1)))
                if current.is_entry:
                    entry = current.name
            continue
        if line == "}":
            computations[current.name] = current
            current = None
            continue
        try:
            current.instructions.append(_parse_instruction(line, current.name))
        except (HloParseError, ValueError) as err:
            raise HloParseError(f"line {number}: {err}: {raw[:200]}") from None
    if entry is None:
        raise HloParseError("the module has no ENTRY computation")
    return Module(module_name, computations, entry, _parse_io_alias(header))


def _parse_io_alias(header: str) -> dict[tuple[int, Index], Index]:
    """The module's `input_output_alias` (donated parameters), if any."""
    m = re.search(r"input_output_alias=\{(.*?)\}\s*(,\s*[a-z_]+=|$)", header)
    out: dict[tuple[int, Index], Index] = {}
    if not m:
        return out
    for entry in re.finditer(r"\{([0-9,\s]*)\}:\s*\((\d+),\s*\{([0-9,\s]*)\}", m.group(1)):
        to_index = tuple(int(x) for x in entry.group(1).split(",") if x.strip())
        param_index = tuple(int(x) for x in entry.group(3).split(",") if x.strip())
        out[(int(entry.group(2)), param_index)] = to_index
    return out
