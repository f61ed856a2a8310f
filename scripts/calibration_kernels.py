"""Calibration kernels: small programs of one op kind the suite lacks, so that calibration can identify that
kind's figure. Each is a `module:function` workload (`make(size) -> (fn, args)`), timed like the suite:

    PYTHONPATH=scripts mallocbench optimes --workloads calibration_kernels:sort_rows --sizes ci,small,medium ...

- `sort_rows`: sorts rows of random floats (the suite has no sort): `sort_compare_seconds`.
- `loop_steps`: a scan of many steps of small ops (the suite's one loop is lstm-scan's, so a figure of loop
  bodies is otherwise told by one workload): `loop_op_overhead_seconds`, `loop_iteration_seconds`.
- `grouped_convs`: a depthwise convolution and one of four channels per group (the suite has none):
  `conv_half_channels`.
"""

import jax
import jax.numpy as jnp
import numpy as np

def _sized(table: dict, size: str):
    """The entry of `table` for `size`; a ValueError naming the valid sizes for any other."""
    if size not in table:
        raise ValueError(f"unknown size {size!r}; valid sizes: {', '.join(table)}")
    return table[size]


_ROWS = {"ci": (32, 256), "small": (64, 512), "medium": (128, 512), "full": (512, 1024)}  # size -> (rows, row length)


def sort_rows(size: str = "ci"):
    """Sort each row of a float32 matrix (a comparison sort of n log2 n compares per row)."""
    x = jnp.asarray(np.random.default_rng(0).standard_normal(_sized(_ROWS, size)), jnp.float32)
    return (lambda x: jnp.sort(x, axis=-1)), (x,)


_STEPS = {"ci": (8, 64, 32), "small": (16, 128, 64), "medium": (32, 256, 64), "full": (64, 512, 128)}  # (batch, width, steps)


def loop_steps(size: str = "ci"):
    """A scan whose body is a small dot and a few elementwise ops: h <- tanh(h @ w + x_t) * 0.5 + h * 0.5."""
    batch, width, steps = _sized(_STEPS, size)
    r = np.random.default_rng(0)
    h, w = (jnp.asarray(r.standard_normal(s), jnp.float32) for s in ((batch, width), (width, width)))
    xs = jnp.asarray(r.standard_normal((steps, batch, width)), jnp.float32)

    def run(h, w, xs):
        def step(h, x):
            h = jnp.tanh(h @ w + x) * 0.5 + h * 0.5
            return h, h.sum()
        return jax.lax.scan(step, h, xs)

    return run, (h, w * 0.05, xs)


_IMAGES = {"ci": (4, 32, 16), "small": (8, 32, 32), "medium": (8, 48, 64), "full": (16, 64, 64)}  # (batch, side, channels)


def grouped_convs(size: str = "ci"):
    """A depthwise 3x3 convolution (one channel per group), then a 3x3 one of four channels per group (NHWC)."""
    batch, side, channels = _sized(_IMAGES, size)
    r = np.random.default_rng(0)
    x = jnp.asarray(r.standard_normal((batch, side, side, channels)), jnp.float32)
    w1 = jnp.asarray(r.standard_normal((3, 3, 1, channels)), jnp.float32)
    w2 = jnp.asarray(r.standard_normal((3, 3, 4, channels)), jnp.float32)
    dn = ("NHWC", "HWIO", "NHWC")

    def run(x, w1, w2):
        y = jax.lax.conv_general_dilated(x, w1, (1, 1), "SAME", dimension_numbers=dn, feature_group_count=channels)
        return jax.lax.conv_general_dilated(jnp.tanh(y), w2, (1, 1), "SAME", dimension_numbers=dn,
                                            feature_group_count=channels // 4)

    return run, (x, w1, w2)
