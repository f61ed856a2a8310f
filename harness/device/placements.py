"""Check a realization without the hardware: export it and read its placement annotations.

`jax.export` lowers the realized program for "cuda" or "tpu" on any machine.
Each `jax.device_put` to a memory space becomes an `annotate_device_placement`
custom call with the frontend attribute `_xla_buffer_placement`; its location
names the scope `offload<v>` (or `fetch<v>`) that `harness.xla.scoped_program` put it in, and
its operand is defined under the scope of the equation that computed value v (an
argument of a body for a body's argument; the body's output for each part of a
scan's stacked output).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import jax

from harness.xla import scoped_program
from harness.device.realization import Realized

_LOC_DEF = re.compile(r'^(#loc\d+) = loc\("([^"]*)"')
_DEF = re.compile(r'^\s*(%[\w.]+)(?::\d+)? = (.*)$')
_ANNOTATION = re.compile(r'custom_call @annotate_device_placement\((%[\w.#]+)\).*_xla_buffer_placement = "(\w+)"')
_LOC_REF = re.compile(r'loc\((#loc\d+|"[^"]*")')


@dataclasses.dataclass(frozen=True)
class Placements:
    """The values an exported module places in host memory, and any annotation that is off."""

    platform: str
    host_values: frozenset[int]  # values annotated `pinned_host` (from their offload scope)
    fetched_values: frozenset[int]  # values annotated back to `device`
    problems: tuple[str, ...]  # annotations not on the value their scope names, or of no scope


def exported_module(realized: Realized, args: tuple[Any, ...], platform: str) -> str:
    """The StableHLO text of the realized program exported for `platform` ("cuda" or "tpu")."""
    return jax.export.export(realized.fn, platforms=(platform,))(*args).mlir_module()


def read_placements(text: str, program: scoped_program.Program, platform: str = "") -> Placements:
    """The placement annotations of an exported module of `program`'s realization (in `@main` and in the
    functions its loop and branch bodies were lowered to)."""
    all_lines = text.splitlines()
    loc_names = {m.group(1): m.group(2) for m in map(_LOC_DEF.match, all_lines) if m}
    host, fetched, problems = set(), set(), []
    inputs = scoped_program.body_inputs(program)
    for is_main, lines in _functions(all_lines):
        for i, line in enumerate(lines):
            m = _ANNOTATION.search(line)
            if not m:
                continue
            operand, placement = m.group(1), m.group(2)
            scope = _loc_name(line, loc_names)
            value = _scope_number(scope, scoped_program.OFFLOAD_SCOPE if placement != "device" else scoped_program.FETCH_SCOPE)
            if value is None:
                problems.append(f"{placement} annotation of {operand} outside any offload/fetch scope: {scope!r}")
                continue
            if placement == "device":
                fetched.add(value)
                continue
            host.add(value)
            where = _defining_step(operand.split("#")[0], _defined_before(lines, i, operand.split("#")[0], loc_names),
                                   is_main)
            if not _defines(program, where, value, inputs):
                problems.append(f"value {value} placed in {placement} from {operand}, defined at {where!r}")
    return Placements(platform, frozenset(host), frozenset(fetched), tuple(problems))


def _functions(lines: list[str]) -> list[tuple[bool, list[str]]]:
    """(is the public `@main`, its lines) of each function of the module (SSA names are numbered per
    function)."""
    found = []
    for start, line in enumerate(lines):
        if "func.func " not in line:
            continue
        indent = len(line) - len(line.lstrip())
        end = next((e for e in range(start + 1, len(lines)) if lines[e].startswith(" " * indent + "}")), len(lines) - 1)
        found.append(("func.func public @main" in line, lines[start:end + 1]))
    if not any(is_main for is_main, _ in found):
        raise ValueError("the exported module has no public @main function")
    return found


def _defined_before(lines: list[str], i: int, name: str, loc_names: dict[str, str]) -> str:
    """The scope of the op that defines SSA value `name` as seen from line i: the nearest definition before
    it in the same or an enclosing region (sibling regions, e.g. a loop's condition and body, reuse
    names)."""
    level = len(lines[i]) - len(lines[i].lstrip())
    for j in range(i - 1, -1, -1):
        line = lines[j]
        indent = len(line) - len(line.lstrip())
        if indent > level:
            continue
        level = indent
        m = _DEF.match(line)
        if m and m.group(1) == name:
            return _loc_name(_op_end(lines, j), loc_names)
    return ""


def _op_end(lines: list[str], i: int) -> str:
    """The line that ends the op begun at line i (ops with regions close on a later line)."""
    if _LOC_REF.search(lines[i]):
        return lines[i]
    indent = len(lines[i]) - len(lines[i].lstrip())
    for line in lines[i + 1:]:
        if line.startswith(" " * indent + "}") and _LOC_REF.search(line):
            return line
    return lines[i]


def _loc_name(line: str, loc_names: dict[str, str]) -> str:
    refs = _LOC_REF.findall(line)
    if not refs:
        return ""
    ref = refs[-1]
    return ref.strip('"') if ref.startswith('"') else loc_names.get(ref, "")


def _scope_number(scope: str, prefix: str):
    m = re.search(rf"(?:^|/){prefix}(\d+)(?:/|$)", scope)
    return int(m.group(1)) if m else None


def _defining_step(operand: str, scope: str, is_main: bool):
    """("arg", n) for an argument of `@main`, ("body arg", name) for an argument of a body (of another
    function, or of a loop's region), ("step", k) for an op in scope eqn<k> (`scope`: that of the op that
    defines it), else the scope."""
    m = re.fullmatch(r"%arg(\d+)", operand)
    if m and is_main:
        return ("arg", int(m.group(1)))
    if m or operand.startswith("%iterArg"):
        return ("body arg", operand)
    k = scoped_program.step_of(scope)
    return ("step", k) if k is not None else scope


def _defines(program: scoped_program.Program, where, value: int, body_inputs: frozenset[int]) -> bool:
    """Whether the annotated operand defined at `where` is value `value` (for a scan's stacked output: each
    iteration's part of it)."""
    if where == ("arg", value) and value < program.n_args:
        return True
    if isinstance(where, tuple) and where[0] == "body arg":
        return value in body_inputs or scoped_program.stack_source(program, value) in body_inputs
    if isinstance(where, str):  # a part that was itself offloaded, brought back to be stacked
        return _scope_number(where, scoped_program.FETCH_SCOPE) == scoped_program.stack_source(program, value) is not None
    outputs = program.steps[where[1]].outputs
    return value in outputs or scoped_program.stack_source(program, value) in outputs


def check_export(realized: Realized, args: tuple[Any, ...], platform: str) -> Placements:
    """Export the realization for `platform` and read back what it places in host memory."""
    return read_placements(exported_module(realized, args, platform), realized.program, platform)
