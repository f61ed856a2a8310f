"""NumPy-facing entry points of the cost model: `simulate`, `simulate_ops` and, for many programs at once, `simulate_batch`."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import numpy as np

from harness.model.costmodel import (Candidates, Tables, bucket, build_structure, candidates, copy_stalls, fast_bytes,
                                     OpWork, launch_seconds, op_elapsed, op_memory, op_work, total_time, with_profile)
from harness.xla.instance import Instance
from harness.model.mapping import Mapping
from harness.model.profiles import Profile

_total_time = jax.jit(total_time, static_argnums=2)


@jax.jit
def _op_seconds(tables: Tables, fast: jax.Array) -> tuple[jax.Array, jax.Array]:
    """([ops] seconds per execution, [ops] memory seconds per execution) of each op for a fast mask."""
    fb = fast_bytes(tables, fast)
    return op_elapsed(tables, fb), op_memory(tables, fb)


_STRUCTURES: dict[tuple[int, str], tuple[Instance, Candidates, Tables, np.ndarray]] = {}
_PRICED: dict[tuple[int, int], tuple[Tables, Profile, Tables]] = {}  # (structure, profile) -> the priced tables


def cost_tables(instance: Instance, profile: Profile) -> tuple[Candidates, Tables]:
    """The candidates and cost tables of `instance` on `profile`.

    The profile-independent part is cached per instance object and memory model,
    so pricing one instance on many profiles (calibration) rebuilds nothing; the
    priced tables per profile object too (profiles are frozen), so simulating many
    mappings of one instance on one profile prices it once.
    """
    key = (id(instance), profile.memory_model)
    hit = _STRUCTURES.get(key)
    if hit is None or hit[0] is not instance:
        cands = candidates(instance)
        hit = (instance, cands, build_structure(instance, profile.memory_model, cands), op_work(instance))
        _bounded_put(_STRUCTURES, key, hit)
    priced = _PRICED.get((id(hit[2]), id(profile)))
    if priced is None or priced[0] is not hit[2] or priced[1] is not profile:
        priced = (hit[2], profile, with_profile(hit[2], hit[3], profile))
        _bounded_put(_PRICED, (id(hit[2]), id(profile)), priced)
    return hit[1], priced[2]


def _bounded_put(cache: dict, key, value, size: int = 64) -> None:
    if len(cache) >= size:
        cache.pop(next(iter(cache)))
    cache[key] = value


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
    elapsed, memory = _op_seconds(tables, mask)
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


@dataclasses.dataclass(frozen=True)
class Batch:
    """Many (instance, mapping) pairs priced as one: their ops side by side in one table (direct model).

    Under the direct memory model an op's time depends on its own work and bytes
    only, and a run's time is the sum of its ops' (no copies queue across ops), so
    the programs can share one table and one call of the cost model: pricing them
    on many profiles (calibration) costs one call per profile, not one per program.
    """

    instances: tuple[Instance, ...]
    starts: np.ndarray  # [programs + 1] first op of each program in the merged table, then the total
    structure: Tables
    work: OpWork
    mask: np.ndarray
    arguments: np.ndarray  # [programs] parameter and output buffers of each (its launch)


def batch(pairs: Sequence[tuple[Instance, Mapping]]) -> Batch:
    """The batch of `pairs` (see `Batch`)."""
    if not pairs:
        raise ValueError("batch: no (instance, mapping) pairs")
    ops, buffers, starts, fast = [], [], [0], []
    for k, (instance, mapping) in enumerate(pairs):
        op0, b0, g0 = len(ops), len(buffers), len(buffers)
        shift = lambda ids: tuple(b + b0 if b >= 0 else b for b in ids)
        ops += [dataclasses.replace(op, step=op.step + op0, reads=shift(op.reads), writes=shift(op.writes),
                                    branch=op.branch and f"{k}/{op.branch}")  # conditionals of each program apart
                for op in instance.ops]
        buffers += [dataclasses.replace(b, id=b.id + b0, start=b.start + op0, end=b.end + op0,
                                        uses=tuple(u + op0 for u in b.uses), alias_group=b.alias_group + g0,
                                        reuses=b.reuses + b0 if b.reuses >= 0 else -1) for b in instance.buffers]
        fast += [b + b0 for b in mapping.offsets]
        starts.append(len(ops))
    first = pairs[0][0]
    merged = dataclasses.replace(first, name="batch", ops=tuple(ops), buffers=tuple(buffers), left_out=())
    cands = candidates(merged)
    mask = fast_mask(merged, Mapping({b: 0 for b in fast}, len(buffers)), cands)
    return Batch(tuple(i for i, _ in pairs), np.array(starts), build_structure(merged, "direct", cands),
                 op_work(merged), mask, np.array([op_work(i).arguments for i, _ in pairs]))


def simulate_batch(b: Batch, profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """([programs] predicted seconds of one run, [ops of all programs] seconds per run of each op) on a
    direct-model `profile`; equal to `simulate` and `simulate_ops`' `elapsed` program by program."""
    if profile.memory_model != "direct":
        raise ValueError(f"simulate_batch: profile {profile.name} has memory_model {profile.memory_model!r}; "
                         "a batch prices only 'direct' (offload copies queue across ops: use simulate)")
    tables = with_profile(b.structure, b.work, profile)
    elapsed, _ = _op_seconds(tables, b.mask)
    per_run = (np.asarray(elapsed, np.float64) * np.asarray(tables.weight, np.float64))[:b.starts[-1]]
    whole = np.add.reduceat(per_run, b.starts[:-1]) + launch_seconds(profile, b.arguments)
    return whole, per_run
