"""A workload's program, built, traced and compiled once per process and extracted once per
compiled program: the one extraction path of the runs (cells, `mallocbench extract`, the suite).

The instance is cached on disk (`<root>/cache/extractions/<hash>.json.gz`) under the hash of
the compiled program's HLO text without its Python source locations, salted with the JAX
version, backend, instance schema and workload name, so a second night does not extract
again, and a change of compiler or program does.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import re
import time
from pathlib import Path
from typing import Any, Callable, Optional

import jax

import workloads
from harness.results import artifacts
from harness.xla.extraction import EXTRACTION_VERSION, from_compiled
from harness.xla.instance import SCHEMA_VERSION as INSTANCE_SCHEMA, Instance
from harness.xla.scoped_program import compile_scoped


@dataclasses.dataclass(frozen=True)
class Program:
    """A workload's function, arguments, scoped program and instance, with the hash of its compiled program."""

    fn: Callable[..., Any]
    args: tuple
    program: Any
    instance: Instance
    program_hash: str
    cached: bool
    compile_s: float  # seconds to compile the scoped program
    extract_s: float  # seconds to extract the instance (0 when it came from the cache)
    compiled: Any = None  # the compiled scoped program (its HLO text is what the HLO route annotates)


_LOCATION_TABLES = re.compile(r"^(?:FileNames|FunctionNames|FileLocations|StackFrames)\n(?:.+\n)*", re.M)
_SOURCE_INFO = re.compile(r' (?:stack_frame_id=\d+|source_(?:file="[^"]*"|(?:end_)?(?:line|column)=\d+))')


def program_hash(compiled_text: str, name: str) -> str:
    """The hash of a compiled program's HLO text without its Python source locations (which name the caller's
    lines, not the program), salted with the JAX version, backend, instance schema, extraction version and
    workload name."""
    text = _SOURCE_INFO.sub("", _LOCATION_TABLES.sub("", compiled_text))
    salt = f"{jax.__version__}|{jax.default_backend()}|{INSTANCE_SCHEMA}|{EXTRACTION_VERSION}|{name}\n"
    return hashlib.sha256((salt + text).encode()).hexdigest()[:32]


def _cache_path(root: str, program_hash: str) -> Path:
    return Path(root) / "cache" / "extractions" / f"{program_hash}.json.gz"


@functools.lru_cache(maxsize=8)
def load_program(name: str, size: str, root: Optional[str] = None) -> Program:
    """Build, trace and compile a workload at `size`; its instance comes from the extraction cache of
    the store at `root` when the compiled program hashes to a cached one (None: no disk cache)."""
    fn, args = workloads.get(name).build(size)
    t0 = time.perf_counter()
    program, compiled = compile_scoped(fn, args)
    compile_s = time.perf_counter() - t0
    key = program_hash(compiled.as_text(), f"{name}/{size}")
    path = _cache_path(root, key) if root is not None else None
    instance = _read_cached(path) if path is not None else None
    if instance is not None:
        return Program(fn, args, program, instance, key, cached=True, compile_s=compile_s, extract_s=0.0,
                       compiled=compiled)
    t0 = time.perf_counter()
    instance = from_compiled(compiled, f"{name}/{size}")
    extract_s = time.perf_counter() - t0
    if path is not None:
        artifacts.write_bytes(path, gzip.compress(instance.to_json().encode(), mtime=0))
    return Program(fn, args, program, instance, key, cached=False, compile_s=compile_s, extract_s=extract_s,
                   compiled=compiled)


def _read_cached(path: Path) -> Optional[Instance]:
    """The cached instance at `path`; None when it is missing or unreadable (then it is extracted again)."""
    try:
        return Instance.from_json(gzip.decompress(path.read_bytes()).decode())
    except (OSError, EOFError, ValueError):
        return None
