"""CNN workloads: ResNet and AlexNet training steps, U-Net inference (images are NHWC)."""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from workloads.mlp import dense_classifier
from workloads.registry import register
from workloads.training import Arrays, cross_entropy_loss, supervised_loss, training_workload

FAMILY = "cnn"

# Workload -> size -> dimensions.
DIMS: dict[str, dict[str, dict[str, Any]]] = {
    "resnet-block-train": {
        "ci": {"batch": 8, "image": 32, "channels": 3, "widths": (16, 32), "classes": 10},
        "small": {"batch": 10, "image": 32, "channels": 3, "widths": (24, 48), "classes": 10},
        "medium": {"batch": 16, "image": 56, "channels": 3, "widths": (32, 64), "classes": 10},
        "full": {"batch": 64, "image": 224, "channels": 3, "widths": (64, 128), "classes": 1000},
    },
    "alexnet-train": {
        "ci": {"batch": 8, "image": 64, "channels": 3, "conv": (16, 32, 48, 48, 32), "dense": (128, 128),
               "classes": 10},
        "small": {"batch": 8, "image": 64, "channels": 3, "conv": (24, 48, 72, 72, 48), "dense": (192, 192),
                  "classes": 10},
        "medium": {"batch": 16, "image": 96, "channels": 3, "conv": (32, 64, 96, 96, 64), "dense": (256, 256),
                   "classes": 10},
        "full": {"batch": 128, "image": 224, "channels": 3, "conv": (96, 256, 384, 384, 256),
                 "dense": (4096, 4096), "classes": 1000},
    },
    "unet": {
        "ci": {"batch": 2, "image": 32, "channels": 3, "base": 16, "levels": 3, "classes": 4},
        "small": {"batch": 3, "image": 48, "channels": 3, "base": 16, "levels": 3, "classes": 4},
        "medium": {"batch": 4, "image": 64, "channels": 3, "base": 16, "levels": 4, "classes": 4},
        "full": {"batch": 16, "image": 256, "channels": 3, "base": 64, "levels": 5, "classes": 4},
    },
}


def _model_and_images(name: str, size: str, abstract: bool, model: type[nn.Module],
                      *fields: str) -> tuple[dict[str, Any], nn.Module, Arrays, Any]:
    """The workload's dimensions at `size`, its `model` made of those `fields`, its arrays and random NHWC
    images (shapes only if `abstract`)."""
    d = DIMS[name][size]
    arrays = Arrays(abstract)
    return d, model(**{f: d[f] for f in fields}), arrays, arrays.normal((d["batch"], d["image"], d["image"],
                                                                           d["channels"]))


# --- ResNet ---------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv + batch norm, with a (projected) skip connection."""

    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9)
        residual = x
        y = nn.Conv(self.features, (3, 3), (self.strides, self.strides), use_bias=False, name="conv1")(x)
        y = nn.relu(norm(name="bn1")(y))
        y = nn.Conv(self.features, (3, 3), use_bias=False, name="conv2")(y)
        y = norm(name="bn2")(y)
        if residual.shape != y.shape:
            with jax.named_scope("projection"):
                residual = nn.Conv(self.features, (1, 1), (self.strides, self.strides), use_bias=False,
                                   name="proj_conv")(residual)
                residual = norm(name="proj_bn")(residual)
        with jax.named_scope("skip"):
            return nn.relu(residual + y)


class ResNet(nn.Module):
    """ResNet stem (7x7/2 conv, 3x3/2 max pool), one basic block per width, pooled class head."""

    widths: tuple[int, ...]
    classes: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        with jax.named_scope("stem"):
            x = nn.Conv(self.widths[0], (7, 7), (2, 2), use_bias=False, name="stem_conv")(x)
            x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, name="stem_bn")(x))
            x = nn.max_pool(x, (3, 3), (2, 2), padding="SAME")
        for i, width in enumerate(self.widths):
            x = BasicBlock(width, strides=1 if i == 0 else 2, name=f"block_{i}")(x, train)
        with jax.named_scope("head"):
            return nn.Dense(self.classes, name="classifier")(jnp.mean(x, axis=(1, 2)))


@register("resnet-block-train", FAMILY,
          "ResNet training step: stem, 2 basic blocks (conv, batch norm, skip), cross entropy, Adam")
def build_resnet_block_train(size: str, abstract: bool = False) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """`(train_step, (params, opt_state, batch_stats, images, labels))` at `size` (shapes only if `abstract`).

    The step returns `(params, opt_state, loss, batch_stats)`, the batch statistics updated.
    """
    d, model, arrays, images = _model_and_images("resnet-block-train", size, abstract, ResNet, "widths", "classes")
    labels = arrays.labels((d["batch"],), d["classes"])
    variables = arrays.params(model.init, images, collections=("params", "batch_stats"))

    def loss_fn(params: Any, batch_stats: Any, images: jax.Array, labels: jax.Array) -> tuple[jax.Array, Any]:
        with jax.named_scope("forward"):
            logits, updates = model.apply({"params": params, "batch_stats": batch_stats}, images,
                                          mutable=["batch_stats"])
        return cross_entropy_loss(logits, labels), updates["batch_stats"]

    return training_workload(loss_fn, variables["params"], (variables["batch_stats"], images, labels), arrays,
                             has_aux=True, name="resnet_block_train_step")


# --- AlexNet --------------------------------------------------------------------------------


class AlexNet(nn.Module):
    """AlexNet: 5 conv (11x11/4, 5x5, 3x3 x3), 3 max pools, 3 dense layers."""

    conv: tuple[int, int, int, int, int]
    dense: tuple[int, int]
    classes: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernels = ((11, 4), (5, 1), (3, 1), (3, 1), (3, 1))  # (kernel side, stride)
        for i, (features, (side, stride)) in enumerate(zip(self.conv, kernels)):
            with jax.named_scope(f"layer_{i}"):
                x = nn.relu(nn.Conv(features, (side, side), (stride, stride), name=f"conv_{i}")(x))
                if i in (0, 1, 4):
                    x = nn.max_pool(x, (3, 3), (2, 2))
        return dense_classifier(x.reshape(x.shape[0], -1), self.dense, self.classes, first_layer=len(self.conv))


@register("alexnet-train", FAMILY, "AlexNet training step: 5 conv, 3 max pools, 3 dense, cross entropy, Adam")
def build_alexnet_train(size: str, abstract: bool = False) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """`(train_step, (params, opt_state, images, labels))` at `size` (shapes only if `abstract`)."""
    d, model, arrays, images = _model_and_images("alexnet-train", size, abstract, AlexNet, "conv", "dense",
                                                 "classes")
    labels = arrays.labels((d["batch"],), d["classes"])
    params = arrays.params(model.init, images)["params"]

    return training_workload(supervised_loss(model, cross_entropy_loss), params, (images, labels), arrays,
                             name="alexnet_train_step")


# --- U-Net ----------------------------------------------------------------------------------


class DoubleConv(nn.Module):
    """Two 3x3 conv + ReLU."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(nn.Conv(self.features, (3, 3), name="conv_a")(x))
        return nn.relu(nn.Conv(self.features, (3, 3), name="conv_b")(x))


class UNet(nn.Module):
    """U-Net: `levels - 1` (double conv, 2x2 max pool) down, a bottleneck, transposed-conv
    up with the skip concatenated, then a 1x1 conv to per-pixel class logits."""

    base: int
    levels: int
    classes: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        skips = []
        for i in range(self.levels - 1):
            with jax.named_scope(f"encoder_{i}"):
                x = DoubleConv(self.base * 2**i, name=f"down_conv_{i}")(x)
                skips.append(x)
                x = nn.max_pool(x, (2, 2), (2, 2))
        x = DoubleConv(self.base * 2 ** (self.levels - 1), name="bottleneck")(x)
        for i in reversed(range(self.levels - 1)):
            with jax.named_scope(f"decoder_{i}"):
                x = nn.ConvTranspose(self.base * 2**i, (2, 2), (2, 2), name=f"upsample_{i}")(x)
                x = jnp.concatenate([skips[i], x], axis=-1)
                x = DoubleConv(self.base * 2**i, name=f"up_conv_{i}")(x)
        return nn.Conv(self.classes, (1, 1), name="head")(x)


@register("unet", FAMILY, "U-Net inference: conv encoder/decoder, max-pool down, transposed-conv up, skips")
def build_unet(size: str, abstract: bool = False) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """`(unet, (params, images))` at `size` (shapes only if `abstract`)."""
    d, model, arrays, images = _model_and_images("unet", size, abstract, UNet, "base", "levels", "classes")
    params = arrays.params(model.init, images)["params"]

    def unet(params: Any, images: jax.Array) -> jax.Array:
        """Per-pixel class logits of `images`."""
        return model.apply({"params": params}, images)

    return unet, (params, images)
