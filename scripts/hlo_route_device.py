"""The HLO route on this machine's backend, per ci workload: the compiler's own values annotated in the
compiled module (`harness.device.hlo_route`), the annotated module compiled and run here, and the number of
instructions the compiled module puts in host memory (S(5)): on cuda/tpu at least one per placed buffer
where XLA's host offloader honours the annotations; 0 on the CPU (one memory tier).

    python scripts/hlo_route_device.py [SIZE (default ci)] [OUT.json]
"""

import json
import sys

import jax

import workloads
from harness.device.hlo_route import hlo_route
from harness.device.realization import extract_linked
from harness.xla import hlo_module
from harness.xla.linking import link


def row(name: str, fn, args) -> dict:
    """The HLO route of `fn(*args)` on the local backend."""
    instance, program, compiled = extract_linked(fn, args, name)
    route = hlo_route(instance, link(program, instance), compiled.as_text(), jax.tree_util.tree_leaves(args),
                      jax.tree_util.tree_leaves(compiled(*args)))
    executable = hlo_module.compile_text(route.annotated_text)
    return {"program": name, "backend": jax.default_backend(), "placed": len(route.placed),
            "hlo_share": route.hlo_share, "outputs_match": route.outputs_match,
            "compiled_host_instructions": hlo_module.compiled_host_instructions(executable)}


def main(size: str = "ci", out: str = "") -> list[dict]:
    rows = []
    for name in workloads.names("ci"):
        r = row(f"{name}/{size}", *workloads.get(name).build(size))
        rows.append(r)
        print(f"{r['program']:34s} {r['backend']:5s} placed {r['placed']:3d} ({r['hlo_share']:6.1%})  outputs match "
              f"{r['outputs_match']}  host instructions compiled {r['compiled_host_instructions']}", flush=True)
    if out:
        with open(out, "w") as fh:
            json.dump(rows, fh, indent=1)
    return rows


if __name__ == "__main__":
    main(*sys.argv[1:])
