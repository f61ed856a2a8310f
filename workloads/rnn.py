"""RNN workloads: a training step of a stacked LSTM run with `jax.lax.scan`.

The LSTM cell is written out: the input projection of all time steps is one matmul
before the scan, the recurrent matmul and the gates run inside it.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from workloads.registry import register
from workloads.training import Arrays, mse_loss, training_workload

FAMILY = "rnn"

# Workload -> size -> dimensions. Sequences are time-major: (seq, batch, features).
DIMS: dict[str, dict[str, dict[str, Any]]] = {
    "lstm-scan": {
        "ci": {"batch": 8, "seq": 32, "in_features": 32, "hidden": 64, "layers": 2, "out_features": 16},
        "small": {"batch": 8, "seq": 64, "in_features": 32, "hidden": 80, "layers": 2, "out_features": 16},
        "medium": {"batch": 16, "seq": 96, "in_features": 64, "hidden": 96, "layers": 2, "out_features": 32},
        "full": {"batch": 64, "seq": 512, "in_features": 512, "hidden": 1024, "layers": 2, "out_features": 512},
    },
}


def init_params(arrays: Arrays, in_features: int, hidden: int, layers: int, out_features: int) -> dict[str, Any]:
    """Parameters of `layers` stacked LSTM layers and a dense output head (weights N(0, 1/fan_in))."""
    lstm = []
    for i in range(layers):
        fan_in = in_features if i == 0 else hidden
        lstm.append({"w_in": arrays.normal((fan_in, 4 * hidden), fan_in**-0.5),
                     "w_rec": arrays.normal((hidden, 4 * hidden), hidden**-0.5),
                     "b": arrays.full((4 * hidden,), 0.0)})
    head = {"w": arrays.normal((hidden, out_features), hidden**-0.5), "b": arrays.full((out_features,), 0.0)}
    return {"lstm": lstm, "head": head}


def lstm_layer(p: dict[str, jax.Array], xs: jax.Array) -> jax.Array:
    """Hidden states (seq, batch, hidden) of one LSTM layer over `xs` (seq, batch, features)."""
    hidden = p["w_rec"].shape[0]
    with jax.named_scope("input_projection"):
        x_gates = xs @ p["w_in"] + p["b"]

    def cell(carry: tuple[jax.Array, jax.Array], x_gate: jax.Array) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
        h, c = carry
        with jax.named_scope("cell"):
            i, f, g, o = jnp.split(x_gate + h @ p["w_rec"], 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    zeros = jnp.zeros((xs.shape[1], hidden), xs.dtype)
    _, hs = jax.lax.scan(cell, (zeros, zeros), x_gates)
    return hs


def lstm(params: dict[str, Any], xs: jax.Array) -> jax.Array:
    """Per-step outputs (seq, batch, out_features) of the stacked LSTM and its head."""
    for i, layer in enumerate(params["lstm"]):
        with jax.named_scope(f"lstm_{i}"):
            xs = lstm_layer(layer, xs)
    with jax.named_scope("head"):
        return xs @ params["head"]["w"] + params["head"]["b"]


@register("lstm-scan", FAMILY, "stacked LSTM training step: lax.scan over time, per-step MSE loss, Adam")
def build_lstm_scan(size: str, abstract: bool = False) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """`(train_step, (params, opt_state, xs, targets))` at `size` (shapes only if `abstract`)."""
    d = DIMS["lstm-scan"][size]
    arrays = Arrays(abstract)
    xs = arrays.normal((d["seq"], d["batch"], d["in_features"]))
    targets = arrays.normal((d["seq"], d["batch"], d["out_features"]))
    params = init_params(arrays, d["in_features"], d["hidden"], d["layers"], d["out_features"])

    def loss_fn(params: Any, xs: jax.Array, targets: jax.Array) -> jax.Array:
        with jax.named_scope("forward"):
            ys = lstm(params, xs)
        return mse_loss(ys, targets)

    return training_workload(loss_fn, params, (xs, targets), arrays, name="lstm_train_step")
