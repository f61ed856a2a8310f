"""Files of the harness written so that a crash never leaves a half-written one: run artifacts
(instances and mappings, gzipped when named .gz), reports, checkpoints, calibration files.

Every file is written to a fsynced temporary file in its directory, renamed into place,
and the directory fsynced (`write_atomic`); the results store writes its part files and
manifests the same way.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import pathlib
import tempfile
from collections.abc import Callable
from typing import Any


def fsync_dir(path: pathlib.Path) -> None:
    """fsync a directory, so that the names created in it survive a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: pathlib.Path) -> None:
    """mkdir -p, fsyncing the parent of every directory it creates."""
    if path.is_dir():
        return
    make_dirs(path.parent)
    with contextlib.suppress(FileExistsError):
        path.mkdir()
        fsync_dir(path.parent)


def write_atomic(path: pathlib.Path, write: Callable[[Any], None], exclusive: bool = False) -> None:
    """Write `path` through a fsynced temporary file and a rename; `exclusive` raises FileExistsError if it exists."""
    make_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            os.link(tmp, path)
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a file atomically (fsynced temporary file, rename, fsynced directory): the project's one writer."""
    write_atomic(pathlib.Path(path), lambda f: f.write(data))


def write_text(path: str | os.PathLike, text: str, root: str | os.PathLike) -> str:
    """Write a run artifact atomically (gzipped for .gz); returns its path relative to the store `root`."""
    path = pathlib.Path(path)
    data = text.encode()
    write_bytes(path, gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return str(path.relative_to(root))


def read_text(root: str | os.PathLike, relative: str) -> str:
    """Text of a run artifact at `relative` to the store `root` (gunzipped for .gz)."""
    path = pathlib.Path(root) / relative
    data = path.read_bytes()
    return (gzip.decompress(data) if path.suffix == ".gz" else data).decode()
