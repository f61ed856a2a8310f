"""Attention workloads: multi-head self-attention forward and backward.

`MultiHeadAttention` is written out op by op (projections, scores, softmax, context,
output projection) so that each step has its own buffers and `named_scope`; the
transformer workloads use it too.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from workloads.registry import register
from workloads.training import Arrays, mse_loss, supervised_loss

FAMILY = "attention"

# Workload -> size -> dimensions.
DIMS: dict[str, dict[str, dict[str, Any]]] = {
    "mha-fwd-bwd": {
        "ci": {"batch": 4, "seq": 64, "d_model": 64, "num_heads": 4},
        "small": {"batch": 4, "seq": 128, "d_model": 80, "num_heads": 4},
        "medium": {"batch": 8, "seq": 128, "d_model": 128, "num_heads": 4},
        "full": {"batch": 16, "seq": 2048, "d_model": 1024, "num_heads": 16},
    },
}


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention over `x` (batch, seq, d_model); causal if `causal`."""

    num_heads: int
    causal: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        batch, seq, d_model = x.shape
        head_dim = d_model // self.num_heads
        qkv = nn.Dense(3 * d_model, name="qkv")(x)
        with jax.named_scope("split_heads"):
            qkv = qkv.reshape(batch, seq, 3, self.num_heads, head_dim)
            q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        with jax.named_scope("scores"):
            scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) * head_dim**-0.5
            if self.causal:
                mask = jnp.tril(jnp.ones((seq, seq), dtype=bool))
                scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
        with jax.named_scope("softmax"):
            weights = jax.nn.softmax(scores, axis=-1)
        with jax.named_scope("context"):
            context = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
        with jax.named_scope("merge_heads"):
            context = context.reshape(batch, seq, d_model)
        return nn.Dense(d_model, name="out")(context)


@register("mha-fwd-bwd", FAMILY, "multi-head self-attention: loss and its gradients w.r.t. params and inputs")
def build_mha_fwd_bwd(size: str, abstract: bool = False) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """`(mha_fwd_bwd, (params, x, target))` at `size` (shapes only if `abstract`)."""
    d = DIMS["mha-fwd-bwd"][size]
    arrays = Arrays(abstract)
    model = MultiHeadAttention(num_heads=d["num_heads"])
    x = arrays.normal((d["batch"], d["seq"], d["d_model"]))
    target = arrays.normal(x.shape)
    params = arrays.params(model.init, x)["params"]

    loss_fn = supervised_loss(model, mse_loss, scope="attention")

    def mha_fwd_bwd(params: Any, x: jax.Array, target: jax.Array) -> tuple[jax.Array, Any, jax.Array]:
        """The loss and its gradients w.r.t. `params` and `x`."""
        loss, (d_params, d_x) = jax.value_and_grad(loss_fn, argnums=(0, 1))(params, x, target)
        return loss, d_params, d_x

    return mha_fwd_bwd, (params, x, target)
