"""The suite of JAX workloads: `names(suite)` and `get(name)`."""

from workloads import alphatensor, attention, cnn, matmul, mlp, rnn, transformer  # noqa: F401  (registers)
from workloads.registry import SIZES, SUITES, UnknownWorkloadError, Workload, get, names, register

__all__ = ["SIZES", "SUITES", "UnknownWorkloadError", "Workload", "get", "names", "register"]
