"""Everything only a GPU can show, in one command (`scripts/device_check.sh`, `make device-check`).

On one H100 or H200, in order: a nightly of the ci suite at budget 0.5 on the GPU's
offload profile with xla-native (the floor), xla-msa, cpsat and mallocmuzero (each
mapping realized and measured); per-op times of the ci programs (`op_times`);
calibration of the offload profile on both runs; the nightly's report. Results go
under `results/device/<device>/` (the device named by its kind).

A dry run does on any machine what needs no GPU: the plan (profile, folder,
commands), and the export check of every mapping the real run would realize: each
policy's mapping of each ci workload, realized for "cuda", must place exactly its
linked slow values in host memory (`placements.check_export`).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Callable, Sequence

import workloads
from agent.registry import solve
from harness.device.placements import check_export
from harness.device.realization import NATIVE, extract_linked, realize
from harness.model.profiles import load_profile
from harness.xla.linking import link

POLICIES = (NATIVE, "xla-msa", "cpsat", "mallocmuzero")
BUDGET = 0.5
SOLVE_SECONDS = 5.0  # per policy and workload: 14 workloads x 2 searching policies stay under 2.5 minutes
MEASURE_SECONDS = 2.0  # per cell
OP_ROUNDS = 3
_PROFILES = (("H200", "h200-offload"), ("H100", "h100-offload"))
DRY_RUN_DEVICE = "NVIDIA H100 (dry run)"  # the device a dry run plans for


class DeviceCheckError(RuntimeError):
    """A device the check is not made for, or an export that places other values than the mapping's."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a device check runs: the profile, the results folder and the CLI commands in order."""

    device: str
    profile: str
    results: Path
    commands: tuple[tuple[str, ...], ...]


def plan(device_kind: str, root: str = "results") -> Plan:
    """The plan on a device of `device_kind` (e.g. "NVIDIA H100 80GB HBM3"); an H100 or H200 only."""
    for marker, profile in _PROFILES:
        if marker in device_kind.upper():
            break
    else:
        raise DeviceCheckError(f"device {device_kind!r}: the check is made for an H100 or H200 "
                               f"(profiles {', '.join(p for _, p in _PROFILES)})")
    device = re.sub(r"[^A-Za-z0-9._-]+", "-", device_kind).strip("-")
    results = Path(root) / "device" / device
    common = ("--profile", profile, "--results", str(results))
    commands = (
        ("nightly", "--suite", "ci", "--policies", ",".join(POLICIES), "--budgets", str(BUDGET),
         "--solve-time-limit", str(SOLVE_SECONDS), "--time-limit", str(MEASURE_SECONDS), *common),
        ("optimes", "--suite", "ci", "--sizes", "ci", "--rounds", str(OP_ROUNDS), *common),
        ("calibrate", "--runs", "{runs}", "--profiles-dir", str(results / "profiles"), *common),
    )
    return Plan(device, profile, results, commands)


def export_check(profile_name: str, names: Sequence[str] = (), policies: Sequence[str] = POLICIES[1:],
                 on_checked: Callable[[dict], None] = lambda row: None) -> list[dict]:
    """Realize each policy's mapping of each workload for "cuda" and check what the export places in host
    memory: exactly the mapping's linked slow values. Raises DeviceCheckError on the first mismatch;
    returns one row per mapping (workload, policy, slow and offloaded values, linked share)."""
    profile = load_profile(profile_name)
    rows = []
    for name in names or workloads.names("ci"):
        fn, args = workloads.get(name).build("ci")
        instance, program, _ = extract_linked(fn, args, name)
        value_of = link(program, instance).value_of
        for policy in policies:
            mapping = solve(instance, profile, BUDGET, policy, time_limit=SOLVE_SECONDS)
            realized = realize(fn, args, instance, mapping, backend="cuda", program=program)
            report = realized.report
            expected = {value_of[b] for b in set(report.slow_buffers) - set(report.unlinked)}
            placements = check_export(realized, args, "cuda")
            if placements.problems or placements.host_values != expected:
                raise DeviceCheckError(
                    f"{name}/{policy}: the cuda export places values {sorted(placements.host_values)} in host "
                    f"memory, the mapping's linked slow values are {sorted(expected)}; problems: {placements.problems}")
            row = {"workload": name, "policy": policy, "slow_buffers": len(report.slow_buffers),
                   "offloaded_values": len(expected), "linked_share": report.linked_share}
            rows.append(row)
            on_checked(row)
    return rows
