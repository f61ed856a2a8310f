"""The results store: round trips, manifests, clear errors, SIGKILLed and concurrent writers, corrupt files."""

import json
import math
import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from harness.results import store
from harness.results.store import StoreError

REPO = pathlib.Path(__file__).resolve().parent.parent
WRITER = pathlib.Path(__file__).resolve().parent / "store_writer.py"


def measurement(**changes) -> dict:
    row = {"workload": "mlp", "size": "ci", "policy": "xla-msa", "budget": 0.5, "status": "ok", "error": "",
           "median_s": 0.0125, "samples": [0.0124, 0.0125, 0.0127]}
    return {**row, **changes}


def prediction(**changes) -> dict:
    row = {"workload": "mlp", "size": "ci", "policy": "xla-msa", "budget": 0.5, "profile": "h100-offload",
           "predicted_s": 0.011}
    return {**row, **changes}


def files_under(root: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def root(tmp_path) -> pathlib.Path:
    return tmp_path / "results"


@pytest.fixture
def run(root) -> str:
    return store.start_run({"suite": "ci"}, root=root, run_id="run-a")


def writer(root, run_id, name, appends, rows_per_file, wait=False) -> subprocess.Popen:
    args = [sys.executable, str(WRITER), str(root), run_id, name, str(appends), str(rows_per_file)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(args + ["--wait"] * wait, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=REPO, env=env)


def ready(proc: subprocess.Popen) -> subprocess.Popen:
    assert proc.stdout.readline().strip() == "ready"
    return proc


def output(proc: subprocess.Popen) -> str:
    """The rest of a writer's stdout once it has ended. Not `communicate()`: with stdin piped too it reads the
    raw pipe and would lose lines that `ready`'s readline already buffered (a writer that runs ahead of a
    slow test process)."""
    out = proc.stdout.read()
    proc.wait()
    return out


# Round trips and manifests.

def test_new_run_id_is_sortable_and_safe():
    ids = [store.new_run_id("ci"), store.new_run_id()]
    assert re.fullmatch(r"\d{8}T\d{6}Z-ci-[0-9a-f]{6}", ids[0])
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", ids[1])
    assert ids[0][:16] <= ids[1][:16]
    with pytest.raises(StoreError, match="label"):
        store.new_run_id("a/b")


def test_manifest_life_cycle(root):
    run_id = store.start_run({"suite": "ci", "git_commit": "abc"}, root=root)
    manifest = store.read_manifest(run_id, root=root)
    assert manifest["schema_version"] == store.SCHEMA_VERSION and manifest["run_id"] == run_id
    assert manifest["status"] == "running" and manifest["suite"] == "ci"
    assert manifest["started"].endswith("+00:00")
    store.finish_run(run_id, root=root, rows=3)
    manifest = store.read_manifest(run_id, root=root)
    assert manifest["status"] == "finished" and manifest["rows"] == 3 and manifest["suite"] == "ci"
    assert manifest["finished"] >= manifest["started"]
    assert store.run_dir(run_id, root=root) == root / "runs" / run_id
    assert [p.name for p in store.run_dir(run_id, root=root).iterdir()] == ["manifest.json"]   # no temporary left


def test_append_and_read_round_trip(root, run):
    rows = [measurement(iqr_s=0.0002, peak_bytes=1 << 20, selected=True, host="h1"),
            measurement(status="failed", error="OOM", median_s=math.nan, samples=[], budget=None, host="h1")]
    path = store.append("measurements", rows, run, root=root)
    assert path.parent == root / "measurements" / run
    assert re.fullmatch(rf"part-\d{{8}}T\d{{12}}Z-{os.getpid()}-[0-9a-f]{{32}}\.parquet", path.name)
    assert pq.read_table(path).schema.metadata[b"schema_version"] == b"1"
    frame = pd.DataFrame([measurement(policy="cpsat", seed=3)])
    store.append("measurements", frame, run, root=root)
    got = store.read(root=root)
    assert list(got.policy) == ["xla-msa", "xla-msa", "cpsat"]
    assert list(got.run_id) == [run] * 3 and list(got.schema_version) == [1, 1, 1]
    assert got.median_s[0] == 0.0125 and math.isnan(got.median_s[1])
    assert list(got.samples[0]) == [0.0124, 0.0125, 0.0127] and len(got.samples[1]) == 0
    assert math.isnan(got.budget[1]) and got.error[1] == "OOM"
    assert got.peak_bytes[0] == 1 << 20 and bool(got.selected[0]) and got.host[1] == "h1"
    assert got.seed[2] == 3 and math.isnan(got.seed[0])
    assert store.read("predictions", root=root).empty


def test_read_orders_by_run_then_time_and_filters_runs(root):
    late = store.start_run({}, root=root, run_id="20261124T000002Z-b")
    early = store.start_run({}, root=root, run_id="20261124T000001Z-a")
    store.append("predictions", [prediction(predicted_s=1.0)], late, root=root)
    store.append("predictions", [prediction(predicted_s=2.0)], early, root=root)
    store.append("predictions", [prediction(predicted_s=3.0)], late, root=root)
    assert list(store.read("predictions", root=root).predicted_s) == [2.0, 1.0, 3.0]
    assert list(store.read("predictions", root=root, run_ids=[late]).predicted_s) == [1.0, 3.0]
    assert list(store.read("predictions", root=root, run_ids=early).predicted_s) == [2.0]


def test_empty_store_reads_required_columns(root):
    got = store.read(root=root)
    assert got.empty
    assert {"run_id", "workload", "size", "policy", "budget", "status", "error", "median_s", "samples",
            "schema_version"} <= set(got.columns)
    assert "predicted_s" in store.read("predictions", root=root).columns
    assert store.list_runs(root=root).empty and store.corrupt_files(root=root) == []


def test_list_runs_counts_rows_and_reports_bad_manifests(root):
    first = store.start_run({}, root=root, run_id="20261124T000001Z-a")
    second = store.start_run({}, root=root, run_id="20261124T000002Z-b")
    store.append("measurements", [measurement()] * 3, first, root=root)
    store.append("predictions", [prediction()] * 2, first, root=root)
    store.finish_run(first, root=root)
    bad = store.run_dir("zzz-broken", root=root)
    bad.mkdir(parents=True)
    (bad / "manifest.json").write_text("{not json")
    runs = store.list_runs(root=root)
    assert list(runs.run_id) == [first, second, "zzz-broken"]
    assert list(runs.status[:2]) == ["finished", "running"]
    assert list(runs.measurements) == [3, 0, 0] and list(runs.predictions) == [2, 0, 0]
    assert pd.isna(runs.problem[0]) and "manifest.json" in runs.problem[2]


# Clear errors; bad input leaves the stored files untouched.

@pytest.mark.parametrize("table, rows, message", [
    ("results", [measurement()], r"table 'results': unknown"),
    ("measurements", [], "no rows"),
    ("measurements", {"workload": "mlp"}, "list of dicts or a DataFrame"),
    ("measurements", [measurement(), "row"], "row 1 is a str"),
    ("measurements", [measurement(), {k: v for k, v in measurement().items() if k != "median_s"}],
     "row 1 has no column 'median_s'"),
    ("measurements", [measurement(size=8)], r"row 0: column 'size' must be str, got 8 \(int\)"),
    ("measurements", [measurement(budget="half")], "column 'budget' must be float or None"),
    ("measurements", [measurement(samples=0.1)], "column 'samples' must be a list of float"),
    ("measurements", [measurement(samples=[0.1, "x"])], "column 'samples' must be a list of float"),
    ("measurements", [measurement(status="maybe")], "column 'status' must be 'ok' or 'failed'"),
    ("measurements", [measurement(median_s=math.nan)], "'median_s' must be a number when status is 'ok'"),
    ("measurements", [measurement(status="failed", median_s=1.0)], "'median_s' must be NaN when status"),
    ("measurements", [measurement(median_s=True)], "column 'median_s' must be float"),
    ("measurements", [measurement(run_id="x")], "column 'run_id' is set by the store"),
    ("measurements", [measurement(host="a"), measurement(host=3)], "row 1: column 'host' holds a int"),
    ("measurements", [measurement(extra={"a": 1})], "column 'extra' must be str, int, float, bool"),
    ("predictions", [prediction(predicted_s=None)], "row 0: column 'predicted_s' must be float"),
    ("predictions", pd.DataFrame([prediction()]).drop(columns="profile"), "row 0 has no column 'profile'"),
])
def test_bad_rows_are_refused_and_store_unchanged(root, run, table, rows, message):
    store.append("measurements", [measurement()], run, root=root)
    before = files_under(root)
    with pytest.raises(StoreError, match=message):
        store.append(table, rows, run, root=root)
    assert files_under(root) == before
    assert len(store.read(root=root)) == 1


def test_int_and_float_mix_in_an_extra_column(root, run):
    store.append("measurements", [measurement(seed=1), measurement(seed=2.5), measurement(seed=np.int64(4))],
                 run, root=root)
    assert list(store.read(root=root).seed) == [1.0, 2.5, 4.0]


def test_an_extra_column_may_change_type_between_runs(root):
    for run_id, host in [("run-a", "h1"), ("run-b", 7), ("run-c", None)]:
        store.start_run({}, root=root, run_id=run_id)
        store.append("measurements", [measurement(host=host)], run_id, root=root)
    assert list(store.read(root=root).host[:2]) == ["h1", 7]


@pytest.mark.parametrize("run_id", ["", "../x", "a b", ".hidden", "x/y", 7, "a" * 129])
def test_bad_run_ids_are_refused(root, run_id):
    for call in (lambda: store.start_run({}, root=root, run_id=run_id), lambda: store.run_dir(run_id, root=root),
                 lambda: store.append("measurements", [measurement()], run_id, root=root),
                 lambda: store.read(root=root, run_ids=[run_id])):
        with pytest.raises(StoreError, match="run_id"):
            call()
    assert not root.exists()


def test_run_errors(root, run):
    before = files_under(root)
    with pytest.raises(StoreError, match="run 'run-a' already has a manifest"):
        store.start_run({"other": 1}, root=root, run_id=run)
    with pytest.raises(StoreError, match=r"keys \['status'\] are set by the store"):
        store.start_run({"status": "done"}, root=root)
    with pytest.raises(StoreError, match="run 'run-b'.*not JSON-serialisable"):
        store.start_run({"when": object()}, root=root, run_id="run-b")
    with pytest.raises(StoreError, match="run 'nope': no manifest"):
        store.append("measurements", [measurement()], "nope", root=root)
    with pytest.raises(StoreError, match="run 'nope': no manifest"):
        store.finish_run("nope", root=root)
    with pytest.raises(StoreError, match="run 'nope': no manifest"):
        store.read(root=root, run_ids=["nope"])
    with pytest.raises(StoreError, match=r"keys \[.started.\] are set by the store"):
        store.finish_run(run, root=root, started="now")
    with pytest.raises(StoreError, match="table 'x'"):
        store.read("x", root=root)
    assert files_under(root) == before
    assert store.read_manifest(run, root=root)["suite"] == "ci"


def test_bad_manifests_name_the_file(root, run):
    path = store.run_dir(run, root=root) / "manifest.json"
    for text, message in [("[1]", "expected a JSON object"), ("{", "not a readable JSON manifest"),
                          (json.dumps({"schema_version": 2, "run_id": run}), "schema_version 2"),
                          (json.dumps({"schema_version": 1, "run_id": "other"}), "does not match")]:
        path.write_text(text)
        with pytest.raises(StoreError, match=re.escape(str(path)) + ".*" + message):
            store.read_manifest(run, root=root)


def test_other_schema_version_is_refused_naming_the_file(root, run):
    good = store.append("measurements", [measurement()], run, root=root)
    table = pq.read_table(good)
    other = good.with_name("part-29991231T000000000000Z-1-0.parquet")
    pq.write_table(table.replace_schema_metadata({"schema_version": "2"}), other)
    with pytest.raises(StoreError, match=re.escape(str(other)) + r": schema_version .*'2'"):
        store.read(root=root)
    assert other.exists() and store.corrupt_files(root=root) == []


# Corrupt files are named, set aside and never deleted; the rest stays readable.

def test_corrupt_files_are_set_aside(root, run):
    paths = [store.append("measurements", [measurement(seq=i)] * 2, run, root=root) for i in range(4)]
    paths[1].write_bytes(b"this is not parquet" * 10)
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning) as caught:
        got = store.read(root=root)
    assert sorted(got.seq) == [0, 0, 3, 3]
    messages = " ".join(str(w.message) for w in caught)
    assert str(paths[1]) in messages and str(paths[2]) in messages
    moved = [root / "corrupt" / p.relative_to(root) for p in paths[1:3]]
    assert store.corrupt_files(root=root) == moved
    assert moved[0].read_bytes() == b"this is not parquet" * 10 and moved[1].read_bytes() == data[: len(data) // 2]
    assert not paths[1].exists() and not paths[2].exists()
    assert list(store.list_runs(root=root).measurements) == [4]
    assert sorted(store.read(root=root).seq) == [0, 0, 3, 3]   # no warning the second time


def test_a_flipped_byte_inside_a_page_is_caught_by_its_checksum(root, run):
    samples = list(np.random.default_rng(0).random(100))   # incompressible; sample 50 is neither min nor max
    path = store.append("measurements", [measurement(samples=samples)], run, root=root)
    data = bytearray(path.read_bytes())
    data[data.index(np.float64(samples[50]).tobytes()) + 3] ^= 0xFF   # would read back as a wrong sample
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=re.escape(str(path))):
        assert store.read(root=root).empty
    assert len(store.corrupt_files(root=root)) == 1


def test_temporary_files_are_ignored(root, run):
    store.append("measurements", [measurement()], run, root=root)
    (root / "measurements" / run / ".part-x.parquet.abc.tmp").write_bytes(b"half written")
    assert len(store.read(root=root)) == 1 and store.corrupt_files(root=root) == []


# Writer processes killed or racing.

def test_sigkilled_writers_leave_every_committed_row(root):
    run_id = store.start_run({"test": "sigkill"}, root=root)
    rng, rows_per_file, kept = random.Random(20261124), 4, {}
    for first in range(0, 20, 2):    # 20 kills, two writers at a time, each killed at its own random moment
        names = [f"w{first}", f"w{first + 1}"]
        procs = [ready(proc) for proc in [writer(root, run_id, name, 0, rows_per_file) for name in names]]
        started = time.monotonic()
        for at, proc in sorted(zip([rng.uniform(0.0, 0.15) for _ in procs], procs), key=lambda pair: pair[0]):
            time.sleep(max(0.0, started + at - time.monotonic()))
            proc.send_signal(signal.SIGKILL)
        got = store.read(root=root)
        for name, proc in zip(names, procs):
            out = output(proc)
            assert proc.returncode == -signal.SIGKILL
            committed = max(map(int, out.split()), default=0)
            files = got[got.writer == name].groupby("seq")["row"].apply(sorted)
            assert committed <= len(files) <= committed + 1, (name, committed, len(files))
            assert list(files.index) == list(range(len(files)))
            assert all(rows == list(range(rows_per_file)) for rows in files)
        now = got.writer.value_counts().to_dict()
        assert {name: now.get(name, 0) for name in kept} == kept   # every earlier row is still there
        kept = now
    assert sum(kept.values()) > 0 and store.corrupt_files(root=root) == []
    assert store.list_runs(root=root).measurements[0] == sum(kept.values())


def test_two_concurrent_writers_lose_nothing(root, run):
    appends, rows_per_file = 40, 3
    procs = [ready(proc) for proc in [writer(root, run, name, appends, rows_per_file, wait=True)
                                      for name in ("a", "b")]]
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    seen = 0
    while any(proc.poll() is None for proc in procs):
        now = len(store.read(root=root))   # a reader beside the writers sees only whole files
        assert now >= seen and now % rows_per_file == 0
        seen = now
    for proc in procs:
        out = output(proc)
        assert proc.returncode == 0 and out.split()[-1] == str(appends)
    got = store.read(root=root)
    assert len(got) == 2 * appends * rows_per_file
    assert got.groupby(["writer", "seq"]).size().eq(rows_per_file).all()
    assert len(list((root / "measurements" / run).iterdir())) == 2 * appends
    assert store.corrupt_files(root=root) == []
