"""Benchmarks of the report's figures (`make bench`; once each, as a smoke test, under `make test`).

- drawing the memory map of a large mapping (1500 buffers; goal: under 10 s on a busy 2-core CPU).
"""

from agent.data.synthesize import synthetic
from agent.registry import solve
from harness.model.profiles import load_profile
from harness.report.memory_map import plot_memory_map


def test_memory_map_of_1500_buffers(benchmark, tmp_path):
    instance = synthetic(1, 1500)
    mapping = solve(instance, load_profile("tpu-v4i-cmem"), None, policy="all-fast")
    benchmark.group = "memory map, 1500 buffers"
    out = benchmark.pedantic(plot_memory_map, args=(instance, mapping, tmp_path / "big.png"), rounds=3)
    assert (tmp_path / "big.png").stat().st_size > 1000 and out == str(tmp_path / "big.png")
