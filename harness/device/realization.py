"""Realize a mapping: the program with its slow values placed in host memory.

The function is traced and evaluated equation by equation (`harness.xla.scoped_program`);
the values that the mapping's slow buffers hold are put in host memory right
after their definition and brought back to device memory before each use, with
`jax.device_put` to the memory spaces inside the jitted program. XLA's
host-offload passes turn these into asynchronous copies on GPU and TPU. The
CPU has one memory tier: there the report says so and the untouched program
runs.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import jax

from harness.xla import linking, scoped_program
from harness.xla.extraction import from_compiled
from harness.xla.instance import Instance
from harness.model.mapping import Mapping
from harness.model.profiles import device_kind

NATIVE = "xla-native"  # the policy that leaves placement to the compiler


@dataclasses.dataclass(frozen=True)
class RealizeReport:
    """What was realized of a mapping."""

    policy: str
    backend: str
    realizable: bool  # whether this backend places values in host memory
    reason: str  # why the program runs untouched, when it does
    slow_buffers: tuple[int, ...]  # the mapping's slow set
    offloaded_values: tuple[int, ...]  # program values placed in host memory
    unlinked: tuple[int, ...]  # slow buffers with no program value (left in device memory)
    unlinked_bytes: int
    linked_share: float  # linked bytes over all buffer bytes of the instance


@dataclasses.dataclass(frozen=True)
class Realized:
    """The jitted program of a mapping (`fn(*args)`), and what was realized."""

    fn: Callable[..., Any]
    report: RealizeReport
    program: scoped_program.Program


def slow_buffers(instance: Instance, mapping: Mapping) -> tuple[int, ...]:
    """Buffer ids that `mapping` leaves in slow memory."""
    if mapping.n_buffers != len(instance.buffers):
        raise ValueError(f"mapping has {mapping.n_buffers} buffers, instance {instance.name!r} has "
                         f"{len(instance.buffers)}: it was made for another program")
    return tuple(b.id for b in instance.buffers if not mapping.is_fast(b.id))


def realize(fn: Callable[..., Any], args: tuple[Any, ...], instance: Instance, mapping: Optional[Mapping],
            backend: Optional[str] = None, program: Optional[scoped_program.Program] = None) -> Realized:
    """The program of `fn(*args)` with `mapping`'s slow values in host memory.

    `instance` must be extracted from `harness.xla.scoped_program.jit(program)` of the same
    function and argument shapes (`extract_linked`). A mapping of policy
    `xla-native`, or None, gives the untouched program. `backend` defaults to
    the local one; naming "cuda" or "tpu" annotates the program for that
    platform (to export it) whatever runs here.
    """
    backend = backend or jax.default_backend()
    program = program or scoped_program.trace(fn, args)
    link = linking.link(program, instance)
    policy = mapping.policy if mapping is not None else NATIVE
    slow = slow_buffers(instance, mapping) if mapping is not None and policy != NATIVE else ()
    unlinked = tuple(b for b in slow if b not in link.value_of)
    offload = frozenset(link.value_of[b] for b in slow if b in link.value_of)
    realizable = device_kind(backend) in ("gpu", "tpu")  # two memory tiers: device and host
    reason = ""
    if policy == NATIVE:
        reason, offload = "xla-native: placement left to the compiler", frozenset()
    elif not realizable:
        reason, offload = f"{backend} has one memory tier: the mapping is not realizable there", frozenset()
    report = RealizeReport(
        policy=policy, backend=backend, realizable=realizable, reason=reason, slow_buffers=slow,
        offloaded_values=tuple(sorted(offload)), unlinked=unlinked,
        unlinked_bytes=sum(instance.buffers[b].bytes for b in unlinked), linked_share=link.linked_share)
    return Realized(scoped_program.jit(program, offload), report, program)


def extract_linked(fn: Callable[..., Any], args: tuple[Any, ...], name: str) -> tuple[Instance, scoped_program.Program, Any]:
    """(instance, program, compiled) of the scoped program of `fn(*args)`: the program `realize` runs."""
    program, compiled = scoped_program.compile_scoped(fn, args)
    return from_compiled(compiled, name), program, compiled
