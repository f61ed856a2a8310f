"""Matmul workloads: a chain of matrix multiplications of varying shapes."""

from __future__ import annotations

from typing import Any, Callable

import jax

from workloads.registry import register
from workloads.training import Arrays

FAMILY = "matmul"

# Workload -> size -> dimensions. `widths[i] x widths[i+1]` is the shape of weight i.
DIMS: dict[str, dict[str, dict[str, Any]]] = {
    "matmul-chain": {
        "ci": {"rows": 128, "widths": (128, 256, 64, 512, 128, 256, 64)},
        "small": {"rows": 256, "widths": (192, 384, 96, 768, 192, 384, 96)},
        "medium": {"rows": 512, "widths": (256, 512, 128, 1024, 256, 512, 128)},
        "full": {"rows": 8192, "widths": (4096, 8192, 2048, 16384, 4096, 8192, 1024)},
    },
}


def matmul_chain(x: jax.Array, *weights: jax.Array) -> jax.Array:
    """`x @ w0 @ w1 @ ...`, with a ReLU between products (so XLA keeps the order)."""
    for i, w in enumerate(weights):
        with jax.named_scope(f"matmul_{i}"):
            x = x @ w
            if i < len(weights) - 1:
                x = jax.nn.relu(x)
    return x


@register("matmul-chain", FAMILY, "6 chained matmuls of varying shapes with ReLUs between (128 rows at ci up to 8192 at full)")
def build_matmul_chain(size: str, abstract: bool = False) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """`(matmul_chain, (x, w0, ..., w5))` at `size` (shapes only if `abstract`)."""
    d = DIMS["matmul-chain"][size]
    arrays = Arrays(abstract)
    widths = d["widths"]
    x = arrays.normal((d["rows"], widths[0]))
    weights = tuple(arrays.normal((m, n), (2.0 / m) ** 0.5) for m, n in zip(widths[:-1], widths[1:]))
    return matmul_chain, (x, *weights)
