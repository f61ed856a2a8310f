"""Broken mallocbench plugins, for the tests: mallocbench must name each and go on without it."""

from harness import Mapping


def wrong_signature(instance, profile):
    """A policy with too few parameters."""
    return Mapping({}, len(instance.buffers))


def overlapping(instance, profile, budget, seed, time_limit):
    """A policy whose mapping puts every buffer at offset 0: buffers live at once overlap."""
    return Mapping({b.id: 0 for b in instance.buffers}, len(instance.buffers), instance.name, "overlapping", budget)


def not_a_mapping(instance, profile, budget, seed, time_limit):
    """A policy that returns a dict instead of a Mapping."""
    return {}


def no_arguments():
    """A workload that returns something other than (fn, args)."""
    return 42
