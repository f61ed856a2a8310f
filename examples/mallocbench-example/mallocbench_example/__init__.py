"""An example mallocbench plugin: the workload `gated-mlp` and the policy `densest-first`."""

import jax
import jax.numpy as jnp

from harness import Mapping, capacity


def gated_mlp(size="ci"):
    """A gated MLP block, x -> (silu(x W) * (x V)) U."""
    n = {"ci": 256, "small": 512, "medium": 1024, "full": 4096}[size]
    k = jax.random.split(jax.random.key(0), 4)
    x, w, v, u = (jax.random.normal(key, shape) for key, shape in
                  zip(k, [(n, n), (n, 4 * n), (n, 4 * n), (4 * n, n)]))

    def block(x, w, v, u):
        return (jax.nn.silu(x @ w) * (x @ v)) @ u

    return block, (x, w, v, u)


def densest_first(instance, profile, budget, seed, time_limit):
    """Alias groups with the most uses per byte first, each at the lowest offset free over its live range."""
    cap, granule = capacity(instance, profile, budget), profile.granule_bytes
    groups = {}
    for b in instance.buffers:
        groups.setdefault(b.alias_group, []).append(b)

    def density(members):
        return sum(len(b.uses) for b in members) / max(sum(b.bytes for b in members), 1)

    placed, offsets = [], {}  # placed: (start, end, low, high) of each fast group
    for members in sorted(groups.values(), key=density, reverse=True):
        start, end = min(b.start for b in members), max(b.end for b in members)
        size = -(-max(b.bytes for b in members) // granule) * granule
        low = 0
        for lo, hi in sorted((lo, hi) for s, e, lo, hi in placed if s <= end and start <= e):
            if lo >= low + size:
                break
            low = max(low, hi)
        if cap is not None and low + size > cap:
            continue
        placed.append((start, end, low, low + size))
        offsets.update({b.id: low for b in members})
    return Mapping(offsets, len(instance.buffers), instance.name, "densest-first", budget)

