"""Mappings (buffer -> fast memory at a byte offset, or slow) and their feasibility check."""

from __future__ import annotations

import dataclasses
import json
from typing import Optional

from harness.xla.instance import Instance
from harness.xla.jsonfile import load_versioned
from harness.model.profiles import Profile

MAPPING_SCHEMA_VERSION = 1


class MappingError(ValueError):
    """An infeasible or malformed mapping; the message names the buffers or field at fault."""


@dataclasses.dataclass(frozen=True)
class Mapping:
    """Fast buffers with their byte offsets; every other buffer is slow."""

    offsets: dict[int, int]  # buffer id -> byte offset in fast memory
    n_buffers: int
    instance: str = ""
    policy: str = ""
    budget: Optional[float] = None

    def is_fast(self, buffer_id: int) -> bool:
        """Whether the buffer is in fast memory."""
        return buffer_id in self.offsets

    def to_json(self) -> str:
        """The mapping as JSON text."""
        return json.dumps({
            "schema_version": MAPPING_SCHEMA_VERSION, "instance": self.instance, "policy": self.policy,
            "budget": self.budget, "n_buffers": self.n_buffers,
            "fast": {str(b): o for b, o in sorted(self.offsets.items())},
        }, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "Mapping":
        """Read a mapping from JSON text; errors name the field."""
        data = load_versioned(text, "mapping", MAPPING_SCHEMA_VERSION, MappingError)
        for field, kinds in (("n_buffers", int), ("fast", dict), ("instance", str), ("policy", str)):
            if not isinstance(data.get(field), kinds) or isinstance(data.get(field), bool):
                raise MappingError(f"{field}: missing or not a {kinds.__name__}")
        offsets = {}
        for key, offset in data["fast"].items():
            if not key.lstrip("-").isdigit() or not isinstance(offset, int) or isinstance(offset, bool):
                raise MappingError(f"fast[{key!r}]: expected a buffer id mapped to an integer byte offset")
            offsets[int(key)] = offset
        budget = data.get("budget")
        if budget is not None and not isinstance(budget, (int, float)):
            raise MappingError(f"budget: expected a number or null, got {budget!r}")
        return cls(offsets, data["n_buffers"], data["instance"], data["policy"], budget)


def check_budget(budget: Optional[float], what: str = "budget") -> Optional[float]:
    """`budget`, checked: a fraction of the instance's peak live bytes in (0, 1], or None for no limit.
    The one budget check of the project; ValueError naming `what` (the field or option) otherwise."""
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget <= 1:  # NaN fails too
        raise ValueError(f"{what} must be a fraction of peak live bytes in (0, 1], got {budget!r}")
    return budget


def capacity(instance: Instance, profile: Profile, budget: Optional[float]) -> Optional[int]:
    """Fast-memory bytes a mapping may use: budget x peak live bytes, within the profile's
    capacity, rounded down to the granule; None without a budget."""
    check_budget(budget)
    if budget is None:
        return None
    limit = min(int(budget * instance.peak_live_bytes), profile.fast_capacity_bytes)
    return limit // profile.granule_bytes * profile.granule_bytes


def padded(nbytes: int, granule: int) -> int:
    """Bytes rounded up to a whole number of granules."""
    return -(-nbytes // granule) * granule


def validate(instance: Instance, mapping: Mapping, profile: Profile, budget: Optional[float]) -> None:
    """Raise MappingError unless `mapping` is feasible for `instance` on `profile` within `budget`.

    Checks: known buffer ids, aligned offsets inside the capacity, alias groups
    kept together, and no two fast buffers overlapping in the time x address plane.
    """
    cap = capacity(instance, profile, budget)
    buffers = instance.buffers
    if mapping.n_buffers != len(buffers):
        raise MappingError(f"n_buffers: the mapping is for {mapping.n_buffers} buffers, the instance has {len(buffers)}")
    granule = profile.granule_bytes
    for b, offset in mapping.offsets.items():
        if not 0 <= b < len(buffers):
            raise MappingError(f"unknown buffer id {b}: the instance has buffers 0 to {len(buffers) - 1}")
        name = f"buffer {b} ({buffers[b].hlo_name})"
        if offset < 0 or offset % granule:
            raise MappingError(f"{name}: offset {offset} is not a non-negative multiple of the granule {granule}")
        if cap is not None and offset + padded(buffers[b].bytes, granule) > cap:
            raise MappingError(f"{name}: offset {offset} + {buffers[b].bytes} bytes is past the capacity {cap}")
    groups: dict[int, set] = {}
    for b in buffers:
        groups.setdefault(b.alias_group, set()).add(mapping.offsets.get(b.id))
    for group, placements in groups.items():
        if len(placements) > 1:
            ids = [b.id for b in buffers if b.alias_group == group]
            raise MappingError(f"buffers {ids} must share memory (alias group {group}) but are mapped apart")
    _check_overlaps(instance, mapping, granule)


def _check_overlaps(instance: Instance, mapping: Mapping, granule: int) -> None:
    """No two fast buffers of different alias groups may overlap in time and address."""
    items = sorted((instance.buffers[b].start, b) for b in mapping.offsets)
    active: list[int] = []
    for start, b in items:
        active = [a for a in active if instance.buffers[a].end >= start]
        lo = mapping.offsets[b]
        hi = lo + padded(instance.buffers[b].bytes, granule)
        for a in active:
            if instance.buffers[a].alias_group == instance.buffers[b].alias_group:
                continue
            a_lo = mapping.offsets[a]
            if a_lo < hi and lo < a_lo + padded(instance.buffers[a].bytes, granule):
                ba, bb = instance.buffers[a], instance.buffers[b]
                raise MappingError(
                    f"buffers {a} ({ba.hlo_name}) and {b} ({bb.hlo_name}) overlap: steps "
                    f"[{ba.start}, {ba.end}] and [{bb.start}, {bb.end}], bytes "
                    f"[{a_lo}, {a_lo + ba.bytes}) and [{lo}, {lo + bb.bytes})")
        active.append(b)


def fast_buffer_bytes(instance: Instance, mapping: Mapping) -> int:
    """Bytes of the fast buffers, counting each alias group (which shares memory) once."""
    groups: dict[int, int] = {}
    for b in mapping.offsets:
        buf = instance.buffers[b]
        groups[buf.alias_group] = max(groups.get(buf.alias_group, 0), buf.bytes)
    return sum(groups.values())


def fast_peak_bytes(instance: Instance, mapping: Mapping) -> int:
    """The most bytes of fast buffers live at one schedule step (an alias group counts once,
    with its largest member, wherever one of its members is live)."""
    return int(instance.live_bytes(mapping.offsets, in_place_reuse=False).max(initial=0))
