"""Linked share of buffer bytes per workload and size and per program outside the suite, by route: linked to a
value of the JAX program (`harness.xla.linking`), placed by an annotation of the compiled HLO module
(`harness.device.hlo_route`: confirmed by XLA's parser reading it back, and by the annotated module computing
the program's outputs when run here), and the bytes no route reaches by reason
(`harness.device.hlo_route.HLO_UNLINKED_KINDS`): how much of each instance a realized mapping reaches.

    python scripts/linked_share.py [SIZES (default ci)] [OUT.json]
"""

import json
import sys

import jax

import workloads
from harness.device.hlo_route import hlo_route
from harness.device.realization import extract_linked
from harness.xla.linking import link

from outside_programs import programs


def row(name: str, fn, args) -> dict:
    """The shares by route and the unlinked bytes by reason of `fn(*args)`'s instance."""
    instance, program, compiled = extract_linked(fn, args, name)
    linked = link(program, instance)
    route = hlo_route(instance, linked, compiled.as_text(), jax.tree_util.tree_leaves(args),
                      jax.tree_util.tree_leaves(compiled(*args)))
    return {"program": name, "buffers": len(instance.buffers), "total_bytes": linked.total_bytes,
            "program_value_share": route.program_share, "hlo_annotation_share": route.hlo_share,
            "linked_share": route.linked_share, "hlo_placed": len(route.placed),
            "annotated_outputs_match": route.outputs_match, "unlinked": len(route.reasons),
            "unlinked_bytes": dict(sorted(route.unlinked_bytes.items(), key=lambda kv: -kv[1])),
            "program_unlinked_bytes": dict(sorted(linked.unlinked_bytes.items(), key=lambda kv: -kv[1]))}


def main(sizes: str = "ci", out: str = "") -> list[dict]:
    rows = []
    cases = [(f"{n}/{size}", *workloads.get(n).build(size)) for size in sizes.split(",") for n in workloads.names("ci")]
    print(f"{'program':34s} {'value':>7s} {'HLO':>7s} {'linked':>7s}  unlinked (no route) by reason")
    for name, fn, args in cases + [(f"outside/{n}", fn, args) for n, fn, args in programs()]:
        r = row(name, fn, args)
        rows.append(r)
        reasons = ", ".join(f"{kind} {b / 1024:.0f} KiB" for kind, b in r["unlinked_bytes"].items())
        print(f"{name:34s} {r['program_value_share']:7.1%} {r['hlo_annotation_share']:7.1%} {r['linked_share']:7.1%}"
              f"  {r['unlinked']:4d}/{r['buffers']:4d} {reasons}", flush=True)
    if out:
        with open(out, "w") as fh:
            json.dump(rows, fh, indent=1)
    return rows


if __name__ == "__main__":
    main(*sys.argv[1:])
