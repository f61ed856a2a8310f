"""Instance JSON: round trip, and clear errors for other schema versions and malformed files."""

import json

import jax.numpy as jnp
import pytest

from harness import SCHEMA_VERSION, Instance, InstanceError
from harness import extract


@pytest.fixture(scope="module")
def instance() -> Instance:
    return extract(lambda x, w: jnp.tanh(x @ w).sum(0), jnp.ones((8, 16)), jnp.ones((16, 4)), name="small")


def test_json_round_trip(instance):
    again = Instance.from_json(instance.to_json())
    assert again == instance
    assert again.peak_live_bytes == instance.peak_live_bytes
    assert again.schema_version == SCHEMA_VERSION


def _mutated(instance, edit) -> str:
    data = json.loads(instance.to_json())
    edit(data)
    return json.dumps(data)


def test_other_schema_version_is_refused(instance):
    text = _mutated(instance, lambda d: d.update(schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(InstanceError, match="schema_version"):
        Instance.from_json(text)


def test_missing_version_is_refused(instance):
    text = _mutated(instance, lambda d: d.pop("schema_version"))
    with pytest.raises(InstanceError, match="schema_version"):
        Instance.from_json(text)


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["buffers"][0].pop("bytes"), r"buffers\[0\]\.bytes: missing"),
    (lambda d: d["buffers"][1].update(start="3"), r"buffers\[1\]\.start: expected an integer"),
    (lambda d: d["ops"][2].update(flops="many"), r"ops\[2\]\.flops: expected a number"),
    (lambda d: d["compiler"].update(temp_bytes=None), r"compiler\.temp_bytes: expected an integer"),
    (lambda d: d.update(ops={}), r"instance\.ops: expected a list"),
    (lambda d: d["buffers"][0].update(color="red"), r"buffers\[0\]: unknown field"),
    (lambda d: d["buffers"][0].update(end=10**6), r"buffers\[0\]: interval"),
    (lambda d: d["buffers"][0].update(id=7), r"buffers\[0\]\.id"),
    (lambda d: d["ops"][-1].update(writes=[10**6]), r"ops\[\d+\]: buffer id 1000000"),
])
def test_malformed_field_is_named(instance, edit, field):
    with pytest.raises(InstanceError, match=field):
        Instance.from_json(_mutated(instance, edit))


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]"])
def test_not_an_instance(text):
    with pytest.raises(InstanceError):
        Instance.from_json(text)
