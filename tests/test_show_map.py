"""Memory-map figures: the time x address plane of a mapping, written as PNG and SVG."""

import numpy as np
import pytest
from matplotlib import image as mpimg

from agent.registry import solve
from agent.data.synthesize import synthetic
from harness.model.mapping import Mapping, MappingError, validate
from harness.model.profiles import Profile
from harness.humanize import human_bytes, human_seconds
from harness.model.mapping import fast_buffer_bytes, fast_peak_bytes
from harness.report.memory_map import plot_memory_map

PROFILE = Profile(
    name="test-direct", description="a test profile", backend="cpu", memory_model="direct",
    fast_capacity_bytes=1 << 34, granule_bytes=256, fast_bandwidth=1e12, slow_bandwidth=1e11,
    copy_bandwidth=1e10, flop_rate=1e13, vector_flop_rate=1e13, transcendental_rate=1e12, op_overhead_seconds=1e-7,
    realizable=False, sources={})


@pytest.fixture(scope="module")
def problem():
    instance = synthetic(0, 60)
    mapping = solve(instance, PROFILE, 0.5, policy="xla-msa")
    validate(instance, mapping, PROFILE, 0.5)
    assert mapping.offsets, "xla-msa should put some buffers in fast memory at budget 0.5"
    return instance, mapping


def _check_png(path, min_size=(400, 300)):
    img = mpimg.imread(path)
    height, width = img.shape[:2]
    assert width >= min_size[0] and height >= min_size[1], (width, height)
    rgb = np.round(img[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    non_white = (rgb < 245).any(axis=1).mean()
    colours = {tuple(c) for c in rgb[(rgb < 245).any(axis=1)][::7]}
    assert non_white > 0.05, f"only {non_white:.1%} of the pixels are not white"
    assert len(colours) > 20, f"only {len(colours)} distinct colours"
    return width, height, non_white


def test_png_has_size_and_content(problem, tmp_path):
    instance, mapping = problem
    out = plot_memory_map(instance, mapping, tmp_path / "map.png", capacity_bytes=int(0.5 * instance.peak_live_bytes))
    assert out == str(tmp_path / "map.png")
    _check_png(out)


def test_compare_is_wider_and_shows_both(problem, tmp_path):
    instance, mapping = problem
    other = solve(instance, PROFILE, 0.3, policy="first-fit")
    single = _check_png(plot_memory_map(instance, mapping, tmp_path / "one.png"))
    both = _check_png(plot_memory_map(instance, mapping, tmp_path / "two.png", compare=other, profile=PROFILE,
                                      title="xla-msa beside first-fit"))
    assert both[0] > 1.5 * single[0] and both[1] == single[1]


def test_svg_and_pdf(problem, tmp_path):
    instance, mapping = problem
    svg = plot_memory_map(instance, mapping, tmp_path / "map.svg", profile=PROFILE)
    text = open(svg).read()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert "schedule step" in text or "path" in text
    pdf = plot_memory_map(instance, mapping, tmp_path / "map.pdf")
    assert open(pdf, "rb").read(5) == b"%PDF-"
    with pytest.raises(ValueError, match="jpeg"):
        plot_memory_map(instance, mapping, tmp_path / "map.jpeg")


def test_slow_list_and_capacity_line(problem, tmp_path):
    """The SVG keeps its text: the slow buffers' count and the largest slow buffer's name."""
    import matplotlib

    instance, mapping = problem
    slow = [b for b in instance.buffers if b.id not in mapping.offsets]
    largest = max(slow, key=lambda b: (b.bytes, -b.id))
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        text = open(plot_memory_map(instance, mapping, tmp_path / "map.svg", profile=PROFILE)).read()
    assert f"slow: {len(slow)} of {len(instance.buffers)} buffers" in text
    assert largest.hlo_name in text
    assert "capacity (test-direct)" in text


def test_empty_and_unbudgeted_mappings(problem, tmp_path):
    instance, _ = problem
    empty = Mapping({}, len(instance.buffers), instance.name, "all-slow", 0.5)
    plot_memory_map(instance, empty, tmp_path / "empty.png")
    everything = solve(instance, PROFILE, None, policy="all-fast")
    _check_png(plot_memory_map(instance, everything, tmp_path / "all-fast.png"))


def test_unknown_buffer_id_is_named(problem, tmp_path):
    instance, mapping = problem
    bad = Mapping({**mapping.offsets, 9999: 0}, mapping.n_buffers, instance.name, "x", 0.5)
    with pytest.raises(MappingError, match="unknown buffer id 9999"):
        plot_memory_map(instance, bad, tmp_path / "bad.png")


def test_many_buffers_are_drawn(tmp_path):
    instance = synthetic(1, 1500)  # the drawing time is benchmarked in test_benchmarks_report.py
    mapping = solve(instance, PROFILE, None, policy="all-fast")
    _check_png(plot_memory_map(instance, mapping, tmp_path / "big.png"))


def test_helpers(problem):
    instance, mapping = problem
    assert human_bytes(512) == "512 B" and human_bytes(3 << 20) == "3.0 MiB"
    assert human_seconds(0.0123) == "12.3 ms" and human_seconds(2e-7) == "200 ns" and human_seconds(3.0) == "3 s"
    total = fast_buffer_bytes(instance, mapping)
    assert 0 < total <= sum(b.bytes for b in instance.buffers)
    # the peak at one step holds at least the largest fast buffer and at most every fast alias group
    assert max(instance.buffers[b].bytes for b in mapping.offsets) <= fast_peak_bytes(instance, mapping) <= total
