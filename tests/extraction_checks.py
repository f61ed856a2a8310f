"""The acceptance checks of an extracted instance against XLA's own dump of the same compile."""

from harness import Instance, XlaDump


def check_against_xla(instance: Instance, dump: XlaDump) -> dict[str, float]:
    """Assert that `instance` agrees with XLA's dump and figures; returns the ratios checked."""
    assert tuple(op.name for op in instance.ops) == dump.sequence, "schedule differs from XLA's sequence"

    buffers = {b.key: b for b in instance.buffers}
    left_out = {v.key: v for v in instance.left_out}
    assert len(buffers) == len(instance.buffers), "two buffers name the same XLA value"
    assert not set(buffers) & set(left_out), "a value is both a buffer and left out"
    for key, (start, end) in dump.live_ranges.items():
        if key in left_out:
            assert left_out[key].reason, f"{key} is left out without a reason"
            continue
        assert key in buffers, f"XLA value {key} is neither a buffer nor left out"
        b = buffers[key]
        assert (b.start, b.end) == (start, end), f"{key}: instance [{b.start}, {b.end}], XLA [{start}, {end}]"
    assert set(buffers) <= set(dump.live_ranges), f"buffers XLA does not know: {set(buffers) - set(dump.live_ranges)}"

    for key, b in buffers.items():
        if key in dump.sizes:
            assert b.bytes == dump.sizes[key], f"{key}: {b.bytes} bytes, XLA's buffer assignment {dump.sizes[key]}"
    missing_sizes = [k for k, b in buffers.items() if k not in dump.sizes and b.bytes > 0]
    assert not missing_sizes, f"buffers absent from XLA's buffer assignment: {missing_sizes[:5]}"

    for b in instance.buffers:
        if b.reuses >= 0:
            source = instance.buffers[b.reuses]
            assert source.end == b.start and source.bytes == b.bytes, f"{b.key} cannot reuse {source.key}"

    compiler = instance.compiler
    flops_ratio = instance.flops / compiler.flops if compiler.flops else 1.0
    assert abs(flops_ratio - 1) <= 0.02, f"op flops {instance.flops:.6g} vs cost_analysis {compiler.flops:.6g}"
    peak_ratio = instance.peak_live_bytes / compiler.total_bytes
    assert 0.8 <= peak_ratio <= 1.0, (
        f"peak live {instance.peak_live_bytes} vs XLA args+outputs+temps-aliases {compiler.total_bytes}")
    return {"flops_ratio": flops_ratio, "peak_ratio": peak_ratio}
