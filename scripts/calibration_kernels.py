"""Calibration kernels: small programs of one op kind the suite lacks, so that calibration can identify that
kind's figure. Each is a `module:function` workload (`make(size) -> (fn, args)`), timed like the suite:

    PYTHONPATH=scripts mallocbench optimes --workloads calibration_kernels:sort_rows --sizes ci,small,medium ...

- `sort_rows`: sorts rows of random floats (the suite has no sort): `sort_compare_seconds`.
"""

import jax.numpy as jnp
import numpy as np

_ROWS = {"ci": (32, 256), "small": (64, 512), "medium": (128, 512), "full": (512, 1024)}  # size -> (rows, row length)


def sort_rows(size: str = "ci"):
    """Sort each row of a float32 matrix (a comparison sort of n log2 n compares per row)."""
    if size not in _ROWS:
        raise ValueError(f"unknown size {size!r}; valid sizes: {', '.join(_ROWS)}")
    x = jnp.asarray(np.random.default_rng(0).standard_normal(_ROWS[size]), jnp.float32)
    return (lambda x: jnp.sort(x, axis=-1)), (x,)
