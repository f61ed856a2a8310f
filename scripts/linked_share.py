"""Linked share of buffer bytes per workload and size and per program outside the suite, with the unlinked
bytes by reason (`harness.xla.linking.UNLINKED_KINDS`): how much of each instance a realized mapping reaches.

    python scripts/linked_share.py [SIZES (default ci)] [OUT.json]
"""

import json
import sys

import workloads
from harness.device.realization import extract_linked
from harness.xla.linking import link

from outside_programs import programs


def row(name: str, fn, args) -> dict:
    """The linked share and unlinked bytes by reason of `fn(*args)`'s instance."""
    instance, program, _ = extract_linked(fn, args, name)
    linked = link(program, instance)
    return {"program": name, "buffers": len(instance.buffers), "total_bytes": linked.total_bytes,
            "linked_share": linked.linked_share, "unlinked": len(linked.unlinked),
            "unlinked_bytes": dict(sorted(linked.unlinked_bytes.items(), key=lambda kv: -kv[1]))}


def main(sizes: str = "ci", out: str = "") -> list[dict]:
    rows = []
    cases = [(f"{n}/{size}", *workloads.get(n).build(size)) for size in sizes.split(",") for n in workloads.names("ci")]
    for name, fn, args in cases + [(f"outside/{n}", fn, args) for n, fn, args in programs()]:
        r = row(name, fn, args)
        rows.append(r)
        reasons = ", ".join(f"{kind} {b / 1024:.0f} KiB" for kind, b in r["unlinked_bytes"].items())
        print(f"{name:34s} {r['linked_share']:7.1%}  {r['unlinked']:4d}/{r['buffers']:4d} unlinked  {reasons}", flush=True)
    if out:
        with open(out, "w") as fh:
            json.dump(rows, fh, indent=1)
    return rows


if __name__ == "__main__":
    main(*sys.argv[1:])
