"""Check a realization without the hardware: export it and read its placement annotations.

`jax.export` lowers the realized program for "cuda" or "tpu" on any machine.
Each `jax.device_put` to a memory space becomes an `annotate_device_placement`
custom call with the frontend attribute `_xla_buffer_placement`; its location
names the scope `offload<v>` (or `fetch<v>`) that `harness.xla.linking` put it in, and
its operand is defined under the scope of the equation that computed value v.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import jax

from harness.xla import linking
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


def read_placements(text: str, program: linking.Program, platform: str = "") -> Placements:
    """The placement annotations of an exported module of `program`'s realization."""
    all_lines = text.splitlines()
    loc_names = {m.group(1): m.group(2) for m in map(_LOC_DEF.match, all_lines) if m}
    lines = _main_function(all_lines)
    defined_at = {}
    for i, line in enumerate(lines):
        m = _DEF.match(line)
        if m:
            defined_at[m.group(1)] = _loc_name(_op_end(lines, i), loc_names)
    host, fetched, problems = set(), set(), []
    for line in lines:
        m = _ANNOTATION.search(line)
        if not m:
            continue
        operand, placement = m.group(1), m.group(2)
        scope = _loc_name(line, loc_names)
        value = _scope_number(scope, linking.OFFLOAD_SCOPE if placement != "device" else linking.FETCH_SCOPE)
        if value is None:
            problems.append(f"{placement} annotation of {operand} outside any offload/fetch scope: {scope!r}")
            continue
        if placement == "device":
            fetched.add(value)
            continue
        host.add(value)
        where = _defining_step(operand.split("#")[0], defined_at)
        if not _defines(program, where, value):
            problems.append(f"value {value} placed in {placement} from {operand}, defined at {where!r}")
    return Placements(platform, frozenset(host), frozenset(fetched), tuple(problems))


def _main_function(lines: list[str]) -> list[str]:
    """The lines of the module's `@main` function (SSA names are numbered per function)."""
    start = next((i for i, line in enumerate(lines) if "func.func public @main" in line), None)
    if start is None:
        raise ValueError("the exported module has no public @main function")
    indent = len(lines[start]) - len(lines[start].lstrip())
    for end in range(start + 1, len(lines)):
        if lines[end].startswith(" " * indent + "}"):
            return lines[start:end + 1]
    return lines[start:]


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


def _defining_step(operand: str, defined_at: dict[str, str]):
    """("arg", n) for a function argument, ("step", k) for an op in scope eqn<k>, else the scope."""
    m = re.fullmatch(r"%arg(\d+)", operand)
    if m:
        return ("arg", int(m.group(1)))
    scope = defined_at.get(operand, "")
    k = linking.step_of(scope)
    return ("step", k) if k is not None else scope


def _defines(program: linking.Program, where, value: int) -> bool:
    if where == ("arg", value) and value < program.n_args:
        return True
    return isinstance(where, tuple) and where[0] == "step" and value in program.steps[where[1]].outputs


def check_export(realized: Realized, args: tuple[Any, ...], platform: str) -> Placements:
    """Export the realization for `platform` and read back what it places in host memory."""
    return read_placements(exported_module(realized, args, platform), realized.program, platform)
