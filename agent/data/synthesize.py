"""Seeded synthetic instances whose buffer live intervals look like real programs'.

`synthetic(seed, n_buffers, n_ops=..., pattern=...)` builds a `harness.Instance`
without compiling anything: for tests, scaling studies and training agents on
more instances than the workload suite has. Patterns:

- ``"training"``: one step of training an L-layer network.

  * Parameters (start 0, live to the end as XLA keeps entry parameters): the
    input batch ``syn.x``, the labels ``syn.y`` and one weight ``syn.w<l>`` per
    layer. A weight is read by its forward dot, again by its backward dot, and
    by the optimizer update at the end, which writes the new weight
    ``syn.w<l>.new`` (a program output, live to the end).
  * Forward, per layer: ``dot(act<l-1>, w<l>) -> pre<l>`` (a temporary) and an
    elementwise ``relu``/``tanh`` ``pre<l> -> act<l>``. The activation
    ``act<l>`` lives until the backward pass of layer l reads it, so the
    activations' intervals nest: the first one made is the last one used.
  * Loss: ``loss`` (an output, f32[]) and its gradient ``gact<L>``.
  * Backward, layers L..1: ``gpre<l>`` (temporary), the weight gradient
    ``gw<l>`` (lives until its update) and ``gact<l-1>`` (temporary).
  * Update, layers 1..L: ``w<l>.new = w<l> - lr * gw<l>``.

  About a fifth of the buffers are extra short temporaries ``syn.t<k>``
  (fusions read 1 to 3 steps after their definition).
- ``"inference"``: the forward pass only: parameters ``syn.x`` and the weights,
  short-lived ``pre<l>``/``act<l>`` (an activation is read by the next layer),
  extra temporaries, and the last activation as the output. Training requests
  with fewer than 10 buffers get this structure too (a training step needs 10).
- ``"random"``: about a tenth of the buffers are input parameters, each read 1
  to 3 times at random steps; every other
  buffer is defined by a distinct op at a uniformly random step and lives until
  a uniformly random later step, with up to two more reads in between; one in
  twenty is a program output.

Schedule: the parameter ops first (as XLA schedules them), then the compute
ops, then, where there are two or more outputs, the root ``tuple``. Every
buffer other than a parameter is written by exactly one op; ops beyond one per
buffer (``n_ops`` defaults to ``2 * n_buffers``) are reading ``fusion`` ops
(reductions) placed where they do not lengthen the short temporaries. As
`harness.extract` records them, ``parameter`` and ``tuple`` ops move no bytes:
they write nothing and the tuple's operands read buffer -1 with 0 bytes.

Sizes are f32 arrays of 256 to 2^20 elements (1 KiB to 4 MiB), log-uniform;
a weight, its gradient and its new value share one size, as do an activation,
its pre-activation and their gradients. A dot's flops are 2*m*n*k with
m*n*k = sqrt(elements(a) * elements(b) * elements(out)), elementwise fusions
count one flop per element, tanh and exp one transcendental per element.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
from typing import Optional

import numpy as np

from harness.xla.instance import Buffer, CompilerFigures, Instance, Op

PATTERNS = ("training", "inference", "random")
MIN_ELEMENTS, MAX_ELEMENTS = 256, 1 << 20  # f32: 1 KiB .. 4 MiB
_TRAINING_MIN_BUFFERS = 10
_WEIGHT_EXTRA_READ = 0.25  # chance that a reading fusion also reads a random weight
_RECENT = 8  # how far back a reading fusion looks for a live value


@dataclasses.dataclass
class _Buf:
    name: str
    elements: int
    is_param: bool = False
    is_output: bool = False
    op_name: str = ""
    scalar: bool = False


@dataclasses.dataclass
class _Op:
    name: str
    opcode: str
    op_name: str
    reads: list[int]
    writes: list[int]
    trans: bool = False
    cap: Optional[int] = 0  # ops that may be inserted right after this one (None: any number)
    where: str = ""  # "fwd/layer3": op_name prefix for ops inserted after this one


def synthetic(seed: int, n_buffers: int, *, n_ops: Optional[int] = None, pattern: str = "training") -> Instance:
    """A seeded synthetic instance with `n_buffers` buffers and `n_ops` ops (default 2 * n_buffers).

    Deterministic per (seed, n_buffers, n_ops, pattern); see the module docstring
    for the patterns. Raises ValueError naming the argument for a bad input.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    if isinstance(n_buffers, bool) or not isinstance(n_buffers, (int, np.integer)) or n_buffers < 1:
        raise ValueError(f"n_buffers: expected an integer >= 1, got {n_buffers!r}")
    if pattern not in PATTERNS:
        raise ValueError(f"pattern: unknown pattern {pattern!r}; expected one of {', '.join(PATTERNS)}")
    seed, n_buffers = int(seed), int(n_buffers)
    least = min_ops(n_buffers, pattern)
    if n_ops is None:
        n_ops = max(2 * n_buffers, least)
    elif isinstance(n_ops, bool) or not isinstance(n_ops, (int, np.integer)) or n_ops < least:
        raise ValueError(f"n_ops: expected an integer >= {least} for {n_buffers} {pattern} buffers, got {n_ops!r}")
    n_ops = int(n_ops)
    rng = np.random.default_rng(seed)
    if pattern == "random":
        bufs, ops = _random(rng, n_buffers, n_ops)
    else:
        bufs, ops = _layered(rng, n_buffers, n_ops, training=pattern == "training")
    name = f"synthetic-{pattern}-{seed}-{n_buffers}"
    return _assemble(name, bufs, ops)


def min_ops(n_buffers: int, pattern: str = "training") -> int:
    """The fewest ops `synthetic` can build `n_buffers` buffers of `pattern` with."""
    if pattern == "random":
        n_params, n_outputs = _random_plan(n_buffers)
        return n_buffers + 1 + (n_outputs >= 2)
    layers, _ = _layered_plan(n_buffers, pattern == "training")
    if layers == 0:
        return n_buffers + 1  # one reading op after the last temporary
    return n_buffers + (pattern == "training" and n_buffers >= _TRAINING_MIN_BUFFERS)  # + root tuple


# --- training and inference ---------------------------------------------------------------


def _layered_plan(n_buffers: int, training: bool) -> tuple[int, int]:
    """(layers, extra temporaries): the core structure takes about 4/5 of the buffers."""
    if training and n_buffers >= _TRAINING_MIN_BUFFERS:
        layers = max(1, int(0.8 * (n_buffers - 3) / 7))
        return layers, n_buffers - 7 * layers - 3
    layers = int(0.8 * (n_buffers - 1) / 3)
    if n_buffers >= 4:
        layers = max(1, layers)
    return layers, n_buffers - 1 - 3 * layers


def _elements(rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` log-uniform element counts in [MIN_ELEMENTS, MAX_ELEMENTS]."""
    logs = rng.uniform(math.log(MIN_ELEMENTS), math.log(MAX_ELEMENTS), n)
    return np.clip(np.rint(np.exp(logs)), MIN_ELEMENTS, MAX_ELEMENTS).astype(np.int64)


def _layered(rng: np.random.Generator, n_buffers: int, n_ops: int, training: bool) -> tuple[list[_Buf], list[_Op]]:
    training = training and n_buffers >= _TRAINING_MIN_BUFFERS
    layers, n_temps = _layered_plan(n_buffers, training)
    sizes = _LayerSizes.draw(rng, layers, n_temps)
    net = _Network()
    _forward(net, sizes, layers, training)
    if training:
        _backward_and_update(net, sizes, layers)
    if net.core:
        net.core[-1].cap = 0
    has_tuple = training  # the loss and the new weights: two or more outputs
    fill = _Fills.draw(rng, net.core, n_temps, n_ops - len(net.params) - len(net.core) - n_temps - has_tuple, layers)
    seq, item_of = _interleave(net.core, fill)
    _fill(net, seq, item_of, fill, sizes.temp, layers, n_ops)
    bufs = net.bufs
    ops = [_Op(bufs[p].name, "parameter", bufs[p].op_name, [], [], cap=None) for p in net.params] + seq
    outputs = [i for i, b in enumerate(bufs) if b.is_output]
    if len(outputs) >= 2:
        ops.append(_Op("syn.tuple", "tuple", "", [-1] * len(outputs), []))
    assert len(bufs) == n_buffers and len(ops) == n_ops, (len(bufs), n_buffers, len(ops), n_ops)
    return bufs, ops


@dataclasses.dataclass(frozen=True)
class _LayerSizes:
    """Element counts of a layered instance: activations (act[0] the input batch), weights (w[0] unused),
    extra temporaries and labels; and which layers use tanh (transcendental) rather than relu."""

    act: np.ndarray
    w: np.ndarray
    temp: np.ndarray
    label: int
    tanh: np.ndarray

    @staticmethod
    def draw(rng: np.random.Generator, layers: int, n_temps: int) -> _LayerSizes:
        act, w, temp = _elements(rng, layers + 1), _elements(rng, layers + 1), _elements(rng, n_temps)
        label = int(_elements(rng, 1)[0])
        return _LayerSizes(act, w, temp, label, rng.random(layers + 1) < 0.25)


@dataclasses.dataclass
class _Network:
    """A layered instance as it is built: its buffers, parameters (x, y, the weights), weights by layer
    (weights[0] unused), activations by layer, and its core ops in schedule order."""

    bufs: list[_Buf] = dataclasses.field(default_factory=list)
    params: list[int] = dataclasses.field(default_factory=list)
    weights: list[int] = dataclasses.field(default_factory=list)
    act: list[int] = dataclasses.field(default_factory=list)
    core: list[_Op] = dataclasses.field(default_factory=list)

    def buf(self, name: str, elements: int, **kw) -> int:
        """A new buffer "syn.<name>"; its index."""
        self.bufs.append(_Buf("syn." + name, int(elements), **kw))
        return len(self.bufs) - 1

    def op(self, opcode: str, phase: str, label: str, reads: list[int], out: int, cap: Optional[int],
           trans: bool = False) -> None:
        """A core op of `phase` ("fwd/layer3") writing buffer `out`."""
        self.bufs[out].op_name = f"synthetic/{phase}/{label}"
        self.core.append(_Op(self.bufs[out].name, opcode, self.bufs[out].op_name, reads, [out], trans, cap, phase))


def _forward(net: _Network, sizes: _LayerSizes, layers: int, training: bool) -> None:
    """The parameters, then per layer dot(act, w) -> pre and relu/tanh(pre) -> act."""
    net.params.append(net.buf("x", sizes.act[0], is_param=True, op_name="synthetic/inputs/x"))
    if training:
        net.params.append(net.buf("y", sizes.label, is_param=True, op_name="synthetic/inputs/y"))
    net.weights = [-1] + [net.buf(f"w{l}", sizes.w[l], is_param=True, op_name=f"synthetic/params/layer{l}/w")
                          for l in range(1, layers + 1)]
    net.params += net.weights[1:]
    net.act = [net.params[0]] + [-1] * layers
    for l in range(1, layers + 1):
        pre = net.buf(f"pre{l}", sizes.act[l])
        net.op("dot", f"fwd/layer{l}", "dot", [net.act[l - 1], net.weights[l]], pre, cap=1)
        net.act[l] = net.buf(f"act{l}", sizes.act[l], is_output=not training and l == layers)
        net.op("fusion", f"fwd/layer{l}", "tanh" if sizes.tanh[l] else "relu", [pre], net.act[l], cap=None,
               trans=bool(sizes.tanh[l]))


def _backward_and_update(net: _Network, sizes: _LayerSizes, layers: int) -> None:
    """The loss and its gradient, the backward pass from layer L to 1, and the weights' updates."""
    act, weights, y = net.act, net.weights, net.params[1]
    loss = net.buf("loss", 1, is_output=True, scalar=True)
    net.op("fusion", "loss", "exp", [act[layers], y], loss, cap=1, trans=True)
    gact = net.buf(f"gact{layers}", sizes.act[layers])
    net.op("fusion", "loss", "grad", [act[layers], y, loss], gact, cap=0)
    grads = [-1] * (layers + 1)
    for l in range(layers, 0, -1):
        gpre = net.buf(f"gpre{l}", sizes.act[l])
        net.op("fusion", f"bwd/layer{l}", f"{'tanh' if sizes.tanh[l] else 'relu'}_grad", [gact, act[l]], gpre, cap=0)
        grads[l] = net.buf(f"gw{l}", sizes.w[l])
        net.op("dot", f"bwd/layer{l}", "dot", [act[l - 1], gpre], grads[l], cap=1 if l > 1 else None)
        if l > 1:
            gact = net.buf(f"gact{l - 1}", sizes.act[l - 1])
            net.op("dot", f"bwd/layer{l}", "dot", [gpre, weights[l]], gact, cap=1)
    for l in range(1, layers + 1):
        new = net.buf(f"w{l}.new", sizes.w[l], is_output=True)
        net.op("fusion", f"update/layer{l}", "sub", [weights[l], grads[l]], new, cap=None)


@dataclasses.dataclass(frozen=True)
class _Fills:
    """The extra temporaries and reading fusions placed between the core ops: for each item k its kind
    (1: temporary, 0: reading fusion), how many go in each gap (gap g is before core[g]), the items in gap
    order, a temporary's read delay, and a reading fusion's extra weight read (whether, which layer)."""

    kinds: np.ndarray
    per_gap: np.ndarray
    order: np.ndarray
    delays: np.ndarray
    weight_read: np.ndarray
    weight_pick: np.ndarray
    trans_pick: np.ndarray

    @staticmethod
    def draw(rng: np.random.Generator, core: list[_Op], n_temps: int, n_fill: int, layers: int) -> _Fills:
        """A gap with cap 1 (a short temporary spans it) gets at most one item; cap None any number."""
        assert n_fill >= 0 and (core or n_fill >= 1)
        kinds = np.array([1] * n_temps + [0] * n_fill, dtype=np.int8)
        rng.shuffle(kinds)
        caps = [None] + [c.cap for c in core]
        tight = [g for g, c in enumerate(caps) if c == 1]
        free = [g for g, c in enumerate(caps) if c is None]
        chosen = [g for g, take in zip(tight, rng.random(len(tight)) < 0.5) if take][: len(kinds)]
        gaps = np.concatenate([np.array(chosen, dtype=np.int64),
                               rng.choice(np.array(free, dtype=np.int64), size=len(kinds) - len(chosen))])
        order = np.argsort(gaps, kind="stable")
        per_gap = np.bincount(gaps, minlength=len(core) + 1)
        if not core and len(kinds) and kinds[-1] == 1 and (kinds == 0).any():
            last_reader = int(np.flatnonzero(kinds == 0)[-1])  # let the last temporary be read
            kinds[last_reader], kinds[-1] = 1, 0
        delays = rng.integers(1, 4, size=len(kinds))
        weight_read = rng.random(len(kinds)) < _WEIGHT_EXTRA_READ
        weight_pick = rng.integers(1, layers + 1, size=len(kinds)) if layers else np.zeros(len(kinds), np.int64)
        trans_pick = rng.random(len(kinds)) < 0.1
        return _Fills(kinds, per_gap, order, delays, weight_read, weight_pick, trans_pick)


def _interleave(core: list[_Op], fill: _Fills) -> tuple[list[_Op], dict[int, int]]:
    """The core ops with an empty fusion for each fill item in its gap; and which item each of those is
    (position in the sequence -> item)."""
    seq: list[_Op] = []
    item_of: dict[int, int] = {}
    items = iter(fill.order.tolist())
    for g in range(len(core) + 1):
        for _ in range(int(fill.per_gap[g])):
            where = core[g - 1].where if g > 0 else (core[0].where if core else "fwd")
            item_of[len(seq)] = next(items)
            seq.append(_Op("", "fusion", "", [], [], where=where))
        if g < len(core):
            seq.append(core[g])
    return seq, item_of


def _fill(net: _Network, seq: list[_Op], item_of: dict[int, int], fill: _Fills, temp_el: np.ndarray, layers: int,
          n_ops: int) -> None:
    """Make each fill item of `seq` a temporary (read `delays` steps later) or a reading fusion, each reading
    a recent value still live (else a weight, or the input)."""
    last = len(seq) - 1
    planned_end = np.full(len(net.bufs) + len(temp_el), -1, dtype=np.int64)
    for b in net.params + [i for i, b in enumerate(net.bufs) if b.is_output]:
        planned_end[b] = n_ops
    for pos, o in enumerate(seq):
        if o.reads:
            planned_end[o.reads] = np.maximum(planned_end[o.reads], pos)
    recent: list[int] = []
    n_temp, n_read = 0, 0
    for pos, o in enumerate(seq):
        k = item_of.get(pos)
        if k is not None:
            source = next((b for b in reversed(recent[-_RECENT:]) if planned_end[b] >= pos), -1)
            if source < 0:
                source = net.weights[int(fill.weight_pick[k])] if layers else net.params[0]
            if fill.kinds[k] == 1 or not o.reads:  # a reading fusion already consuming a temporary needs no more
                o.reads.append(source)
            if fill.kinds[k] == 0 and layers and fill.weight_read[k]:
                o.reads.append(net.weights[int(fill.weight_pick[k])])
            if fill.kinds[k] == 1:
                t = net.buf(f"t{n_temp}", temp_el[n_temp], op_name=f"synthetic/{o.where}/fusion")
                n_temp += 1
                o.name, o.op_name, o.writes = net.bufs[t].name, net.bufs[t].op_name, [t]
                o.trans = bool(fill.trans_pick[k])
                if o.trans:
                    net.bufs[t].op_name = o.op_name = f"synthetic/{o.where}/exp"
                consumer = min(pos + int(fill.delays[k]), last)
                planned_end[t] = consumer
                if consumer > pos:
                    seq[consumer].reads.append(t)
            else:
                o.name, o.op_name = f"syn.r{n_read}", f"synthetic/{o.where}/reduce"
                n_read += 1
        recent.extend(o.writes)


# --- random ---------------------------------------------------------------------------------


def _random_plan(n_buffers: int) -> tuple[int, int]:
    """(parameters, outputs) of a random instance."""
    n_params = max(1, n_buffers // 10)
    return n_params, (n_buffers - n_params) // 20


def _random(rng: np.random.Generator, n_buffers: int, n_ops: int) -> tuple[list[_Buf], list[_Op]]:
    n_params, n_outputs = _random_plan(n_buffers)
    n_values = n_buffers - n_params
    has_tuple = n_outputs >= 2
    n_compute = n_ops - n_params - has_tuple
    elements = _elements(rng, n_buffers)
    define = np.sort(rng.choice(n_compute - 1, size=n_values, replace=False)) if n_values else np.zeros(0, np.int64)
    last = rng.integers(define + 1, n_compute)  # uniform in (define, n_compute - 1]
    n_extra = rng.integers(0, 3, size=n_values)
    lo, hi = np.repeat(define + 1, n_extra), np.repeat(last + 1, n_extra)
    extra = rng.integers(lo, hi) if len(lo) else np.zeros(0, np.int64)
    outputs = rng.choice(n_values, size=n_outputs, replace=False) + n_params
    values = np.arange(n_params, n_buffers)
    param_reads = rng.integers(1, 4, size=n_params)  # every input is read 1 to 3 times
    param_pos = rng.integers(0, n_compute, size=int(param_reads.sum()))
    read_buf = np.concatenate([values, np.repeat(values, n_extra), np.repeat(np.arange(n_params), param_reads)])
    read_pos = np.concatenate([last, extra, param_pos])
    keep = np.ones(len(read_pos), dtype=bool)
    order = np.lexsort((read_buf, read_pos))
    read_buf, read_pos = read_buf[order], read_pos[order]
    keep[1:] = (read_buf[1:] != read_buf[:-1]) | (read_pos[1:] != read_pos[:-1])
    read_buf, read_pos = read_buf[keep], read_pos[keep]
    bounds = np.searchsorted(read_pos, np.arange(n_compute + 1))
    fallback = rng.integers(0, n_params, size=n_compute)
    as_dot = rng.random(n_compute) < 0.3
    as_trans = rng.random(n_compute) < 0.1

    bufs = [_Buf(f"syn.in{i}", int(elements[i]), is_param=True, op_name=f"synthetic/inputs/in{i}")
            for i in range(n_params)]
    bufs += [_Buf(f"syn.v{i}", int(elements[n_params + i])) for i in range(n_values)]
    for b in outputs.tolist():
        bufs[b].is_output = True
    writer = np.full(n_compute, -1, dtype=np.int64)
    writer[define] = values
    ops = [_Op(b.name, "parameter", b.op_name, [], [], cap=None) for b in bufs[:n_params]]
    n_read = 0
    for pos in range(n_compute):
        reads = read_buf[bounds[pos]:bounds[pos + 1]].tolist() or [int(fallback[pos])]
        out = int(writer[pos])
        if out >= 0:
            opcode = "dot" if as_dot[pos] and len(reads) >= 2 else "fusion"
            label = "dot" if opcode == "dot" else ("exp" if as_trans[pos] else "fusion")
            bufs[out].op_name = f"synthetic/random/{label}"
            ops.append(_Op(bufs[out].name, opcode, bufs[out].op_name, reads, [out], label == "exp"))
        else:
            ops.append(_Op(f"syn.r{n_read}", "fusion", "synthetic/random/reduce", reads, []))
            n_read += 1
    if has_tuple:
        ops.append(_Op("syn.tuple", "tuple", "", [-1] * n_outputs, []))
    return bufs, ops


# --- assembly -------------------------------------------------------------------------------


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _assemble(name: str, bufs: list[_Buf], ops: list[_Op]) -> Instance:
    """Steps, intervals, ids in start order, flops and the compiler's figures."""
    n_ops, n = len(ops), len(bufs)
    elements = np.array([b.elements for b in bufs], dtype=np.int64)
    nbytes = 4 * elements
    is_param = np.array([b.is_param for b in bufs], dtype=bool)
    is_output = np.array([b.is_output for b in bufs], dtype=bool)
    start = np.zeros(n, dtype=np.int64)
    read_buf, read_step = [], []
    for step, o in enumerate(ops):
        for w in o.writes:
            start[w] = step
        for r in o.reads:
            if r >= 0:
                read_buf.append(r)
                read_step.append(step)
    read_buf, read_step = np.array(read_buf, dtype=np.int64), np.array(read_step, dtype=np.int64)
    start[is_param] = 0
    end = start.copy()
    np.maximum.at(end, read_buf, read_step)
    end[is_param | is_output] = n_ops
    order = np.lexsort((np.arange(n), -nbytes, start))
    new_id = np.empty(n, dtype=np.int64)
    new_id[order] = np.arange(n)
    by_use = np.lexsort((read_step, read_buf))
    use_buf, use_step = read_buf[by_use], read_step[by_use]
    bounds = np.searchsorted(use_buf, np.arange(n + 1))

    buffers = []
    for k, old in enumerate(order.tolist()):
        b = bufs[old]
        uses = tuple(sorted(set(use_step[bounds[old]:bounds[old + 1]].tolist())))
        buffers.append(Buffer(
            id=k, hlo_name=b.name, index=(), shape="f32[]" if b.scalar else f"f32[{b.elements}]",
            bytes=int(nbytes[old]), start=int(start[old]), end=int(end[old]), uses=uses,
            is_parameter=b.is_param, is_output=b.is_output, is_phi=False, is_constant=False,
            alias_group=k, reuses=-1, op_name=b.op_name,
        ))

    out_ops = []
    flops_total = trans_total = 0.0
    bytes_total = 0
    for step, o in enumerate(ops):
        reads = list(dict.fromkeys(o.reads)) if o.opcode != "tuple" else o.reads
        operand_bytes = [int(nbytes[r]) if r >= 0 else 0 for r in reads]
        output_bytes = int(sum(nbytes[w] for w in o.writes))
        flops = trans = 0.0
        if o.opcode == "dot":
            flops = 2.0 * math.floor(math.sqrt(float(elements[reads[0]] * elements[reads[1]]) *
                                               float(elements[o.writes[0]])))
        elif o.opcode == "fusion":
            count = float(elements[o.writes[0]] if o.writes else max(elements[r] for r in reads))
            flops = count
            trans = count if o.trans else 0.0
        flops_total += flops
        trans_total += trans
        bytes_total += sum(operand_bytes) + output_bytes
        out_ops.append(Op(
            step=step, name=o.name, opcode=o.opcode, computation="main", flops=flops, transcendentals=trans,
            reads=tuple(int(new_id[r]) if r >= 0 else -1 for r in reads), operand_bytes=tuple(operand_bytes),
            writes=tuple(int(new_id[w]) for w in o.writes), output_bytes=output_bytes, trip_count=1, branch=None,
            op_name=o.op_name,
        ))

    temp = ~(is_param | is_output)
    delta = np.zeros(n_ops + 2, dtype=np.int64)
    np.add.at(delta, start[temp], nbytes[temp])
    np.add.at(delta, end[temp] + 1, -nbytes[temp])
    compiler = CompilerFigures(
        flops=flops_total, transcendentals=trans_total, bytes_accessed=float(bytes_total),
        argument_bytes=int(nbytes[is_param].sum()), output_bytes=int(nbytes[is_output].sum()),
        temp_bytes=int(np.cumsum(delta)[: n_ops + 1].max(initial=0)), alias_bytes=0,
    )
    return Instance(
        name=name, hlo_module=name, backend="synthetic", jax_version=_version("jax"),
        jaxlib_version=_version("jaxlib"), ops=tuple(out_ops), buffers=tuple(buffers), left_out=(),
        compiler=compiler,
    )
