"""Write the workload instances mallocMuZero trains and is evaluated on (agent/data/instances/).

Each `ci` workload is built at sizes ci, small and medium, compiled, and extracted through
the harness's one extraction path (`harness.runs.programs.load_program`). The instances are
committed, so that training and evaluation see the same programs on every machine and JAX
version; run this script to refresh them after a change to a workload or to extraction.

    python scripts/make_agent_instances.py [--sizes ci,small,medium]
"""

from __future__ import annotations

import argparse
import gzip

import workloads
from agent.data.split import WORKLOAD_DIR
from harness.results import artifacts
from harness.runs.programs import load_program


def main() -> None:
    """Extract every ci workload at each size and write WORKLOAD_DIR/<workload>@<size>.json.gz."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="ci,small,medium", help="comma-separated sizes (default: ci,small,medium)")
    sizes = parser.parse_args().sizes.split(",")
    for name in workloads.names("ci"):
        for size in sizes:
            instance = load_program(name, size).instance
            artifacts.write_bytes(WORKLOAD_DIR / f"{name}@{size}.json.gz",
                                  gzip.compress(instance.to_json().encode(), mtime=0))
            print(f"{name}@{size}: {len(instance.ops)} ops, {len(instance.buffers)} buffers")


if __name__ == "__main__":
    main()
