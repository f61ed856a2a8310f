"""Shared pieces of the workloads: the training step, the losses, and `Arrays`, which makes
a workload's parameters and inputs.

A training step is `value_and_grad` of a loss followed by an Optax update; every
training workload of the suite builds its `(fn, args)` with `training_workload`.

Parameters and inputs are drawn with NumPy from a fixed seed: a model's parameter
shapes come from `jax.eval_shape` of its Flax `init`, and the values from a rule on
the parameter's name (`Arrays.params`). Running `init` itself would be slower by far
on a CPU: op by op it compiles every op, jitted it compiles a large threefry program
(2 to 8 s for a small CNN). Every builder takes `abstract=True` too, and then returns
`jax.ShapeDtypeStruct`s in place of arrays, so that "full" sizes can be checked with
`jax.eval_shape` without allocating them.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = [
    "LEARNING_RATE", "SEED", "Arrays", "cross_entropy_loss", "make_train_step", "mse_loss", "training_workload",
]

LEARNING_RATE = 1e-3
SEED = 0


class Arrays:
    """Makes a workload's arrays: random values from a fixed seed, or only their shapes.

    With `abstract=True` every method returns `jax.ShapeDtypeStruct`s (nothing is
    allocated); otherwise concrete float32 (or int32) jax arrays, the same on every run.
    """

    def __init__(self, abstract: bool = False, seed: int = SEED):
        self.abstract = abstract
        self._rng = np.random.default_rng(seed)

    def normal(self, shape: tuple[int, ...], scale: float = 1.0) -> Any:
        """float32 samples of N(0, scale^2)."""
        if self.abstract:
            return jax.ShapeDtypeStruct(shape, jnp.float32)
        return jnp.asarray(self._rng.standard_normal(shape, dtype=np.float32) * np.float32(scale))

    def full(self, shape: tuple[int, ...], value: float) -> Any:
        """float32 array of `value`."""
        if self.abstract:
            return jax.ShapeDtypeStruct(shape, jnp.float32)
        return jnp.full(shape, value, jnp.float32)

    def labels(self, shape: tuple[int, ...], classes: int) -> Any:
        """int32 class labels in [0, classes)."""
        if self.abstract:
            return jax.ShapeDtypeStruct(shape, jnp.int32)
        return jnp.asarray(self._rng.integers(0, classes, shape, dtype=np.int32))

    def params(self, init: Callable[..., Any], *example: Any, collections: tuple[str, ...] = ("params",)) -> Any:
        """Variables of the Flax `init(rng, *example)`, only `collections`, valued by `param_value`."""
        shapes = jax.eval_shape(init, jax.random.key(SEED), *example)
        shapes = {c: shapes[c] for c in collections}
        if self.abstract:
            return shapes
        return jax.tree_util.tree_map_with_path(lambda path, leaf: self.param_value(path[-1].key, leaf.shape), shapes)

    def param_value(self, name: str, shape: tuple[int, ...]) -> jax.Array:
        """Value of a parameter called `name` (Flax's names): kernels N(0, 1/fan_in) with
        fan_in all but the last dimension; biases and means 0; scales and variances 1;
        anything else (embeddings, class tokens) N(0, 0.02^2)."""
        if name == "kernel":
            return self.normal(shape, math.prod(shape[:-1]) ** -0.5)
        if name in ("bias", "mean"):
            return self.full(shape, 0.0)
        if name in ("scale", "var"):
            return self.full(shape, 1.0)
        return self.normal(shape, 0.02)

    def apply(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` as one compiled program, or its result shapes if abstract."""
        return jax.eval_shape(fn, *args) if self.abstract else jax.jit(fn)(*args)


def cross_entropy_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross entropy of `logits` (..., classes) against integer `labels` (...)."""
    with jax.named_scope("loss"):
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def mse_loss(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error of `predictions` against `targets`."""
    with jax.named_scope("loss"):
        return jnp.mean(jnp.square(predictions - targets))


def supervised_loss(model: Any, loss: Callable[[jax.Array, jax.Array], jax.Array],
                    scope: str = "forward") -> Callable[..., jax.Array]:
    """`loss_fn(params, inputs, targets)`: `loss` of the flax `model`'s outputs on `inputs` (its forward
    pass under the named scope `scope`) against `targets`."""

    def loss_fn(params: Any, inputs: jax.Array, targets: jax.Array) -> jax.Array:
        with jax.named_scope(scope):
            outputs = model.apply({"params": params}, inputs)
        return loss(outputs, targets)

    return loss_fn


def make_train_step(
    loss_fn: Callable[..., Any], optimizer: optax.GradientTransformation, *, has_aux: bool = False
) -> Callable[..., tuple[Any, ...]]:
    """`step(params, opt_state, *batch)`: one `optimizer` step on `loss_fn(params, *batch)`.

    The step returns `(params, opt_state, loss)`, and `(params, opt_state, loss, aux)`
    when `has_aux` (then `loss_fn` returns `(loss, aux)`, e.g. updated batch statistics).
    """

    def train_step(params: Any, opt_state: Any, *batch: Any) -> tuple[Any, ...]:
        with jax.named_scope("forward_backward"):
            out, grads = jax.value_and_grad(loss_fn, has_aux=has_aux)(params, *batch)
        with jax.named_scope("update"):
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
        if has_aux:
            loss, aux = out
            return params, opt_state, loss, aux
        return params, opt_state, out

    return train_step


def training_workload(
    loss_fn: Callable[..., Any],
    params: Any,
    batch: tuple[Any, ...],
    arrays: Arrays,
    *,
    has_aux: bool = False,
    optimizer: optax.GradientTransformation | None = None,
    name: str = "train_step",
) -> tuple[Callable[..., tuple[Any, ...]], tuple[Any, ...]]:
    """`(fn, args)` of one training step (Adam by default) of `loss_fn(params, *batch)`.

    `fn(params, opt_state, *batch)` is the step of `make_train_step`, called `name`;
    `args` is `(params, opt_state, *batch)` with the optimizer's initial state.
    """
    optimizer = optimizer if optimizer is not None else optax.adam(LEARNING_RATE)
    step = make_train_step(loss_fn, optimizer, has_aux=has_aux)
    step.__name__ = step.__qualname__ = name
    return step, (params, arrays.apply(optimizer.init, params), *batch)
