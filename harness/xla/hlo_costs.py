"""Flops and transcendentals of an HLO instruction, counted as XLA's HloCostAnalysis does.

Dots and convolutions count two flops per multiply-add; elementwise ops one flop
(or one transcendental) per element; reductions the reducer's cost once per
element folded in; a sort one flop per compare, n log2 n for each sorted row of n
(XLA's cost analysis counts N log2 N over all N elements); fusions the sum of their
fused instructions. Loop bodies are
counted once, as `compiled.cost_analysis()` counts them.
"""

from __future__ import annotations

import math
import re

from harness.xla.hlo_text import ArrayShape, Instruction, Module, TupleShape

TRANSCENDENTAL = {
    "erf", "exponential", "log", "logistic", "power", "sqrt", "cbrt", "rsqrt", "tanh",
    "sine", "cosine", "exponential-minus-one", "log-plus-one", "atan2", "tan",
}
ELEMENTWISE = TRANSCENDENTAL | {
    "abs", "add", "and", "ceil", "clamp", "compare", "complex", "convert", "count-leading-zeros",
    "divide", "floor", "imag", "is-finite", "maximum", "minimum", "multiply", "negate", "not",
    "or", "popcnt", "real", "reduce-precision", "remainder", "round-nearest-afz",
    "round-nearest-even", "select", "shift-left", "shift-right-arithmetic",
    "shift-right-logical", "sign", "subtract", "xor", "stochastic-convert",
}
FMA_FLOPS = 2
# Op kinds, each priced at its own rate by the cost model.
OP_KINDS = ("dot", "convolution", "elementwise", "reduction", "data-movement", "loop", "free", "sort",
            "windowed-reduction")
FREE = {  # name or forward values: no kernel runs (no event in a profile)
    "parameter", "constant", "tuple", "get-tuple-element", "bitcast", "domain", "add-dependency",
    "optimization-barrier", "after-all",
}
LOOP = {"while", "conditional", "call"}  # run other computations; their own cost is control overhead
REDUCTION = {"reduce", "reduce-window", "select-and-scatter", "scatter", "all-reduce"}
WINDOWED = {"reduce-window", "select-and-scatter"}  # reductions over a sliding window (pooling, cumulative sums)


def _elements(shape) -> int:
    if isinstance(shape, TupleShape):
        return sum(_elements(s) for s in shape.elements)
    return shape.elements


def first_array(shape) -> ArrayShape:
    """The first array of a (possibly nested) tuple shape; an array shape itself."""
    while isinstance(shape, TupleShape):
        shape = shape.elements[0]
    return shape


def instruction_cost(module: Module, inst: Instruction) -> tuple[float, float]:
    """(flops, transcendentals) of one instruction, fused computations included."""
    op = inst.opcode
    out_elems = _elements(inst.shape)
    if op in ELEMENTWISE:
        return (0.0, float(out_elems)) if op in TRANSCENDENTAL else (float(out_elems), 0.0)
    if op == "fusion":
        return computation_cost(module, inst.called("calls")[0])
    if op == "dot":
        lhs = module.instruction(inst.operands[0]).shape
        contracting = math.prod(lhs.dims[d] for d in inst.ints("lhs_contracting_dims"))
        return float(FMA_FLOPS * out_elems * contracting), 0.0
    if op == "convolution":
        return _convolution_flops(module, inst), 0.0
    if op in ("reduce", "reduce-window", "scatter", "map", "select-and-scatter", "all-reduce"):
        return _applied_cost(module, inst)
    if op == "sort":
        return sort_compares(module, inst), 0.0
    return 0.0, 0.0


def sort_compares(module: Module, inst: Instruction) -> float:
    """Compares of a sort: n ceil(log2 n) per sorted row of n elements (a comparison sort), rows = elements / n."""
    shape = first_array(module.instruction(inst.operands[0]).shape)
    dims = inst.ints("dimensions")
    n = shape.dims[dims[0]] if dims and shape.dims else shape.elements
    return float(shape.elements * math.ceil(math.log2(n))) if n > 1 else 0.0


def matmul_flops(module: Module, inst: Instruction) -> float:
    """The part of `instruction_cost`'s flops done by dots and convolutions (fused ones too)."""
    if inst.opcode in ("dot", "convolution"):
        return instruction_cost(module, inst)[0]
    if inst.opcode == "fusion":
        return sum(matmul_flops(module, i) for i in module.computations[inst.called("calls")[0]].instructions)
    return 0.0


def op_kind(module: Module, inst: Instruction) -> str:
    """The op's kind (one of `OP_KINDS`): what its kernel does, looking inside fusions.

    A fusion with a convolution is a convolution, else with a dot a dot, else with
    a sort a sort, else with a windowed reduction (reduce-window, select-and-scatter) a windowed
    reduction, else with a reduction a reduction; an op with no flops or transcendentals that is neither
    free nor a loop moves data (copy, transpose, pad, slice, concatenate, gather...).
    """
    if inst.opcode in FREE:
        return "free"
    if inst.opcode in LOOP:
        return "loop"
    opcodes = _opcodes(module, inst)
    if "convolution" in opcodes:
        return "convolution"
    if "dot" in opcodes:
        return "dot"
    if "sort" in opcodes:
        return "sort"
    if opcodes & WINDOWED:
        return "windowed-reduction"
    if opcodes & REDUCTION:
        return "reduction"
    return "elementwise" if any(instruction_cost(module, inst)) else "data-movement"


def _opcodes(module: Module, inst: Instruction) -> set[str]:
    """Opcodes of `inst` and, for a fusion, of every fused instruction (nested fusions too)."""
    if inst.opcode != "fusion":
        return {inst.opcode}
    found: set[str] = set()
    for i in module.computations[inst.called("calls")[0]].instructions:
        found |= _opcodes(module, i)
    return found


def computation_cost(module: Module, name: str) -> tuple[float, float]:
    """Summed (flops, transcendentals) of a (fused or applied) computation."""
    flops = trans = 0.0
    for inst in module.computations[name].instructions:
        f, t = instruction_cost(module, inst)
        flops += f
        trans += t
    return flops, trans


def _applied_cost(module: Module, inst: Instruction) -> tuple[float, float]:
    """Ops that apply a computation per element: its cost times the applications."""
    op = inst.opcode
    f, t = computation_cost(module, (inst.called("to_apply") or inst.called("scatter"))[0])
    if op == "reduce":
        n_inputs = len(inst.operands) // 2
        inputs = sum(module.instruction(o).shape.elements for o in inst.operands[:n_inputs])
        count = (inputs - _elements(inst.shape)) / n_inputs
    elif op == "reduce-window":
        size = re.search(r"size=([0-9x]+)", inst.attrs.get("window", ""))
        window = math.prod(int(s) for s in size.group(1).split("x")) if size else 1
        count = first_array(inst.shape).elements * (window - 1)
    elif op == "scatter":
        count = first_array(module.instruction(inst.operands[-1]).shape).elements
    elif op == "select-and-scatter":
        sel, _ = computation_cost(module, inst.called("select")[0])
        size = re.search(r"size=([0-9x]+)", inst.attrs.get("window", ""))
        window = math.prod(int(s) for s in size.group(1).split("x")) if size else 1
        source = module.instruction(inst.operands[1]).shape.elements
        return source * (window - 1) * sel + source * f, source * t
    else:
        count = _elements(inst.shape)
    return f * count, t * count


def _convolution_flops(module: Module, inst: Instruction) -> float:
    """Multiply-adds of a convolution over valid (non-padding) taps, times two."""
    lhs = module.instruction(inst.operands[0]).shape
    rhs = module.instruction(inst.operands[1]).shape
    labels = inst.attrs.get("dim_labels", "")
    lhs_l, rest = labels.split("_")
    rhs_l, out_l = rest.split("->")
    out = first_array(inst.shape)
    spatial = [c for c in out_l if c.isdigit()]
    window = {k: v for k, v in (
        (m.group(1), m.group(2)) for m in re.finditer(r"(\w+)=([^ }]+)", inst.attrs.get("window", "{}")))}
    n = len(spatial)

    def field(key: str, default: int) -> list[int]:
        return [int(x) for x in window[key].split("x")] if key in window else [default] * n

    stride, lhs_dil, rhs_dil = field("stride", 1), field("lhs_dilate", 1), field("rhs_dilate", 1)
    pads = [tuple(int(p) for p in s.split("_")) for s in window["pad"].split("x")] if "pad" in window else [(0, 0)] * n
    valid = 1
    for k, d in enumerate(spatial):
        in_size = lhs.dims[lhs_l.index(d)]
        k_size = rhs.dims[rhs_l.index(d)]
        o_size = out.dims[out_l.index(d)]
        dilated_in = (in_size - 1) * lhs_dil[k] + 1
        count = 0
        for o in range(o_size):
            for w in range(k_size):
                pos = o * stride[k] + w * rhs_dil[k] - pads[k][0]
                if 0 <= pos < dilated_in and pos % lhs_dil[k] == 0:
                    count += 1
        valid *= count
    batch = out.dims[out_l.index("b")]
    out_features = out.dims[out_l.index("f")]
    in_features = rhs.dims[rhs_l.index("i")]
    batch_groups = int(inst.attrs.get("batch_group_count", "1"))
    return float(FMA_FLOPS * batch * out_features * in_features * valid // batch_groups)
