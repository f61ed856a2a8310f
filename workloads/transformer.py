"""Transformer workloads: a GPT-style decoder block training step, a ViT-style encoder."""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from workloads.attention import MultiHeadAttention
from workloads.registry import register
from workloads.training import Arrays, mse_loss, supervised_loss, training_workload

FAMILY = "transformer"

# Workload -> size -> dimensions.
DIMS: dict[str, dict[str, dict[str, Any]]] = {
    "gpt-block-train": {
        "ci": {"batch": 4, "seq": 32, "d_model": 64, "num_heads": 4, "mlp_dim": 256},
        "small": {"batch": 4, "seq": 64, "d_model": 96, "num_heads": 4, "mlp_dim": 384},
        "medium": {"batch": 8, "seq": 80, "d_model": 128, "num_heads": 4, "mlp_dim": 512},
        "full": {"batch": 8, "seq": 2048, "d_model": 1024, "num_heads": 16, "mlp_dim": 4096},
    },
    "vit-encoder": {
        "ci": {"batch": 4, "image": 32, "channels": 3, "patch": 8, "d_model": 64, "num_heads": 4,
               "mlp_dim": 128, "depth": 2, "classes": 10},
        "small": {"batch": 6, "image": 48, "channels": 3, "patch": 8, "d_model": 64, "num_heads": 4,
                  "mlp_dim": 128, "depth": 2, "classes": 10},
        "medium": {"batch": 8, "image": 64, "channels": 3, "patch": 8, "d_model": 96, "num_heads": 4,
                   "mlp_dim": 192, "depth": 2, "classes": 10},
        "full": {"batch": 64, "image": 224, "channels": 3, "patch": 16, "d_model": 768, "num_heads": 12,
                 "mlp_dim": 3072, "depth": 2, "classes": 1000},
    },
}


class Mlp(nn.Module):
    """Dense, GELU, Dense back to the input width."""

    hidden: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.gelu(nn.Dense(self.hidden, name="fc1")(x))
        return nn.Dense(x.shape[-1], name="fc2")(h)


class Block(nn.Module):
    """Pre-LayerNorm transformer block: self-attention and MLP, each with a residual."""

    num_heads: int
    mlp_dim: int
    causal: bool

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        with jax.named_scope("attention"):
            x = x + MultiHeadAttention(self.num_heads, self.causal, name="attn")(nn.LayerNorm(name="ln1")(x))
        with jax.named_scope("mlp"):
            x = x + Mlp(self.mlp_dim, name="ffn")(nn.LayerNorm(name="ln2")(x))
        return x


class GPTBlock(nn.Module):
    """One GPT-2-style decoder block (causal) followed by the final LayerNorm."""

    num_heads: int
    mlp_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = Block(self.num_heads, self.mlp_dim, causal=True, name="block")(x)
        with jax.named_scope("final_norm"):
            return nn.LayerNorm(name="ln_f")(x)


class ViT(nn.Module):
    """ViT-style classifier: patch embedding, class token, encoder blocks, class head."""

    patch: int
    d_model: int
    num_heads: int
    mlp_dim: int
    depth: int
    classes: int

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        with jax.named_scope("patch_embed"):
            p = self.patch
            x = nn.Conv(self.d_model, (p, p), strides=(p, p), padding="VALID", name="conv")(images)
            b, h, w, c = x.shape
            x = x.reshape(b, h * w, c)
            cls = self.param("cls", nn.initializers.zeros, (1, 1, c), jnp.float32)
            x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, c)), x], axis=1)
            pos = self.param("pos_embedding", nn.initializers.normal(0.02), (1, h * w + 1, c), jnp.float32)
            x = x + pos
        for i in range(self.depth):
            x = Block(self.num_heads, self.mlp_dim, causal=False, name=f"encoder_block_{i}")(x)
        with jax.named_scope("head"):
            x = nn.LayerNorm(name="ln_f")(x[:, 0])
            return nn.Dense(self.classes, name="classifier")(x)


@register("gpt-block-train", FAMILY,
          "GPT-style decoder block training step: causal MHA, LayerNorm, GELU MLP, MSE loss, Adam")
def build_gpt_block_train(size: str, abstract: bool = False) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """`(train_step, (params, opt_state, x, target))` at `size` (shapes only if `abstract`)."""
    d = DIMS["gpt-block-train"][size]
    arrays = Arrays(abstract)
    model = GPTBlock(num_heads=d["num_heads"], mlp_dim=d["mlp_dim"])
    x = arrays.normal((d["batch"], d["seq"], d["d_model"]))
    target = arrays.normal(x.shape)
    params = arrays.params(model.init, x)["params"]

    return training_workload(supervised_loss(model, mse_loss), params, (x, target), arrays,
                             name="gpt_block_train_step")


@register("vit-encoder", FAMILY, "ViT-style encoder inference: patch embedding, 2 encoder blocks, class head")
def build_vit_encoder(size: str, abstract: bool = False) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """`(vit_encoder, (params, images))` at `size` (shapes only if `abstract`)."""
    d = DIMS["vit-encoder"][size]
    model = ViT(patch=d["patch"], d_model=d["d_model"], num_heads=d["num_heads"], mlp_dim=d["mlp_dim"],
                depth=d["depth"], classes=d["classes"])
    arrays = Arrays(abstract)
    images = arrays.normal((d["batch"], d["image"], d["image"], d["channels"]))
    params = arrays.params(model.init, images)["params"]

    def vit_encoder(params: Any, images: jax.Array) -> jax.Array:
        """Class logits of `images`."""
        return model.apply({"params": params}, images)

    return vit_encoder, (params, images)
