"""The suite of JAX workloads: `names(suite)` and `get(name)`, with the plugins' ones."""

from workloads import alphatensor, attention, cnn, matmul, mlp, rnn, transformer  # noqa: F401  (registers)
from workloads.registry import (SIZES, SUITES, UnknownWorkloadError, Workload, get, names, plugin_workload, problems,
                                register, resolve)

__all__ = ["SIZES", "SUITES", "UnknownWorkloadError", "Workload", "get", "names", "plugin_workload", "problems",
           "register", "resolve"]
