"""MLP workloads: a training step of a multi-layer perceptron classifier."""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax

from workloads.registry import register
from workloads.training import Arrays, cross_entropy_loss, supervised_loss, training_workload

FAMILY = "mlp"

# Workload -> size -> dimensions.
DIMS: dict[str, dict[str, dict[str, Any]]] = {
    "mlp-train": {
        "ci": {"batch": 32, "in_features": 64, "hidden": (128, 128, 128), "classes": 10},
        "small": {"batch": 64, "in_features": 128, "hidden": (224, 224, 224), "classes": 10},
        "medium": {"batch": 128, "in_features": 192, "hidden": (384, 384, 384), "classes": 10},
        "full": {"batch": 4096, "in_features": 1024, "hidden": (4096, 4096, 4096), "classes": 1000},
    },
}


class MLP(nn.Module):
    """Dense + ReLU layers of widths `hidden`, then a dense classifier head."""

    hidden: tuple[int, ...]
    classes: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return dense_classifier(x, self.hidden, self.classes)


def dense_classifier(x: jax.Array, widths: tuple[int, ...], classes: int, first_layer: int = 0) -> jax.Array:
    """Dense + ReLU layers of `widths` (modules dense_<i>, named scopes layer_<first_layer + i>), then a dense
    head of `classes` logits; to be called inside a module's compact method, which owns the layers."""
    for i, width in enumerate(widths):
        with jax.named_scope(f"layer_{first_layer + i}"):
            x = nn.relu(nn.Dense(width, name=f"dense_{i}")(x))
    return nn.Dense(classes, name="head")(x)


@register("mlp-train", FAMILY, "MLP classifier training step: 3 hidden Dense+ReLU layers, cross entropy, Adam")
def build_mlp_train(size: str, abstract: bool = False) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """`(train_step, (params, opt_state, x, labels))` at `size` (shapes only if `abstract`)."""
    d = DIMS["mlp-train"][size]
    arrays = Arrays(abstract)
    model = MLP(hidden=d["hidden"], classes=d["classes"])
    x = arrays.normal((d["batch"], d["in_features"]))
    labels = arrays.labels((d["batch"],), d["classes"])
    params = arrays.params(model.init, x)["params"]

    return training_workload(supervised_loss(model, cross_entropy_loss), params, (x, labels), arrays,
                             name="mlp_train_step")
