"""Mappings: JSON form and the feasibility check, with bad inputs named."""

import json

import pytest

from agent import synthetic
from harness import Mapping, MappingError, Profile, capacity, validate


@pytest.fixture(scope="module")
def instance():
    return synthetic(7, 30)


PROFILE = Profile(name="test", description="test", backend="cpu", memory_model="direct",
                  fast_capacity_bytes=1 << 34, granule_bytes=256, fast_bandwidth=1e12, slow_bandwidth=1e11,
                  copy_bandwidth=1e10, flop_rate=1e13, vector_flop_rate=1e13, transcendental_rate=1e12, op_overhead_seconds=1e-7,
                  realizable=False, sources={})


def _overlapping_pair(instance):
    for a in instance.buffers:
        for b in instance.buffers:
            if a.id < b.id and a.start <= b.end and b.start <= a.end:
                return a, b
    raise AssertionError("no overlapping pair")


def test_round_trip():
    m = Mapping({3: 0, 5: 512}, 10, "x", "xla-msa", 0.5)
    assert Mapping.from_json(m.to_json()) == m


def test_overlap_names_both_buffers(instance):
    a, b = _overlapping_pair(instance)
    with pytest.raises(MappingError, match=rf"buffers {a.id} \(.*\) and {b.id} \(.*\) overlap"):
        validate(instance, Mapping({a.id: 0, b.id: 0}, len(instance.buffers)), PROFILE, 1.0)


def test_offset_past_capacity(instance):
    cap = capacity(instance, PROFILE, 0.25)
    b = instance.buffers[0]
    with pytest.raises(MappingError, match=f"buffer 0 .*past the capacity {cap}"):
        validate(instance, Mapping({0: cap}, len(instance.buffers)), PROFILE, 0.25)
    assert b.bytes > 0


def test_misaligned_offset(instance):
    with pytest.raises(MappingError, match="not a non-negative multiple of the granule 256"):
        validate(instance, Mapping({0: 100}, len(instance.buffers)), PROFILE, 1.0)


@pytest.mark.parametrize("bad", [-1, 10_000])
def test_unknown_buffer_id(instance, bad):
    with pytest.raises(MappingError, match=f"unknown buffer id {bad}"):
        validate(instance, Mapping({bad: 0}, len(instance.buffers)), PROFILE, 1.0)


def test_wrong_buffer_count(instance):
    with pytest.raises(MappingError, match="n_buffers"):
        validate(instance, Mapping({}, 3), PROFILE, 1.0)


@pytest.mark.parametrize("budget", [0, -0.5, 1.5, float("nan"), "half"])
def test_bad_budgets(instance, budget):
    with pytest.raises(ValueError, match="budget"):
        validate(instance, Mapping({}, len(instance.buffers)), PROFILE, budget)


@pytest.mark.parametrize("edit, field", [
    (lambda d: d.pop("n_buffers"), "n_buffers"),
    (lambda d: d.update(schema_version=9), "schema_version"),
    (lambda d: d.update(fast={"a": 0}), r"fast\['a'\]"),
    (lambda d: d.update(fast={"1": "zero"}), r"fast\['1'\]"),
    (lambda d: d.update(budget="half"), "budget"),
])
def test_malformed_mapping_file(edit, field):
    data = json.loads(Mapping({1: 0}, 4).to_json())
    edit(data)
    with pytest.raises(MappingError, match=field):
        Mapping.from_json(json.dumps(data))
