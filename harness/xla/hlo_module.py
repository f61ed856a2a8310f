"""Edit a compiled (optimized) HLO module, compile it again and run it: the route to the compiler's own values.

Values that XLA's passes create (iotas, broadcast literals, layout copies, the
internals of an expansion) hold no value of the JAX program, so no annotation in
the program reaches them. Their defining instruction in the optimized module
does: `annotate_host` puts its result in host memory with the host-offload
custom calls XLA's host offloader reads (`MoveToHost`, whose result has memory
space S(5), then `MoveToDevice` before the uses), and `host_placed` confirms which
instructions it places there: XLA's own parser reads the S(5) back, and the module
as the compiler receives it still holds the MoveToHost (on cuda and tpu, XLA's host
offloader turns it into a copy to host memory, as it does for JAX's own
`device_put` to `pinned_host`; the CPU drops it: one memory tier).

jaxlib compiles only MLIR modules, so `compile_text` goes HLO text -> HLO
module proto -> StableHLO (`hlo_to_stablehlo`) -> `Client.compile_and_load`.
StableHLO keeps no layouts: `runnable_text` first writes each `bitcast` (a
reinterpretation of memory in its layouts) as the transposes and reshape it
stands for, and each fusion as a call of its computation (XLA optimizes the
module again: it inlines and fuses anew, but no fusion crosses a MoveToHost, so
an annotated value stays materialized). The jaxlib API is reached only in `_api`; where it is missing,
`HloApiError` names what.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterable, Sequence

import jax
import numpy as np

from harness.xla.hlo_text import ArrayShape, Module, parse_module

HOST_MEMORY_SPACE = 5  # S(5): the host memory space of XLA's layouts (host offloading)
MOVE_TO_HOST = "MoveToHost"
MOVE_TO_DEVICE = "MoveToDevice"
BUFFER_ATTRIBUTE = "mallocbench_placed"  # frontend attribute of a MoveToHost: the instruction whose result it moves


class HloApiError(RuntimeError):
    """This jaxlib lacks an API the HLO route needs; the message names it."""


@dataclasses.dataclass(frozen=True)
class _Api:
    """The jaxlib functions the route uses."""

    module_from_text: Any  # HLO text -> HloModule
    hlo_to_stablehlo: Any  # HloModuleProto bytes -> StableHLO bytecode
    compile_options: Any  # () -> CompileOptions
    device_list: Any  # tuple of devices -> DeviceList
    stablehlo_to_hlo: Any  # StableHLO -> XlaComputation (the conversion the PJRT client makes before compiling)


def _api() -> _Api:
    """The jaxlib entry points of the route, or HloApiError naming the one missing."""
    try:
        from jax._src.lib import _jax, xla_client
    except ImportError as err:
        raise HloApiError(f"jax {jax.__version__}: no jax._src.lib._jax/xla_client ({err})") from None
    wanted = {"xla_client.hlo.hlo_module_from_text": lambda: xla_client.hlo.hlo_module_from_text,
              "_jax.mlir.hlo_to_stablehlo": lambda: _jax.mlir.hlo_to_stablehlo,
              "xla_client.CompileOptions": lambda: xla_client.CompileOptions,
              "_jax.DeviceList": lambda: _jax.DeviceList,
              "_jax.mlir.mlir_module_to_xla_computation": lambda: _jax.mlir.mlir_module_to_xla_computation}
    found = {}
    for name, get in wanted.items():
        try:
            found[name] = get()
        except AttributeError:
            raise HloApiError(f"jax {jax.__version__} has no {name}: the HLO route cannot compile an edited "
                              f"module here (it needs {', '.join(wanted)})") from None
    return _Api(*found.values())


def host_shape(shape: str) -> str:
    """Array shape text `shape` (`f32[8,4]{1,0}`, `f32[]`) with its layout in the host memory space
    (`f32[8,4]{1,0:S(5)}`, `f32[]{:S(5)}`); a shape of no layout takes the row-major one."""
    dims, _, layout = shape.partition("{")
    rank = len([d for d in dims[dims.index("[") + 1:dims.index("]")].split(",") if d])
    order = layout.rstrip("}").split(":")[0] if layout else ",".join(map(str, range(rank - 1, -1, -1)))
    return f"{dims}{{{order}:S({HOST_MEMORY_SPACE})}}"


_INSTRUCTION_RE = re.compile(r"^(\s*)(ROOT )?%?([\w.\-]+) = (\(.*?\)|\S+) ([\w\-]+)\((.*)$")


def annotate_host(text: str, names: Iterable[str]) -> str:
    """HLO module `text` with the result of each instruction in `names` (array-shaped, outside fusions)
    moved to host memory after its definition and back to device memory for its uses: `<name>.host =
    custom-call(<name>)` to MoveToHost (shape in S(5)), `<name>.device` to MoveToDevice, and every use of
    `<name>` reading `<name>.device`. A name of no such instruction raises ValueError."""
    module = parse_module(text)
    names = set(names)
    placeable = {i.name for c in _unfused(module) for i in c.instructions
                 if isinstance(i.shape, ArrayShape) and not i.is_root and i.opcode != "parameter"}
    if names - placeable:
        raise ValueError(f"no array instruction outside fusions (and not a root or parameter) named "
                         f"{sorted(names - placeable)[:5]} in module {module.name!r}")
    out = []
    for line in text.splitlines():
        m = _INSTRUCTION_RE.match(line)
        if not m:
            out.append(line)
            continue
        indent, root, name, shape, _, _ = m.groups()
        head, sep, tail = line.partition(" = ")
        out.append(head + sep + _renamed_uses(tail, names))
        if name in names:
            out.append(f"{indent}%{name}.host = {host_shape(shape)} custom-call(%{name}), "
                       f'custom_call_target="{MOVE_TO_HOST}", frontend_attributes={{{BUFFER_ATTRIBUTE}="{name}"}}')
            out.append(f"{indent}%{name}.device = {shape} custom-call(%{name}.host), "
                       f'custom_call_target="{MOVE_TO_DEVICE}"')
    return "\n".join(out) + "\n"


def _renamed_uses(tail: str, names: set[str]) -> str:
    """An instruction's text after `=` with each operand `%n` of `names` read as `%n.device`."""
    return re.sub(r"%([\w.\-]+)(?![\w.\-])", lambda m: f"%{m.group(1)}.device" if m.group(1) in names
                  else m.group(0), tail)


def _unfused(module: Module):
    """The computations of `module` that no fusion calls."""
    fused = {c for comp in module.computations.values() for i in comp.instructions if i.opcode == "fusion"
             for c in i.called("calls")}
    return [c for name, c in module.computations.items() if name not in fused]


def host_placed(text: str) -> frozenset[str]:
    """The instructions whose result module `text` (from `annotate_host`) moves to host memory, confirmed
    twice: XLA's parser reads the MoveToHost result of the instruction back in memory space S(5), and the
    module handed to the compiler (`text` made runnable, converted to StableHLO and back to HLO as the PJRT
    client converts it) still holds that MoveToHost (found by its `BUFFER_ATTRIBUTE`)."""
    api = _api()
    module = parse_module(printed := api.module_from_text(text).to_string())
    space = re.compile(rf":[^}}]*S\({HOST_MEMORY_SPACE}\)")
    in_space = {i.operands[0] for c in module.computations.values() for i in c.instructions
                if i.opcode == "custom-call" and MOVE_TO_HOST in i.attrs.get("custom_call_target", "")
                and _has_space(printed, i.name, space)}
    return frozenset(in_space) & _moves_reaching_compiler(api, text)


_MOVE_RE = re.compile(rf'custom_call_target="{MOVE_TO_HOST}".*\b{BUFFER_ATTRIBUTE}="([^"]+)"')


def _moves_reaching_compiler(api: _Api, text: str) -> frozenset[str]:
    """The instructions named by the MoveToHost custom calls of module `text` as the compiler receives it."""
    hlo = api.stablehlo_to_hlo(_stablehlo(api, text)).as_hlo_text()
    return frozenset(m.group(1) for m in map(_MOVE_RE.search, hlo.splitlines()) if m)


def _has_space(printed: str, name: str, space: re.Pattern) -> bool:
    """Whether instruction `name`'s result shape in `printed` has the memory space `space` matches."""
    m = re.search(rf"%{re.escape(name)} = (\S+) ", printed)
    return bool(m and space.search(m.group(1)))


def runnable_text(text: str) -> str:
    """HLO module `text` as jaxlib can compile it again: each `bitcast` written as the transpose, reshape and
    transpose it stands for in its operand's and result's layouts (StableHLO keeps no layouts), each fusion
    as a call of its computation (the compiler fuses again)."""
    module = parse_module(text)
    shapes = {i.name: i.shape for c in module.computations.values() for i in c.instructions}
    out = []
    for line in text.splitlines():
        m = _INSTRUCTION_RE.match(line)
        if m and m.group(5) == "fusion":
            line = _as_call(line)
        if not m or m.group(5) != "bitcast":
            out.append(line)
            continue
        indent, root, name, _, _, _ = m.groups()
        inst = module.instruction(name)
        out.extend(_bitcast_lines(indent, root or "", name, shapes[inst.operands[0]], inst.shape,
                                  inst.operands[0]))
    return "\n".join(out) + "\n"


_FUSION_ATTRS_RE = re.compile(r", kind=k\w+, calls=")


def _as_call(line: str) -> str:
    """A fusion instruction's line as a call of its fused computation (XLA fuses the module again)."""
    return _FUSION_ATTRS_RE.sub(", to_apply=", line.replace(" fusion(", " call(", 1), count=1)


def _bitcast_lines(indent: str, root: str, name: str, source: ArrayShape, result: ArrayShape,
                   operand: str) -> list[str]:
    """The lines that compute bitcast `name` of `operand` without layouts: transpose the operand to its
    physical (major to minor) order, reshape to the result's physical dimensions, transpose back, and
    reinterpret the bits where the element type changes (same width)."""
    phys_in, phys_out = _major_to_minor(source), _major_to_minor(result)
    back = tuple(int(k) for k in np.argsort(phys_out))
    steps = []  # (suffix, opcode, dims, attrs): the chain, in the operand's element type
    if phys_in != tuple(sorted(phys_in)):
        steps.append(("in", "transpose", [source.dims[d] for d in phys_in], f", dimensions={{{_ints(phys_in)}}}"))
    steps.append(("flat", "reshape", [result.dims[d] for d in phys_out], ""))
    if back != tuple(sorted(back)):
        steps.append(("out", "transpose", list(result.dims), f", dimensions={{{_ints(back)}}}"))
    if source.dtype != result.dtype:
        steps.append(("bits", "bitcast-convert", list(result.dims), ""))
    lines, current = [], f"%{operand}"
    for k, (suffix, opcode, dims, attrs) in enumerate(steps):
        last = k == len(steps) - 1
        dtype = result.dtype if opcode == "bitcast-convert" else source.dtype
        target = f"%{name}" if last else f"%{name}.{suffix}"
        lines.append(f"{indent}{root if last else ''}{target} = {_plain(dtype, dims)} {opcode}({current}){attrs}")
        current = target
    return lines


def _ints(values: Sequence[int]) -> str:
    return ",".join(map(str, values))


def _major_to_minor(shape: ArrayShape) -> tuple[int, ...]:
    """The dimensions of `shape` from major to minor (row major when it has no layout)."""
    if shape.minor_to_major is None:
        return tuple(range(len(shape.dims)))
    return tuple(reversed(shape.minor_to_major))


def _plain(dtype: str, dims: Sequence[int]) -> str:
    """An array shape in the default (row major) layout (a scalar's has no layout written)."""
    layout = f"{{{','.join(map(str, range(len(dims) - 1, -1, -1)))}}}" if dims else ""
    return f"{dtype}[{','.join(map(str, dims))}]{layout}"


def _stablehlo(api: _Api, text: str) -> bytes:
    """HLO module `text`, made runnable, as the StableHLO module jaxlib compiles."""
    return api.hlo_to_stablehlo(api.module_from_text(runnable_text(text)).as_serialized_hlo_module_proto())


def compile_text(text: str, devices: Sequence[Any] | None = None):
    """Compile HLO module `text` (made runnable by `runnable_text` first) for `devices` (default: the first
    local device); the loaded executable. HloApiError where this jaxlib cannot."""
    api = _api()
    devices = tuple(devices or jax.devices()[:1])
    client = devices[0].client
    if not hasattr(client, "compile_and_load"):
        raise HloApiError(f"jax {jax.__version__}: the {type(client).__name__} has no compile_and_load")
    return client.compile_and_load(_stablehlo(api, text), api.device_list(devices), api.compile_options())


def run_text(text: str, flat_args: Sequence[Any], devices: Sequence[Any] | None = None) -> list[np.ndarray]:
    """The outputs (flat, as numpy arrays) of HLO module `text` run on `flat_args` (on the first of `devices`,
    default the first local device). HloApiError where this jaxlib cannot run a loaded executable."""
    devices = tuple(devices or jax.devices()[:1])
    executable = compile_text(text, devices)
    inputs = [jax.device_put(a, devices[0]) for a in flat_args]
    try:
        results = executable.execute_sharded(inputs).disassemble_into_single_device_arrays()
    except AttributeError as err:
        raise HloApiError(f"jax {jax.__version__}: cannot run a loaded executable ({err})") from None
    return [np.asarray(r[0]) for r in results]


def compiled_host_instructions(executable) -> int:
    """Instructions of a compiled executable's optimized module whose result is in host memory (S(5)): what the
    backend's host offloader made of the MoveToHost calls (0 on the CPU, which drops them)."""
    space = re.compile(rf"= \S*:[^}}\s]*S\({HOST_MEMORY_SPACE}\)")
    return sum(1 for module in executable.hlo_modules() for line in module.to_string().splitlines()
               if space.search(line))
