"""Demonstration files: a round trip, every way a file can be corrupt or made for other buffers is refused by
name, and a file made under other profile figures or another cost model loads with that said."""

import dataclasses
import gzip
import json

import numpy as np
import pytest

from agent.data import demos as D
from agent.data.synthesize import synthetic
from agent.heuristics.xla_msa import xla_msa
from harness.model.costmodel import candidates
from harness.model.profiles import load_profile
from harness.model.simulator import simulate

PROFILE = load_profile("tpu-v4i-cmem")
BUDGET = 0.5
NAMES = ("synthetic-training-0-40", "synthetic-random-5-40")


def _instance(name):
    _, pattern, seed, n = name.split("-")
    return synthetic(int(seed), int(n), pattern=pattern)


def _write(tmp_path):
    made = []
    for name in NAMES:
        instance = _instance(name)
        mapping = xla_msa(instance, PROFILE, BUDGET, 0, None)
        seconds = simulate(instance, mapping, PROFILE)
        made.append(D.Demo(name, dict(mapping.offsets), "xla-msa", seconds, seconds, 0.9 * seconds, 5.0,
                           D.buffers_sha256(instance), False))
    return D.save(D.DemoSet(PROFILE.name, BUDGET, D.fingerprint(PROFILE), tuple(made)), tmp_path), made


def _edit(path, change):
    with gzip.open(path, "rt") as f:
        body = json.load(f)
    change(body)
    with gzip.open(path, "wt") as f:
        json.dump(body, f)


def test_round_trip_and_candidate_offsets(tmp_path):
    path, made = _write(tmp_path)
    assert path.name == "tpu-v4i-cmem@0.5.json.gz"
    loaded = D.load(PROFILE, BUDGET, tmp_path, _instance)
    assert loaded.by_instance() == {d.instance: d for d in made}
    demo = loaded.by_instance()[NAMES[0]]
    assert demo.gain == 1.0
    cands = candidates(_instance(NAMES[0]))
    offsets = demo.candidate_offsets(cands)
    assert offsets.shape == (cands.n,)
    assert sorted(np.flatnonzero(offsets >= 0).tolist()) == sorted({int(cands.of_buffer[b]) for b in demo.offsets})


def _entry(name, key, value):
    def change(body):
        body["instances"][name][key] = value
    return change


BAD = [
    ("instance 'synthetic-random-5-40': not a valid mapping", _entry(NAMES[1], "offsets", {"0": 0, "1": 0, "2": 0})),
    ("instance 'synthetic-random-5-40': malformed entry", _entry(NAMES[1], "offsets", {"x": 0})),
    ("instance 'synthetic-training-0-40': source 'cplex'", _entry(NAMES[0], "source", "cplex")),
    ("instance 'synthetic-training-0-40': seconds must be", _entry(NAMES[0], "demo_seconds", -1.0)),
    ("instance 'synthetic-training-0-40': stale: made for other buffers", _entry(NAMES[0], "buffers_sha256", "0" * 64)),
    ("instance 'synthetic-training-0-40': malformed entry", lambda b: b["instances"][NAMES[0]].pop("bound_seconds")),
    ("instance 'synthetic-training-0-40': optimal must be", _entry(NAMES[0], "optimal", "yes")),
    ("format 'other/1'", lambda b: b.update(format="other/1")),
    ("expected 'tpu-v4i-cmem' at 0.5", lambda b: b.update(budget=0.25)),
    ("'instances' must be a non-empty object", lambda b: b.update(instances={})),
]


@pytest.mark.parametrize("message,change", BAD, ids=[m.split(":")[0][:40] for m, _ in BAD])
def test_bad_files_are_refused_by_file_and_instance(tmp_path, message, change):
    path, _ = _write(tmp_path)
    _edit(path, change)
    with pytest.raises(D.DemoError) as err:
        D.load(PROFILE, BUDGET, tmp_path, _instance)
    assert str(path) in str(err.value) and message in str(err.value)


def test_missing_truncated_and_unknown_instance(tmp_path):
    with pytest.raises(D.DemoError, match="no demonstrations for this profile"):
        D.load(PROFILE, BUDGET, tmp_path, _instance)
    path, _ = _write(tmp_path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(D.DemoError, match="unreadable"):
        D.load(PROFILE, BUDGET, tmp_path, _instance)
    _write(tmp_path)
    with pytest.raises(D.DemoError, match="instance 'synthetic-[a-z]+-[0-9]+-40': nope"):
        D.load(PROFILE, BUDGET, tmp_path, lambda name: (_ for _ in ()).throw(ValueError("nope")))


def test_model_drift_is_said_not_fatal(tmp_path):
    path, made = _write(tmp_path)
    assert D.load(PROFILE, BUDGET, tmp_path, _instance).drift == ()
    other = dataclasses.replace(PROFILE, fast_bandwidth=2 * PROFILE.fast_bandwidth)
    drift = D.load(other, BUDGET, tmp_path, _instance).drift
    assert len(drift) == 2 and drift[0] == "made under other profile figures" and "another cost model" in drift[1]
    assert D.model_drift(other, BUDGET, tmp_path) == drift and D.model_drift(PROFILE, BUDGET, tmp_path) == ()
    assert D.model_drift(other, 0.25, tmp_path) == ()  # no file: nothing recorded, nothing drifted
    _edit(path, lambda b: b["fingerprint"].update(probe_seconds=[1.0, 2.0]))
    loaded = D.load(PROFILE, BUDGET, tmp_path, _instance)
    assert [d.startswith("made under another cost model") for d in loaded.drift] == [True]
    assert loaded.by_instance() == {d.instance: d for d in made}


def test_buffers_hash_ignores_op_costs_not_buffers():
    instance = _instance(NAMES[0])
    op = instance.ops[0]
    cheaper = dataclasses.replace(instance, ops=(dataclasses.replace(op, flops=op.flops + 1.0),) + instance.ops[1:])
    assert D.buffers_sha256(cheaper) == D.buffers_sha256(instance)
    b = instance.buffers[0]
    bigger = dataclasses.replace(instance, buffers=(dataclasses.replace(b, bytes=b.bytes + 4),) + instance.buffers[1:])
    assert D.buffers_sha256(bigger) != D.buffers_sha256(instance)


def test_remaking_some_keeps_the_others_with_their_fingerprint(tmp_path):
    path, made = _write(tmp_path)
    _edit(path, lambda b: b["fingerprint"].update(probe_seconds=[1.0, 2.0]))  # the old file: another model
    remade = dataclasses.replace(made[0], time_limit_seconds=9.0)
    D.save(D.DemoSet(PROFILE.name, BUDGET, D.fingerprint(PROFILE), (remade,)), tmp_path, keep_others=True)
    loaded = D.load(PROFILE, BUDGET, tmp_path, _instance)
    assert loaded.by_instance() == {NAMES[0]: remade, NAMES[1]: made[1]}
    assert [d.startswith("made under another cost model") for d in loaded.drift] == [True]
    D.save(D.DemoSet(PROFILE.name, BUDGET, D.fingerprint(PROFILE), (remade,)), tmp_path)
    assert D.load(PROFILE, BUDGET, tmp_path, _instance).by_instance() == {NAMES[0]: remade}
