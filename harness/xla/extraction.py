"""Turn a JAX function into an `Instance`: jit, lower, compile, analyse the scheduled HLO."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
from typing import Any, Callable, Optional

import jax
import jaxlib

try:  # the only way to make a changed cache setting count in a running process (JAX memoizes it)
    from jax._src import compilation_cache as _jax_cache
except ImportError:  # a JAX without it: the setting alone is all there is
    _jax_cache = None

from harness.xla.hlo_costs import first_array, instruction_cost, matmul_flops, op_kind
from harness.xla.hlo_text import Module, TupleShape, parse_module
from harness.xla.instance import Buffer, CompilerFigures, Instance, LeftOut, Op
from harness.xla.liveness import Liveness, Value, analyze, may_share_operand

# Instructions that only name or forward values: they read and write no bytes.
# What an extraction of the same compiled program yields changes with this number (cost counts, kinds):
# it salts the extraction cache's key, so a cached instance from before is extracted again.
EXTRACTION_VERSION = 3  # 2: sorts' compares and kind; operands read only through slices. 3: windowed reductions' kind

_NO_TRAFFIC = {
    "parameter", "constant", "tuple", "get-tuple-element", "bitcast", "while", "call",
    "conditional", "domain", "add-dependency", "optimization-barrier", "after-all",
}


@contextlib.contextmanager
def without_persistent_cache():
    """JAX's persistent compilation cache off inside the block, as it was after it: a program under study is
    compiled by XLA, never loaded from a cache (the agent turns one on for its own programs) whose key leaves
    dump flags out and whose load time is no compile time."""
    if not jax.config.jax_enable_compilation_cache:
        yield
        return
    jax.config.update("jax_enable_compilation_cache", False)
    if _jax_cache is not None:
        _jax_cache.reset_cache()
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", True)
        if _jax_cache is not None:
            _jax_cache.reset_cache()


def compile_program(fn: Callable[..., Any], *args: Any, compiler_options: Optional[dict] = None):
    """jit, lower and compile `fn(*args)` on the local backend, never from JAX's persistent compilation cache
    (`without_persistent_cache`); returns the compiled program."""
    jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
    with without_persistent_cache():
        return jitted.lower(*args).compile(compiler_options=compiler_options)


def extract(fn: Callable[..., Any], *args: Any, name: Optional[str] = None) -> Instance:
    """The mapping instance of `fn(*args)` as XLA compiles it on the local backend."""
    compiled = compile_program(fn, *args)
    return from_compiled(compiled, name or getattr(fn, "__name__", "program"))


def compiler_figures(compiled) -> CompilerFigures:
    """`cost_analysis()` and `memory_analysis()` of a compiled program."""
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older JAX returns one dict per device
        cost = cost[0] if cost else {}
    cost = cost or {}
    mem = compiled.memory_analysis()
    return CompilerFigures(
        flops=float(cost.get("flops", 0.0)),
        transcendentals=float(cost.get("transcendentals", 0.0)),
        bytes_accessed=float(cost.get("bytes accessed", 0.0)),
        argument_bytes=int(mem.argument_size_in_bytes),
        output_bytes=int(mem.output_size_in_bytes),
        temp_bytes=int(mem.temp_size_in_bytes),
        alias_bytes=int(mem.alias_size_in_bytes),
    )


def from_compiled(compiled, name: str) -> Instance:
    """Build the instance of an already compiled program (`jax.stages.Compiled`)."""
    module = parse_module(compiled.as_text())
    return from_module(module, name, compiler_figures(compiled), jax.default_backend())


def from_module(module: Module, name: str, compiler: CompilerFigures, backend: str) -> Instance:
    """Build the instance from a parsed, scheduled HLO module."""
    live = analyze(module)
    buffers, left_out, buffer_of = _buffers(module, live)
    ops = tuple(_op(module, live, step, buffer_of) for step in range(len(live.sequence)))
    for out, operand in _in_place_reuses(module, live, ops, buffers).items():
        buffers[out] = dataclasses.replace(buffers[out], reuses=operand)
    return Instance(
        name=name,
        hlo_module=module.name,
        backend=backend,
        jax_version=jax.__version__,
        jaxlib_version=jaxlib.__version__,
        ops=ops,
        buffers=tuple(buffers),
        left_out=tuple(left_out),
        compiler=compiler,
    )


def _buffers(module: Module, live: Liveness) -> tuple[list[Buffer], list[LeftOut], dict[int, int]]:
    """Instance buffers for the array values; tuple index tables are left out."""
    buffers: list[Buffer] = []
    left_out: list[LeftOut] = []
    buffer_of: dict[int, int] = {}  # value id -> buffer id
    entry_root = module.entry_computation.root
    groups: dict[int, int] = {}
    for v in sorted(live.values, key=lambda v: (v.start, v.id)):
        shape = v.shape
        if isinstance(shape, TupleShape):
            left_out.append(LeftOut(v.instruction.name, v.index, shape.byte_size, "tuple index table"))
            continue
        buffer_of[v.id] = len(buffers)
        is_entry_parameter = v.instruction.opcode == "parameter" and v.instruction.computation == module.entry
        buffers.append(Buffer(
            id=len(buffers),
            hlo_name=v.instruction.name,
            index=v.index,
            shape=str(shape),
            bytes=shape.byte_size,
            start=v.start,
            end=v.end,
            uses=tuple(v.use_times),
            is_parameter=is_entry_parameter,
            is_output=_is_output(v, entry_root.name),
            is_phi=v.is_phi,
            is_constant=v.instruction.opcode == "constant",
            alias_group=groups.setdefault(v.buffer, len(groups)),
            reuses=-1,
            op_name=_source_op_name(module, v.instruction, v.index),
            parameter_number=int(v.instruction.attrs["_payload"]) if is_entry_parameter else -1,
        ))
    return buffers, left_out, buffer_of


def _source_op_name(module: Module, inst, index: tuple[int, ...]) -> str:
    """The op_name of the instruction that computes output `index` of `inst`.

    For a fusion that is the fused computation's root (the tuple element at
    `index` for multi-output fusions), looking through ops without metadata.
    """
    while inst.opcode == "fusion":
        root = module.computations[inst.called("calls")[0]].root
        if root.opcode == "tuple" and index:
            root, index = module.instruction(root.operands[index[0]]), index[1:]
        while not root.op_name and root.opcode in ("bitcast", "copy", "reshape", "transpose", "convert") and root.operands:
            root = module.instruction(root.operands[0])
        if root.op_name or root.opcode == "fusion":
            inst = root
        else:
            break
    return inst.op_name


def _is_output(value: Value, root: str) -> bool:
    return any(inst.name == root for inst, _ in [(value.instruction, value.index)] + value.positions)


def _op(module: Module, live: Liveness, step: int, buffer_of: dict[int, int]) -> Op:
    inst = live.sequence[step]
    flops, trans = instruction_cost(module, inst)
    traffic = inst.opcode not in _NO_TRAFFIC
    reads, operand_bytes = [], []
    for operand in inst.operands:
        shape = module.instruction(operand).shape
        array = traffic and not isinstance(shape, TupleShape)
        reads.append(buffer_of.get(live.value_sets[operand][()].id, -1) if array else -1)
        operand_bytes.append(shape.byte_size if array else 0)
    defined = [v for i, v in live.value_sets[inst.name].items()
               if v.instruction is inst and v.index == i and v.id in buffer_of] if traffic else []
    output_bytes = sum(v.shape.byte_size for v in defined)
    for operand, nbytes in (_sliced_operands(module, inst) if traffic else {}).items():
        operand_bytes[operand] = min(operand_bytes[operand], nbytes)
    sliced = _slice_access(module, inst) if traffic else None
    if sliced is not None:  # a dynamic slice or in-place update touches only the slice of its big operand
        operand, nbytes, in_place = sliced
        operand_bytes[operand] = 0 if in_place else nbytes
        if in_place and len(defined) == 1:
            output_bytes = nbytes
    return Op(
        step=step,
        name=inst.name,
        opcode=inst.opcode,
        computation=inst.computation,
        flops=flops,
        transcendentals=trans,
        reads=tuple(reads),
        operand_bytes=tuple(operand_bytes),
        writes=tuple(buffer_of[v.id] for v in defined),
        output_bytes=output_bytes,
        trip_count=live.trip_counts[inst.name],
        branch=live.branches[inst.name],
        op_name=inst.op_name,
        matmul_flops=matmul_flops(module, inst),
        kind=op_kind(module, inst),
        iterations=_iterations(inst),
    )


def _slice_access(module: Module, inst) -> Optional[tuple[int, int, bool]]:
    """(operand, slice bytes, in place) where `inst` is a dynamic-slice or a dynamic-update-slice of one
    operand, directly or as the root of a fusion (through bitcasts): it reads (slice) or overwrites in
    place (update) that many bytes of the operand, not the whole operand, as XLA's cost analysis counts it."""
    root, operand_of = inst, {k: k for k in range(len(inst.operands))}
    if inst.opcode == "fusion":
        fused = module.computations[inst.called("calls")[0]]
        root = fused.root
        while root.opcode == "bitcast" and root.operands:
            root = module.instruction(root.operands[0])
        operand_of = {}
        for k, name in enumerate(root.operands[:2]):
            source = module.instruction(name)
            while source.opcode == "bitcast" and source.operands:
                source = module.instruction(source.operands[0])
            if source.opcode == "parameter" and source.computation == fused.name:
                operand_of[k] = int(source.attrs["_payload"])
    if root.opcode == "dynamic-slice" and 0 in operand_of:
        return operand_of[0], first_array(root.shape).byte_size, False
    if root.opcode == "dynamic-update-slice" and 0 in operand_of:
        return operand_of[0], first_array(module.instruction(root.operands[1]).shape).byte_size, True
    return None


_SLICES = ("slice", "dynamic-slice")


def _sliced_operands(module: Module, inst) -> dict[int, int]:
    """Operand -> bytes read of it, for the operands `inst` reads only through slices: a slice op's
    operand, or a fusion's parameter whose every use (through bitcasts) slices it. Such an operand
    is read as far as its slices (their bytes, summed), as XLA's cost analysis counts operand utilization."""
    if inst.opcode in _SLICES:
        return {0: first_array(inst.shape).byte_size}
    if inst.opcode != "fusion":
        return {}
    fused = module.computations[inst.called("calls")[0]]
    users: dict[str, list] = collections.defaultdict(list)
    for i in fused.instructions:
        for operand in i.operands:
            users[operand].append(i)

    def slice_bytes(name: str) -> Optional[int]:  # bytes of the slices that read `name`; None: another use
        total = 0
        for user in users[name]:
            if user.opcode == "bitcast":
                part = slice_bytes(user.name)
            elif user.opcode in _SLICES and user.operands[0] == name:
                part = first_array(user.shape).byte_size
            else:
                return None
            if part is None:
                return None
            total += part
        return total if users[name] else None

    found = {}
    for i in fused.instructions:
        if i.opcode == "parameter":
            nbytes = slice_bytes(i.name)
            if nbytes is not None:
                found[int(i.attrs["_payload"])] = nbytes
    return found


def _iterations(inst) -> Optional[int]:
    """Body executions per execution of a while op with a known trip count; None otherwise."""
    if inst.opcode != "while":
        return None
    n = inst.backend_config.get("known_trip_count", {}).get("n")
    return None if n is None else int(n)


def _in_place_reuses(module: Module, live: Liveness, ops: tuple[Op, ...], buffers: list[Buffer]) -> dict[int, int]:
    """Output buffer -> operand buffer whose memory XLA may reuse, where the operand dies at the op."""
    reuses: dict[int, int] = {}
    taken: set[int] = set()
    group_sizes = collections.Counter(b.alias_group for b in buffers)
    for op in ops:
        if len(op.writes) != 1:
            continue
        out = buffers[op.writes[0]]
        inst = live.sequence[op.step]
        for k, b in enumerate(op.reads):
            if b < 0 or b in taken:
                continue
            source = buffers[b]
            alone = group_sizes[source.alias_group] == group_sizes[out.alias_group] == 1
            if (alone and source.end == op.step and source.bytes == out.bytes and not out.is_output
                    and not source.is_parameter and not source.is_constant and not source.is_output
                    and may_share_operand(module, inst, k)):
                reuses[out.id] = b
                taken.add(b)
                break
    return reuses
