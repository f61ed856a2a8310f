"""The append-only results store: Parquet part files of measurements and predictions, a JSON manifest per run.

Layout under the store root::

    runs/<run_id>/manifest.json                       the run's manifest (and artifacts others write there)
    <table>/<run_id>/part-<time>-<pid>-<uuid>.parquet one file per append()
    <table>/<run_id>/part-<key>.parquet               one file per append(key=...): written at most once
    corrupt/<table>/<run_id>/part-...parquet          part files read() could not read, set aside

Every file is written to a temporary file in its directory, flushed, fsynced, renamed into place and the
directory fsynced, so a writer killed at any moment leaves every earlier file whole. Files are never
rewritten (but a manifest, by finish_run) nor deleted.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import numbers
import os
import pathlib
import re
import secrets
import uuid
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harness.results.artifacts import fsync_dir, make_dirs, write_atomic

SCHEMA_VERSION = 1
TABLES = ("measurements", "predictions", "cells", "op_times")
DEFAULT_ROOT = "results"


class StoreError(ValueError):
    """Bad input or a bad file; the message names the field, file or run."""


_STR, _FLOAT, _OPT_FLOAT, _FLOATS, _INT = "str", "float", "float or None", "list of float", "int"
_REQUIRED = {
    "measurements": {"workload": _STR, "size": _STR, "policy": _STR, "budget": _OPT_FLOAT, "status": _STR,
                     "error": _STR, "median_s": _OPT_FLOAT, "samples": _FLOATS},
    "predictions": {"workload": _STR, "size": _STR, "policy": _STR, "budget": _OPT_FLOAT, "profile": _STR,
                    "predicted_s": _FLOAT},
    # one row per cell of a nightly grid; median_s is NaN where the cell has no measurement (the reason is in
    # the extra column measure_note) and simulated_s NaN where it has no mapping
    "cells": {"cell": _INT, "workload": _STR, "size": _STR, "policy": _STR, "budget": _OPT_FLOAT, "status": _STR,
              "error": _STR, "simulated_s": _OPT_FLOAT, "median_s": _OPT_FLOAT, "samples": _FLOATS},
    # one row per op with a kernel of one profiled program (harness.runs.op_times): measured_s is its seconds
    # per program run (every execution), coverage the share of the program's whole time its ops account for
    "op_times": {"workload": _STR, "size": _STR, "op": _STR, "kind": _STR, "flops": _FLOAT, "bytes": _FLOAT,
                 "shapes": _STR, "trip_count": _INT, "executions": _INT, "measured_s": _FLOAT, "coverage": _FLOAT},
}
_STORE_COLUMNS = ("run_id", "schema_version")
_ARROW_TYPES = {_STR: pa.string(), _FLOAT: pa.float64(), _OPT_FLOAT: pa.float64(), _FLOATS: pa.list_(pa.float64()),
                _INT: pa.int64(), "bool": pa.bool_()}
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_LABEL = re.compile(r"[A-Za-z0-9._-]*")
_MANIFEST_KEYS = ("schema_version", "run_id", "started", "status", "finished")
_VERSION_KEY = b"schema_version"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _iso(t: datetime.datetime) -> str:
    return t.isoformat(timespec="microseconds")


def _check_run_id(run_id: Any) -> str:
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise StoreError(f"run_id {run_id!r}: expected 1 to 128 characters of [A-Za-z0-9._-], "
                         "starting with a letter or digit")
    return run_id


def _check_table(table: Any) -> str:
    if table not in TABLES:
        raise StoreError(f"table {table!r}: unknown; the store holds {', '.join(TABLES)}")
    return table


def new_run_id(label: str = "") -> str:
    """A fresh run id, "<UTC time>-<label>-<6 hex>", sortable by time; label may hold [A-Za-z0-9._-]."""
    if not isinstance(label, str) or not _LABEL.fullmatch(label) or len(label) > 100:
        raise StoreError(f"label {label!r}: expected at most 100 characters of [A-Za-z0-9._-]")
    parts = [_now().strftime("%Y%m%dT%H%M%SZ"), label, secrets.token_hex(3)]
    return "-".join(p for p in parts if p)


def run_dir(run_id: str, root: str | os.PathLike = DEFAULT_ROOT) -> pathlib.Path:
    """The directory <root>/runs/<run_id> of a run's manifest and artifacts (not created here)."""
    return pathlib.Path(root) / "runs" / _check_run_id(run_id)


def _manifest_path(run_id: str, root: str | os.PathLike) -> pathlib.Path:
    return run_dir(run_id, root) / "manifest.json"


def _write_manifest(path: pathlib.Path, manifest: dict, exclusive: bool = False) -> None:
    try:
        text = json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except (TypeError, ValueError) as err:
        raise StoreError(f"manifest of run {manifest['run_id']!r}: not JSON-serialisable: {err}") from None
    write_atomic(path, lambda f: f.write(text.encode()), exclusive=exclusive)


def _reserved_keys(keys: Iterable[str], what: str) -> None:
    clash = sorted(set(keys) & set(_MANIFEST_KEYS))
    if clash:
        raise StoreError(f"{what}: keys {clash} are set by the store")


def start_run(meta: dict, root: str | os.PathLike = DEFAULT_ROOT, run_id: str | None = None) -> str:
    """Write the manifest of a new run (status "running") and return its id; refuses an existing run."""
    if not isinstance(meta, Mapping):
        raise StoreError(f"meta: expected a dict, got {type(meta).__name__}")
    _reserved_keys(meta, "meta")
    run_id = new_run_id() if run_id is None else _check_run_id(run_id)
    path = _manifest_path(run_id, root)
    manifest = {"schema_version": SCHEMA_VERSION, "run_id": run_id, "started": _iso(_now()),
                "status": "running", **meta}
    try:
        _write_manifest(path, manifest, exclusive=True)
    except FileExistsError:
        raise StoreError(f"run {run_id!r} already has a manifest ({path}); choose another run id") from None
    return run_id


def read_manifest(run_id: str, root: str | os.PathLike = DEFAULT_ROOT) -> dict:
    """The manifest of a run; StoreError naming the file if it is missing, malformed or of another version."""
    path = _manifest_path(run_id, root)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise StoreError(f"run {run_id!r}: no manifest at {path}; start the run with start_run()") from None
    except (OSError, ValueError) as err:
        raise StoreError(f"{path}: not a readable JSON manifest: {err}") from None
    if not isinstance(data, dict):
        raise StoreError(f"{path}: expected a JSON object")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise StoreError(f"{path}: schema_version {data.get('schema_version')!r}, this mallocbench reads "
                         f"{SCHEMA_VERSION}")
    if data.get("run_id") != run_id:
        raise StoreError(f"{path}: run_id {data.get('run_id')!r} does not match its directory {run_id!r}")
    return data


def finish_run(run_id: str, root: str | os.PathLike = DEFAULT_ROOT, status: str = "finished", **extra) -> None:
    """Rewrite a run's manifest atomically with `status`, the "finished" time and the `extra` keys."""
    if not isinstance(status, str) or not status:
        raise StoreError(f"status {status!r}: expected a non-empty string")
    _reserved_keys(extra, "finish_run")
    manifest = read_manifest(run_id, root)
    manifest.update(extra, status=status, finished=_iso(_now()))
    _write_manifest(_manifest_path(run_id, root), manifest)


class _Bad(Exception):
    """A value that does not fit its column; the message says what was expected."""


def _is_missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def _floats(v: Any) -> list[float]:
    if isinstance(v, (list, tuple, np.ndarray)) and all(_is_number(x) for x in v):
        return [float(x) for x in v]
    raise _Bad("a list of float")


def _convert(v: Any, kind: str) -> Any:
    """`v` as a value of a required column of `kind`."""
    if kind == _STR and isinstance(v, str):
        return v
    if kind in (_FLOAT, _OPT_FLOAT) and _is_number(v):
        return float(v)
    if kind == _OPT_FLOAT and _is_missing(v):
        return math.nan
    if kind == _FLOATS:
        return _floats(v)
    if kind == _INT and isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)):
        return int(v)
    raise _Bad(kind)


def _extra_kind(v: Any) -> tuple[str | None, Any]:
    """The kind of a value of an extra column (None when missing) and the value to store."""
    if _is_missing(v):
        return None, None
    if isinstance(v, (bool, np.bool_)):
        return "bool", bool(v)
    if isinstance(v, numbers.Integral):
        return _INT, int(v)
    if _is_number(v):
        return _FLOAT, float(v)
    if isinstance(v, str):
        return _STR, v
    if isinstance(v, (list, tuple, np.ndarray)):
        return _FLOATS, _floats(v)
    raise _Bad("str, int, float, bool or a list of float")


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def _records(rows: Any) -> list[Mapping]:
    if isinstance(rows, pd.DataFrame):
        return rows.to_dict("records")
    if isinstance(rows, (Mapping, str, bytes)) or not isinstance(rows, Iterable):
        raise StoreError(f"rows: expected a list of dicts or a DataFrame, got {type(rows).__name__}")
    records = list(rows)
    for i, row in enumerate(records):
        if not isinstance(row, Mapping):
            raise StoreError(f"rows: row {i} is a {type(row).__name__}, expected a dict")
    return records


def _arrow_table(table: str, rows: Any, run_id: str) -> pa.Table:
    """Validate `rows` for `table` and build the Arrow table of one part file."""
    records = _records(rows)
    if not records:
        raise StoreError(f"{table}: no rows to append")
    required = _REQUIRED[table]
    extras = list(dict.fromkeys(k for r in records for k in r if k not in required))
    for name in extras:
        if not isinstance(name, str) or not name:
            raise StoreError(f"{table}: column name {name!r} is not a non-empty string")
        if name in _STORE_COLUMNS:
            raise StoreError(f"{table}: column {name!r} is set by the store; drop it from the rows")
    columns: dict[str, list] = {name: [] for name in [*required, *extras]}
    kinds: dict[str, str | None] = {name: None for name in extras}
    for i, row in enumerate(records):
        where = f"{table}: row {i}"
        for name, kind in required.items():
            if name not in row:
                raise StoreError(f"{where} has no column {name!r}; required: {', '.join(required)}")
            try:
                columns[name].append(_convert(row[name], kind))
            except _Bad as bad:
                raise StoreError(f"{where}: column {name!r} must be {bad}, got {_short(row[name])} "
                                 f"({type(row[name]).__name__})") from None
        if "status" in required and row["status"] not in ("ok", "failed"):
            raise StoreError(f"{where}: column 'status' must be 'ok' or 'failed', got {row['status']!r}")
        if table == "measurements":
            status, median = row["status"], columns["median_s"][-1]
            if (status == "ok") == math.isnan(median):
                raise StoreError(f"{where}: column 'median_s' must be " +
                                 ("a number when status is 'ok'" if status == "ok" else
                                  f"NaN when status is 'failed', got {median!r}"))
        for name in extras:
            try:
                kind, value = _extra_kind(row.get(name))
            except _Bad as bad:
                raise StoreError(f"{where}: column {name!r} must be {bad}, got {_short(row[name])} "
                                 f"({type(row[name]).__name__})") from None
            seen = kinds[name]
            if kind is not None and seen is not None and kind != seen:
                if {kind, seen} != {_INT, _FLOAT}:
                    raise StoreError(f"{where}: column {name!r} holds a {kind} value {_short(value)} where "
                                     f"earlier rows hold {seen}")
                kind = _FLOAT
            kinds[name] = kind or seen
            columns[name].append(value)
    types = {**{n: _ARROW_TYPES[k] for n, k in required.items()},
             **{n: _ARROW_TYPES[k or _FLOAT] for n, k in kinds.items()}}
    arrays = {"run_id": pa.array([run_id] * len(records), pa.string()),
              **{n: pa.array(v, types[n]) for n, v in columns.items()},
              "schema_version": pa.array([SCHEMA_VERSION] * len(records), pa.int64())}
    return pa.table(arrays).replace_schema_metadata({_VERSION_KEY: str(SCHEMA_VERSION).encode()})


def append(table: str, rows: Any, run_id: str, root: str | os.PathLike = DEFAULT_ROOT,
           key: str | None = None) -> pathlib.Path | None:
    """Validate `rows` (dicts or a DataFrame) and write them, with run_id and schema_version, as one new part file.

    With a `key` the file is part-<key>.parquet and is written at most once: if a part of that key is already
    committed (an earlier attempt of the same work, say a retried task), nothing is written and None is
    returned, so retries never double rows.

    The run must have been started with start_run(). Required columns: workload, size, policy (str), budget
    (float or None) and, for measurements, status ("ok" or "failed"), error (str), median_s (float, NaN when
    failed), samples (list of float); for predictions, profile (str), predicted_s (float); for cells, cell
    (int), status, error, simulated_s and median_s (float, NaN when missing), samples. Extra columns of
    str, int, float, bool or list of float are kept. Returns the path of the new file.
    """
    _check_table(table)
    if key is not None and (not isinstance(key, str) or not _KEY.fullmatch(key)):
        raise StoreError(f"key {key!r}: expected 1 to 64 characters of [A-Za-z0-9._-], starting with a letter or digit")
    read_manifest(run_id, root)
    data = _arrow_table(table, rows, run_id)
    name = key or f"{_now().strftime('%Y%m%dT%H%M%S%fZ')}-{os.getpid()}-{uuid.uuid4().hex}"
    path = pathlib.Path(root) / table / run_id / f"part-{name}.parquet"
    try:
        write_atomic(path, lambda f: pq.write_table(data, f, write_page_checksum=True), exclusive=key is not None)
    except FileExistsError:
        return None
    return path


def keys(table: str, run_id: str, root: str | os.PathLike = DEFAULT_ROOT) -> set[str]:
    """The keys of the committed keyed part files of a run's table (see append(key=...))."""
    _check_table(table)
    return {p.name[len("part-"):-len(".parquet")] for p in _part_files(pathlib.Path(root), table, [_check_run_id(run_id)])}


def _part_files(root: pathlib.Path, table: str, run_ids: list[str] | None) -> list[pathlib.Path]:
    """Committed part files of `table`, ordered by run id then file time; temporary files are not listed."""
    base = root / table
    dirs = sorted(base.iterdir()) if run_ids is None and base.is_dir() else [base / r for r in sorted(run_ids or [])]
    return [p for d in dirs if d.is_dir() for p in sorted(d.glob("part-*.parquet"))]


def _set_aside(root: pathlib.Path, path: pathlib.Path, err: Exception) -> None:
    """Move an unreadable part file under <root>/corrupt/ and warn naming it."""
    dest = root / "corrupt" / path.relative_to(root)
    make_dirs(dest.parent)
    with contextlib.suppress(FileNotFoundError):   # another reader set it aside first
        os.replace(path, dest)
        fsync_dir(path.parent)
        fsync_dir(dest.parent)
    warnings.warn(f"results store: unreadable part file {path} ({err}); moved to {dest}", stacklevel=3)


def _file_version(table: pa.Table) -> Any:
    meta = table.schema.metadata or {}
    if _VERSION_KEY not in meta:
        return None
    found = meta[_VERSION_KEY].decode(errors="replace")
    return int(found) if found.isdigit() else found


def read(table: str = "measurements", root: str | os.PathLike = DEFAULT_ROOT,
         run_ids: Iterable[str] | str | None = None) -> pd.DataFrame:
    """Every stored row of `table` (of `run_ids`, default all runs), ordered by run then file time.

    An unreadable part file is moved to <root>/corrupt/ with a warning naming it; a part file of another
    schema version raises StoreError naming it. With nothing stored, an empty frame with the required columns.
    """
    _check_table(table)
    root = pathlib.Path(root)
    if run_ids is not None:
        run_ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        for run_id in run_ids:
            if not _manifest_path(run_id, root).is_file():
                raise StoreError(f"run {run_id!r}: no manifest at {_manifest_path(run_id, root)}")
    tables = []
    for path in _part_files(root, table, run_ids):
        try:
            data = pq.ParquetFile(path, page_checksum_verification=True).read()
        except FileNotFoundError:
            continue                                      # set aside by a concurrent reader
        except (pa.ArrowException, OSError) as err:
            _set_aside(root, path, err)
            continue
        versions = {_file_version(data), *(data.column("schema_version").unique().to_pylist()
                                           if "schema_version" in data.column_names else [None])}
        if versions != {SCHEMA_VERSION}:
            raise StoreError(f"{path}: schema_version {sorted(map(str, versions))}, this mallocbench reads "
                             f"{SCHEMA_VERSION}")
        tables.append(data)
    if not tables:
        return pd.DataFrame({name: pd.Series(dtype=object if kind in (_STR, _FLOATS) else float)
                             for name, kind in {"run_id": _STR, **_REQUIRED[table]}.items()}
                            | {"schema_version": pd.Series(dtype="int64")})
    try:
        return pa.concat_tables(tables, promote_options="permissive").to_pandas()
    except (pa.ArrowTypeError, pa.ArrowInvalid):          # an extra column of different types in different runs
        return pd.concat([t.to_pandas() for t in tables], ignore_index=True)


def corrupt_files(root: str | os.PathLike = DEFAULT_ROOT) -> list[pathlib.Path]:
    """The part files read() has set aside under <root>/corrupt/, sorted."""
    return sorted(p for p in (pathlib.Path(root) / "corrupt").rglob("*") if p.is_file())


def list_runs(root: str | os.PathLike = DEFAULT_ROOT) -> pd.DataFrame:
    """One row per manifest: run_id, status, started, finished, the row count of each table (columns named
    after the tables) and "problem" (NA, or what is wrong with the manifest or a part file); sorted by start."""
    root = pathlib.Path(root)
    rows = []
    for path in sorted((root / "runs").glob("*/manifest.json")):
        run_id, problems = path.parent.name, []
        try:
            manifest = read_manifest(run_id, root)
        except StoreError as err:
            manifest = {}
            problems.append(str(err))
        row = {"run_id": run_id, **{k: manifest.get(k) for k in ("status", "started", "finished")}}
        for table in TABLES:
            row[table] = 0
            for part in _part_files(root, table, [run_id]):
                try:
                    row[table] += pq.read_metadata(part).num_rows
                except (pa.ArrowException, OSError) as err:
                    problems.append(f"unreadable part file {part}: {err}")
        rows.append({**row, "problem": "; ".join(problems) or None})
    columns = ["run_id", "status", "started", "finished", *TABLES, "problem"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["started", "run_id"], na_position="last", ignore_index=True)
