"""Per-op ground truth: the profiler's events read as per-op self times, and the per-op run in the store."""

import jax
import jax.numpy as jnp
import pytest

from harness.device.op_profile import OpProfileError, op_self_times, trace_ops
from harness.model.profiles import load_profile
from harness.results import store
from harness.runs.calibration import op_points_from_store, points_from_store
from harness.runs.op_times import OpTimesSpec, run_op_times


def _event(name, ts, dur, tid=1, op=None):
    e = {"ph": "X", "name": name, "ts": ts, "dur": dur, "pid": 1, "tid": tid}
    if op:
        e["args"] = {"hlo_op": op}
    return e


def test_self_times_subtract_nested_events_and_sum_per_call():
    events = [
        _event("mallocbench-call-0", 0, 100, tid=9), _event("mallocbench-call-1", 200, 100, tid=9),
        # call 0: a while op (40 us) holding two iterations of its body's dot (10 us each), then a fusion
        _event("while.1", 5, 40, op="while.1"), _event("dot.2", 10, 10, op="dot.2"), _event("dot.2", 25, 10, op="dot.2"),
        _event("fusion.3", 50, 20, tid=2, op="fusion.3"),
        # call 1: the fusion only; an event outside every call is ignored
        _event("fusion.3", 210, 30, op="fusion.3"), _event("dot.2", 500, 10, op="dot.2"),
    ]
    seconds, counts = op_self_times(events, 2)
    assert seconds[0] == pytest.approx({"while.1": 20e-6, "dot.2": 20e-6, "fusion.3": 20e-6})
    assert counts[0] == {"while.1": 1, "dot.2": 2, "fusion.3": 1} and counts[1] == {"fusion.3": 1}
    with pytest.raises(OpProfileError, match="expected 3 annotated calls"):
        op_self_times(events, 3)
    with pytest.raises(OpProfileError, match="no per-op events"):
        op_self_times([e for e in events if "args" not in e], 2)


def test_trace_ops_times_the_ops_of_a_compiled_program():
    f = jax.jit(lambda x, w: jnp.tanh(x @ w).sum()).lower(jnp.ones((64, 64)), jnp.ones((64, 64))).compile()
    args = (jnp.ones((64, 64)), jnp.ones((64, 64)))
    trace = trace_ops(lambda: jax.block_until_ready(f(*args)), calls=3)
    assert trace.seconds and all(s >= 0 for s in trace.seconds.values())
    assert all(n >= 1 for n in trace.executions.values()) and trace.untraced_s > 0 and trace.coverage > 0
    with pytest.raises(ValueError, match="calls must be a positive integer"):
        trace_ops(lambda: None, calls=0)


def test_a_per_op_run_stores_programs_and_ops_that_calibration_reads(tmp_path):
    root = str(tmp_path)
    spec = OpTimesSpec(("mlp-train", "lstm-scan"), ("ci",), load_profile("cpu-local"), rounds=1, calls=2)
    run_id = run_op_times(spec, root)
    ops = store.read("op_times", root, run_ids=[run_id])
    assert set(ops.workload) == {"mlp-train", "lstm-scan"} and (ops.measured_s >= 0).all()
    assert {"dot", "loop"} <= set(ops.kind) and ops[ops.kind == "loop"].trip_count.eq(1).all()
    body = ops[(ops.workload == "lstm-scan") & (ops.trip_count > 1)]
    assert len(body) and (body.executions == body.trip_count).all()  # one event per iteration
    points, _ = points_from_store(root, [run_id], statistic="min")
    op_points = op_points_from_store(root, [run_id])
    assert len(points) == 2 and len(op_points) == int((ops.measured_s > 0).sum())
    assert all(p.instance.ops[p.step].name in set(ops.op) for p in op_points)
    # bare dots (Eigen's: their event holds only the dispatch) are timed alone; a run that did not time them
    # alone gives no op point for them
    alone = ops.opcode.isin(["dot", "convolution"])
    assert (ops.opcode == "dot").any() and ops[alone].timed_alone.all() and not ops[~alone].timed_alone.any()
    before = store.start_run({"kind": "op-times"}, root)
    store.append("op_times", ops.drop(columns=["run_id", "schema_version"], errors="ignore").assign(timed_alone=False),
                 before, root)
    store.finish_run(before, root)
    assert len(op_points_from_store(root, [before])) == int(((ops.measured_s > 0) & ~alone).sum())


def test_bad_specs_are_named():
    profile = load_profile("cpu-local")
    with pytest.raises(ValueError, match="rounds must be a positive integer"):
        OpTimesSpec(("mlp-train",), ("ci",), profile, rounds=0)
    with pytest.raises(ValueError, match="unknown size 'huge'"):
        OpTimesSpec(("mlp-train",), ("huge",), profile)
