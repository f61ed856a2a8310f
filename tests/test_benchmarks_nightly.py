"""Benchmark of the main job: the README's `mallocbench nightly --suite ci`, cold and with the extraction cache warm.

Each round runs the command as a user does (a fresh process, the report written) into
one results store: the first with an empty extraction cache, the second finding every
program's instance in it. Goal: <= 15 minutes on the 2-core CPU machine (not asserted:
it depends on the machine). Slow (two whole nightly runs): `make bench` runs it.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from harness.results import store


@pytest.mark.slow
def test_bench_nightly_ci_cold_then_warm(benchmark, tmp_path):
    root = str(tmp_path / "results")
    command = [sys.executable, "-c", "import sys; from harness.cli.main import main; sys.exit(main(sys.argv[1:]))",
               "nightly", "--suite", "ci", "--results", root]
    walls = []

    def one_night():
        t0 = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        walls.append(time.perf_counter() - t0)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    benchmark.pedantic(one_night, rounds=2, iterations=1)
    cells = store.read("cells", root)
    cold, warm = sorted(cells.run_id.unique())
    assert not cells[cells.run_id == cold].extraction_cached.any()
    assert cells[cells.run_id == warm].extraction_cached.all()
    benchmark.group = "nightly"
    benchmark.extra_info.update(cold_wall_s=walls[0], warm_wall_s=walls[1], cells=int((cells.run_id == cold).sum()),
                                goal_s=15 * 60)
