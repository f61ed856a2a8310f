"""NumPy-facing entry points of the cost model: `simulate` and `simulate_ops`."""

from __future__ import annotations

import jax
import numpy as np

from harness.model.costmodel import (Candidates, Tables, bucket, build_structure, candidates, copy_stalls, fast_bytes,
                                     op_elapsed, op_work, total_time, with_profile)
from harness.xla.instance import Instance
from harness.model.mapping import Mapping
from harness.model.profiles import Profile

_total_time = jax.jit(total_time, static_argnums=2)


@jax.jit
def _op_seconds(tables: Tables, fast: jax.Array) -> tuple[jax.Array, jax.Array]:
    """([ops] fast bytes, [ops] seconds per execution) of each op for a fast mask."""
    fb = fast_bytes(tables, fast)
    return fb, op_elapsed(tables, fb)


_STRUCTURES: dict[tuple[int, str], tuple[Instance, Candidates, Tables, np.ndarray]] = {}


def cost_tables(instance: Instance, profile: Profile) -> tuple[Candidates, Tables]:
    """The candidates and cost tables of `instance` on `profile`.

    The profile-independent part is cached per instance object and memory model,
    so pricing one instance on many profiles (calibration) rebuilds nothing.
    """
    key = (id(instance), profile.memory_model)
    hit = _STRUCTURES.get(key)
    if hit is None or hit[0] is not instance:
        cands = candidates(instance)
        hit = (instance, cands, build_structure(instance, profile.memory_model, cands), op_work(instance))
        if len(_STRUCTURES) >= 64:
            _STRUCTURES.pop(next(iter(_STRUCTURES)))
        _STRUCTURES[key] = hit
    return hit[1], with_profile(hit[2], hit[3], profile)


def fast_mask(instance: Instance, mapping: Mapping, cands: Candidates) -> np.ndarray:
    """[candidates] 1.0 where the candidate's buffers are fast."""
    mask = np.zeros(bucket(cands.n), dtype=np.float32)  # padded, like the tables
    for b in mapping.offsets:
        mask[cands.of_buffer[b]] = 1.0
    return mask


def simulate(instance: Instance, mapping: Mapping, profile: Profile) -> float:
    """Predicted seconds of one run of `instance` under `mapping` on `profile`."""
    cands, tables = cost_tables(instance, profile)
    return float(_total_time(tables, fast_mask(instance, mapping, cands), profile.memory_model == "offload"))


def simulate_ops(instance: Instance, mapping: Mapping, profile: Profile) -> dict[str, np.ndarray]:
    """Per-op breakdown: seconds per run of each op (`elapsed`, weighted by executions),
    its `compute` and `memory` parts, and the `stall` waiting for copies before it;
    `launch`, the run's own seconds once.

    `elapsed.sum() + stall.sum() + final_stall + launch` equals `simulate(...)`.
    """
    cands, tables = cost_tables(instance, profile)
    mask = fast_mask(instance, mapping, cands)
    fb, elapsed = _op_seconds(tables, mask)
    memory = fb / tables.fast_bw + (tables.op_bytes - fb) / tables.op_slow_bw
    if profile.memory_model == "offload":
        stalls = np.asarray(copy_stalls(tables, mask, elapsed))
    else:
        stalls = np.zeros(len(instance.ops) + 1, dtype=np.float32)
    n = len(instance.ops)
    w = np.asarray(tables.weight)[:n]
    return {
        "name": np.array([op.name for op in instance.ops]),
        "opcode": np.array([op.opcode for op in instance.ops]),
        "elapsed": np.asarray(elapsed)[:n] * w,
        "compute": np.asarray(tables.compute)[:n] * w,
        "memory": np.asarray(memory)[:n] * w,
        "stall": stalls[:n],
        "final_stall": stalls[-1:],
        "launch": np.float32(tables.launch),
    }
