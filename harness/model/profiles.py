"""Hardware profiles: the figures the cost model reads for one device.

A profile is a small JSON file with the fields of `Profile`. Shipped profiles
live in `harness/profiles/<name>.json`; every numeric figure carries its source
(a datasheet or paper, or "assumption: ..." / "measurement: ...") in `sources`.
Loading a malformed file fails with a `ProfileError` that names the field.

A profile fitted to one machine's measurements (`mallocbench calibrate`) records that machine in
`fitted_on` and lives in `harness/profiles/fits/<name>@<cpu>.json`, one file per CPU model and core
count: its rates are that CPU's (a fit on a machine with an accelerator is keyed by the accelerator
instead, `<name>@nvidia-h200`, and loaded by that full name). Loading `<name>` picks the fit of this
host's CPU (the same model and cores, else the same model), else another CPU's fit with a warning that
names both; `<name>@<cpu>` loads one fit.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import json
import math
import os
import platform
import re
import warnings
from pathlib import Path
from typing import Any, Optional

BACKENDS = ("tpu", "gpu", "cpu")
MEMORY_MODELS = ("direct", "offload")
INT_FIGURES = ("fast_capacity_bytes", "granule_bytes")
FLOAT_FIGURES = ("fast_bandwidth", "slow_bandwidth", "copy_bandwidth", "flop_rate", "vector_flop_rate", "transcendental_rate",
                 "op_overhead_seconds")
# Figures a profile file may leave out (then the default below): each op kind's own rate, the saturation of
# matrix units (per matrix of a batched dot, by a convolution's input channels), a cache's size and bandwidth,
# a loop's per-iteration cost and its body ops' overhead, and a sort's per-compare cost.
# None means "the general figure" (`Profile.rate`, `_GENERAL`); a zero means no such cost or no such cache.
OPTIONAL_FIGURES = {"conv_flop_rate": None, "unfused_conv_flop_rate": None, "unfused_dot_flop_rate": None,
                    "unfused_dot_half_flops": None, "grouped_conv_flop_rate": None, "reduction_flop_rate": None,
                    "window_flop_rate": None, "move_bandwidth": None, "cache_bandwidth": None, "cache_bytes": 0.0,
                    "matmul_half_flops": 0.0, "batch_half_flops": 0.0, "matmul_parallel_gain": 0.0,
                    "matmul_parallel_flops": 0.0, "conv_half_flops": None, "conv_half_channels": 0.0,
                    "loop_iteration_seconds": 0.0, "loop_op_overhead_seconds": None, "program_overhead_seconds": 0.0,
                    "argument_seconds": 0.0, "sort_compare_seconds": 0.0}
NON_NEGATIVE = ("matmul_half_flops", "conv_half_flops", "loop_iteration_seconds", "program_overhead_seconds",
                "argument_seconds", "sort_compare_seconds", "cache_bytes", "conv_half_channels", "unfused_dot_half_flops",
                "batch_half_flops", "matmul_parallel_gain", "matmul_parallel_flops")  # zero: no such cost
# An optional figure left None -> the figure it falls back to (data movement is then memory time only).
_GENERAL = {"conv_flop_rate": "flop_rate", "unfused_conv_flop_rate": "conv_flop_rate",
            "reduction_flop_rate": "vector_flop_rate", "window_flop_rate": "reduction_flop_rate",
            "move_bandwidth": "fast_bandwidth", "cache_bandwidth": "fast_bandwidth",
            "conv_half_flops": "matmul_half_flops", "unfused_dot_flop_rate": "flop_rate",
            "unfused_dot_half_flops": "matmul_half_flops",
            "grouped_conv_flop_rate": "conv_flop_rate",
            "loop_op_overhead_seconds": "op_overhead_seconds"}
FIGURES = INT_FIGURES + FLOAT_FIGURES + tuple(OPTIONAL_FIGURES)  # the numeric figures; each given one needs a source

FITS = "fits"  # the folder of profiles fitted to one machine, beside the shipped profiles
_DEFAULTS = {"cpu": "cpu-local-fitted", "gpu": "h100-offload", "tpu": "tpu-v5e-offload"}  # by device kind
_GPU_BACKENDS = ("gpu", "cuda", "rocm")  # JAX's names of GPU backends and platforms


class ProfileError(ValueError):
    """A malformed profile or profile file, or an unknown profile name; the message names the field."""


@dataclasses.dataclass(frozen=True)
class FittedOn:
    """The machine whose runs a profile was fitted to (`harness.device.machine.Machine`'s fields)."""

    cpu_model: str
    cpu_cores: int  # logical cores
    machine_id: str
    description: str
    accelerator: str = ""  # the device kind of the machine's accelerator ("" on a machine without one)

    @property
    def cpu_key(self) -> str:
        """The file-name key of the fit's CPU, e.g. "intel-xeon-processor-2c" (`cpu_key`)."""
        return cpu_key(self.cpu_model, self.cpu_cores)

    @property
    def key(self) -> str:
        """The file-name key of the fit: its accelerator's where it has one (a GPU's or TPU's rates are the
        device's, e.g. "nvidia-h200"), else its CPU's (`cpu_key`)."""
        return _slug(self.accelerator) if self.accelerator else self.cpu_key


def _slug(model: str) -> str:
    """A device model as lower-case words joined by "-", trademarks and "CPU" and the clock after "@" dropped."""
    words = re.sub(r"\((?:r|tm)\)|\bcpu\b|@.*$", " ", model.lower())
    return "-".join(re.findall(r"[a-z0-9.]+", words))


def cpu_key(cpu_model: str, cpu_cores: int) -> str:
    """A CPU model and core count as a file-name key: lower case, trademarks dropped, "-<cores>c" appended."""
    return f"{_slug(cpu_model)}-{cpu_cores}c"


@functools.lru_cache(maxsize=1)
def host_cpu() -> tuple[str, int]:
    """(CPU model, logical cores) of the machine this process runs on (py-cpuinfo's brand; read once)."""
    import cpuinfo

    info = cpuinfo.get_cpu_info()
    model = str(info.get("brand_raw") or info.get("arch_string_raw") or platform.processor() or "unknown CPU")
    return model, os.cpu_count() or 0


@dataclasses.dataclass(frozen=True)
class Profile:
    """The figures of one device for the cost model (bandwidths in bytes/s, rates per second)."""

    name: str
    description: str
    backend: str  # "tpu" | "gpu" | "cpu"
    memory_model: str  # "direct" | "offload"
    fast_capacity_bytes: int
    granule_bytes: int
    fast_bandwidth: float
    slow_bandwidth: float
    copy_bandwidth: float  # slow <-> fast copies (the host link for offload)
    flop_rate: float  # dots and convolutions (matrix units: tensor cores, the MXU, FMA kernels)
    vector_flop_rate: float  # every other flop (elementwise, reductions)
    transcendental_rate: float
    op_overhead_seconds: float
    realizable: bool  # whether public JAX can realize a mapping on this backend
    sources: dict[str, str]  # figure -> where it comes from
    conv_flop_rate: float | None = None  # convolutions (None: flop_rate)
    unfused_conv_flop_rate: float | None = None  # convolutions XLA leaves unfused (on the CPU: Eigen's; None: conv_flop_rate)
    reduction_flop_rate: float | None = None  # reductions (None: vector_flop_rate)
    window_flop_rate: float | None = None  # windowed reductions: reduce-window, select-and-scatter (None: reduction_flop_rate)
    move_bandwidth: float | None = None  # bytes/s of ops that only move data: copy, transpose, pad... (None: fast_bandwidth)
    cache_bytes: float = 0.0  # an op's first this many fast bytes move at cache_bandwidth (a working set in cache; 0: none)
    cache_bandwidth: float | None = None  # bytes/s of those (None: fast_bandwidth)
    matmul_half_flops: float = 0.0  # flops of a dot or convolution that reaches half its kind's rate (saturating roofline)
    conv_half_flops: float | None = None  # the same for convolutions (None: matmul_half_flops)
    loop_iteration_seconds: float = 0.0  # a while loop's own seconds per iteration (condition, body dispatch)
    program_overhead_seconds: float = 0.0  # once per run: the call's launch (executor start)
    argument_seconds: float = 0.0  # once per run for each parameter and output buffer (argument handling)
    sort_compare_seconds: float = 0.0  # a sort's seconds per compare, beyond moving its bytes (0: sorts only move data)
    grouped_conv_flop_rate: float | None = None  # convolutions of more than one group (None: conv_flop_rate)
    unfused_dot_flop_rate: float | None = None  # dots XLA leaves unfused (on the CPU: Eigen's; None: flop_rate)
    unfused_dot_half_flops: float | None = None  # the saturation of those dots (None: matmul_half_flops)
    batch_half_flops: float = 0.0  # the saturation of each further matrix of a batched dot (0: a batch saturates as one)
    matmul_parallel_gain: float = 0.0  # a large dot or convolution runs up to 1 + this times faster (other threads
    # join it; 0: none)
    matmul_parallel_flops: float = 0.0  # the flops at which it gains half of that
    conv_half_channels: float = 0.0  # input channels per group at which a convolution reaches half its rate (0: none)
    loop_op_overhead_seconds: float | None = None  # per-op overhead of an op run many times per run, a loop
    # body's (None: op_overhead_seconds)
    fitted_on: Optional[FittedOn] = None  # the machine a fitted profile's measurements come from (None: none)

    @property
    def one_tier(self) -> bool:
        """Whether slow, fast and copy bandwidths are one (a one-tier device: every mapping costs the same)."""
        return self.slow_bandwidth == self.fast_bandwidth == self.copy_bandwidth

    def rate(self, figure: str) -> float:
        """An optional figure's value, its general figure where the profile leaves it None."""
        value = getattr(self, figure)
        return value if value is not None else self.rate(_GENERAL[figure]) if figure in _GENERAL else value

    def to_dict(self) -> dict[str, Any]:
        """The profile as a JSON-ready dict (the file format; optional figures left None are left out)."""
        data = dataclasses.asdict(self)
        data["sources"] = dict(self.sources)
        for name in OPTIONAL_FIGURES:
            if data[name] is None:
                del data[name]
        if data["fitted_on"] is None:
            del data["fitted_on"]
        elif not data["fitted_on"]["accelerator"]:
            del data["fitted_on"]["accelerator"]  # a CPU's fit: the files keep their keys
        return data

    def to_json(self) -> str:
        """The profile as JSON text (the file format)."""
        return json.dumps(self.to_dict(), indent=2) + "\n"


def from_dict(data: Any, where: str = "profile") -> Profile:
    """A validated Profile from parsed JSON; `where` prefixes error messages."""

    def fail(field: str, problem: str) -> ProfileError:
        return ProfileError(f"{where}: {field}: {problem}")

    if not isinstance(data, dict):
        raise ProfileError(f"{where}: expected a JSON object, got {type(data).__name__}")
    names = [f.name for f in dataclasses.fields(Profile)]
    extra = sorted(set(data) - set(names))
    if extra:
        raise fail(extra[0], f"unknown field (known: {', '.join(names)})")
    for name in names:
        if name not in data and name not in OPTIONAL_FIGURES and name != "fitted_on":
            raise fail(name, "missing")

    values: dict[str, Any] = {}
    for name in ("name", "description", "backend", "memory_model"):
        if not isinstance(data[name], str):
            raise fail(name, f"expected a string, got {type(data[name]).__name__}")
        values[name] = data[name]
    if not values["name"]:
        raise fail("name", "empty")
    if values["backend"] not in BACKENDS:
        raise fail("backend", f"{values['backend']!r} is not one of {', '.join(BACKENDS)}")
    if values["memory_model"] not in MEMORY_MODELS:
        raise fail("memory_model", f"{values['memory_model']!r} is not one of {', '.join(MEMORY_MODELS)}")

    for name in INT_FIGURES:
        v = data[name]
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise fail(name, f"expected a positive integer, got {v!r}")
        values[name] = v
    for name in FLOAT_FIGURES + tuple(OPTIONAL_FIGURES):
        if name in OPTIONAL_FIGURES and data.get(name) is None:
            values[name] = OPTIONAL_FIGURES[name]
            continue
        v = data[name]
        low_ok = name in NON_NEGATIVE
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or (v == 0 and not low_ok):
            raise fail(name, f"expected a {'non-negative' if low_ok else 'positive'} number, got {v!r}")
        values[name] = float(v)
    if values["fast_capacity_bytes"] % values["granule_bytes"]:
        raise fail("granule_bytes", f"{values['granule_bytes']} does not divide fast_capacity_bytes "
                                    f"{values['fast_capacity_bytes']}")

    if not isinstance(data["realizable"], bool):
        raise fail("realizable", f"expected true or false, got {type(data['realizable']).__name__}")
    if data["realizable"] and (values["backend"] == "cpu" or values["memory_model"] != "offload"):
        raise fail("realizable", "mappings are realized only with the offload model on gpu or tpu "
                                 f"(this is {values['memory_model']} on {values['backend']})")
    values["realizable"] = data["realizable"]

    sources = data["sources"]
    if not isinstance(sources, dict):
        raise fail("sources", f"expected an object, got {type(sources).__name__}")
    for key in sorted(set(sources) - set(FIGURES)):
        raise fail(f"sources.{key}", f"not a numeric figure (figures: {', '.join(FIGURES)})")
    for name in FIGURES:
        if name in OPTIONAL_FIGURES and values[name] == OPTIONAL_FIGURES[name] and name not in sources:
            continue  # left at its default: nothing to cite
        s = sources.get(name)
        if s is None:
            raise fail(name, "no source in sources (cite a datasheet or paper, or write 'assumption: ...')")
        if not isinstance(s, str) or not s.strip():
            raise fail(f"sources.{name}", "expected a non-empty string")
    values["sources"] = dict(sources)
    values["fitted_on"] = _fitted_on(data.get("fitted_on"), fail)
    return Profile(**values)


def _fitted_on(data: Any, fail) -> Optional[FittedOn]:
    """The `fitted_on` object of a profile file as a FittedOn (None when absent); `fail` makes the error."""
    if data is None:
        return None
    fields = [f.name for f in dataclasses.fields(FittedOn)]
    if not isinstance(data, dict) or not set(fields) - {"accelerator"} <= set(data) <= set(fields):
        raise fail("fitted_on", f"expected an object with the keys {', '.join(fields)} (accelerator optional), "
                                f"got {data!r}")
    for name in fields:
        kind = int if name == "cpu_cores" else str
        value = data.get(name, "")
        if isinstance(value, bool) or not isinstance(value, kind) or (not value and name != "accelerator"):
            what = kind.__name__ if name == "accelerator" else f"non-empty {kind.__name__}"  # "": no accelerator
            raise fail(f"fitted_on.{name}", f"expected a {what}, got {value!r}")
    return FittedOn(**data)


def validate_profile(profile: Profile) -> Profile:
    """Check a Profile as a file would be checked; returns it (normalised) or raises ProfileError."""
    return from_dict(profile.to_dict(), where=f"profile {profile.name!r}")


def _shipped() -> dict[str, Any]:
    """Shipped profile name -> its file (a Traversable); a fit is named "<name>@<cpu key>"."""
    folder = importlib.resources.files("harness") / "profiles"
    if not folder.is_dir():
        return {}
    files = [p for p in folder.iterdir() if p.name.endswith(".json")]
    if (folder / FITS).is_dir():
        files += [p for p in (folder / FITS).iterdir() if p.name.endswith(".json") and "@" in p.name]
    return {p.name[:-len(".json")]: p for p in files}


def profile_names() -> list[str]:
    """Names of the shipped profiles, sorted (a profile fitted to several machines once, without "@<cpu>")."""
    return sorted({name.split("@")[0] for name in _shipped()})


@functools.lru_cache(maxsize=None)
def _fit_for_host(name: str, fits: tuple[str, ...]) -> str:
    """Of the fits of profile `name` ("<name>@<cpu key>", sorted), the one of this host's CPU: the same model
    and cores, else the same model; else the first, with a warning naming its CPU and this one."""
    model, cores = host_cpu()
    exact = f"{name}@{cpu_key(model, cores)}"
    model_of = lambda fit: fit.rsplit("-", 1)[0]  # noqa: E731  (a key ends in "-<cores>c")
    chosen = exact if exact in fits else next((f for f in fits if model_of(f) == model_of(exact)), None)
    if chosen is None:
        chosen = fits[0]
        warnings.warn(f"profile {name!r} has no fit for this machine's CPU ({model}, {cores} cores; fits: "
                      f"{', '.join(f.split('@')[1] for f in fits)}): using {chosen!r}, whose times may be off by "
                      "tens of percent here; fit this machine with `mallocbench optimes` and `mallocbench "
                      "calibrate` (README)", stacklevel=3)
    return chosen


def _parse(text: str, where: str) -> Profile:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProfileError(f"{where}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    return from_dict(data, where)


def load_profile(name_or_path: str) -> Profile:
    """A shipped profile by name, or a profile file by path (contains '/' or ends in .json). A name with fits
    of one machine each (`FITS`) loads the fit of this host's CPU (see the module docstring)."""
    if "/" in name_or_path or name_or_path.endswith(".json"):
        path = Path(name_or_path)
        try:
            text = path.read_text()
        except OSError as e:
            raise ProfileError(f"{path}: cannot read: {e.strerror or e}") from None
        return _parse(text, str(path))
    shipped = _shipped()
    fits = tuple(sorted(n for n in shipped if n.startswith(f"{name_or_path}@")))
    name = _fit_for_host(name_or_path, fits) if fits and name_or_path not in shipped else name_or_path
    if name not in shipped:
        raise ProfileError(f"unknown profile {name_or_path!r}; valid profiles: {', '.join(profile_names())} "
                           f"(or a fit of one CPU: {', '.join(n for n in sorted(shipped) if '@' in n) or 'none'}; "
                           "or give a path to a .json file)")
    folder = f"profiles/{FITS}" if "@" in name else "profiles"
    return _parse(shipped[name].read_text(), f"{folder}/{name}.json")


def device_kind(backend: str) -> str:
    """A JAX backend or platform name ("cpu", "gpu", "cuda", "rocm", "tpu") as the kind of device a
    profile describes (one of BACKENDS); other names are returned lower-cased."""
    key = backend.lower()
    return "gpu" if key in _GPU_BACKENDS else key


def default_profile(backend: str) -> str:
    """The shipped profile name for a JAX backend ("cpu", "gpu"/"cuda"/"rocm", "tpu")."""
    key = device_kind(backend)
    if key not in _DEFAULTS:
        raise ProfileError(f"backend {backend!r}: no default profile (known backends: {', '.join(_DEFAULTS)}); "
                           f"pass a profile, one of: {', '.join(profile_names())}")
    return _DEFAULTS[key]
