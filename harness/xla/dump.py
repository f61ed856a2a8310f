"""XLA's own view of a compile, read from its dump files: the truth instances are checked against.

`compile_with_dump` compiles with `xla_dump_to` set for that compile alone and
reads `*-live-range.txt` (the flattened instruction sequence and every value's
live range) and `*-buffer-assignment.txt` (every value's size). `compile_program`
never loads from JAX's persistent compilation cache, whose key leaves the dump
flags out: a program compiled before would be loaded from it with nothing dumped.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import tempfile
from typing import Any, Callable

from harness.xla.extraction import compile_program

_SEQUENCE_RE = re.compile(r"^\s+\d+:(\S+)$", re.M)
_RANGE_RE = re.compile(r"^\s+(\S+?\{[0-9,]*\}):(\d+)-(\d+)$", re.M)
_ALLOCATION_RE = re.compile(r"^allocation (\d+):", re.M)
_VALUE_RE = re.compile(r"value: <\d+ (\S+?)(\{[0-9,]*\})?(?: \(phi\))? @\d+> \(size=(\d+),offset=(\d+)\)")


@dataclasses.dataclass(frozen=True)
class XlaDump:
    """What XLA's dump says of one compile."""

    sequence: tuple[str, ...]
    live_ranges: dict[str, tuple[int, int]]  # value key, e.g. "while.6{1}" -> (start, end)
    sizes: dict[str, int]  # value key -> bytes, from the buffer assignment
    placements: dict[str, tuple[int, int]]  # value key -> (allocation, offset) in the buffer assignment


def read_dump(directory: str) -> XlaDump:
    """Parse the live-range and buffer-assignment files of the one module dumped in `directory`."""
    live_files = glob.glob(os.path.join(directory, "*-live-range.txt"))
    assignment_files = glob.glob(os.path.join(directory, "*-buffer-assignment.txt"))
    if len(live_files) != 1 or len(assignment_files) != 1:
        raise FileNotFoundError(
            f"expected one *-live-range.txt and one *-buffer-assignment.txt in {directory}, "
            f"found {len(live_files)} and {len(assignment_files)}")
    text = open(live_files[0]).read()
    head, _, ranges = text.partition("BufferLiveRange:")
    ranges = ranges.split("Live ranges at")[0]
    sizes, placements = {}, {}
    assignment = open(assignment_files[0]).read().split("\nUsed values:")[0]
    allocations = _ALLOCATION_RE.split(assignment)
    for number, body in zip(allocations[1::2], allocations[2::2]):
        for m in _VALUE_RE.finditer(body):
            key = m.group(1) + (m.group(2) or "{}")
            sizes[key] = int(m.group(3))
            placements[key] = (int(number), int(m.group(4)))
    return XlaDump(
        sequence=tuple(_SEQUENCE_RE.findall(head)),
        live_ranges={m.group(1): (int(m.group(2)), int(m.group(3))) for m in _RANGE_RE.finditer(ranges)},
        sizes=sizes,
        placements=placements,
    )


def compile_with_dump(fn: Callable[..., Any], *args: Any):
    """Compile `fn(*args)` with XLA's text dumps on; returns `(compiled, XlaDump)`."""
    with tempfile.TemporaryDirectory(prefix="mallocbench-dump-") as tmp:
        compiled = compile_program(fn, *args, compiler_options={"xla_dump_to": tmp, "xla_dump_hlo_as_text": True})
        return compiled, read_dump(tmp)
