"""Demonstrations for the agent's warm start: the best known mapping of each training game.

One gzip JSON file per (profile, budget) under `DEMO_DIR`, written by
`scripts/make_agent_demos.py`: per instance the demo mapping's buffer offsets,
where it comes from (`SOURCES`: CP-SAT's proven optimum, CP-SAT's best within
its time limit where that simulates faster than xla-msa's, else xla-msa's), its
simulated seconds and xla-msa's, CP-SAT's proven lower bound and time limit.

A demo is a mapping: it stays a valid demonstration as long as its instance's
buffers (sizes, live ranges, alias groups) are the ones it was made for, so each
entry carries a hash of them (`buffers_sha256`), and `load` raises a `DemoError`
naming the file and the instance when an entry is malformed, made for other
buffers, or not a valid mapping within the budget. Its recorded seconds are only
as current as the cost model and profile it was made under: the file carries
their fingerprint (`fingerprint`: the profile's figures and the simulated seconds
of fixed probe mappings), and a loaded `DemoSet` says in `drift` what changed
since, so that a user rescores the demos (the learner's `teacher` re-simulates
each one and keeps it only where it still beats xla-msa's) or remakes them.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import math
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from agent.data.split import load as load_instance
from agent.data.synthesize import synthetic
from harness.model.costmodel import Candidates
from harness.model.mapping import Mapping, MappingError, validate
from harness.model.profiles import Profile
from harness.model.simulator import simulate
from harness.results import artifacts
from harness.xla.instance import Instance

FORMAT = "mallocbench-demos/2"
DEMO_DIR = Path(__file__).resolve().parent / "demos"
SOURCES = ("cpsat-optimal", "cpsat-best", "xla-msa")
PROBE_TOLERANCE = 1e-5  # relative: the probe's seconds may differ by float32 rounding, not by a model change
_PROBE = ("training", 0, 40)  # the synthetic instance the probe mappings are simulated on


class DemoError(ValueError):
    """A demonstration file that is missing, malformed, stale or not valid; the message names file and instance."""


@dataclasses.dataclass(frozen=True)
class Demo:
    """The best known mapping of one game: buffer -> byte offset of its fast buffers; `source` one of `SOURCES`;
    `demo_seconds` and `xla_msa_seconds` the simulated seconds of it and of xla-msa's mapping; `bound_seconds`
    CP-SAT's proven lower bound on every mapping of the game; `time_limit_seconds` CP-SAT's limit;
    `buffers_sha256` the hash (`buffers_sha256`) of the buffers of the instance it was computed on; `optimal` whether the
    demo is proven optimal (also where xla-msa's mapping is, its source then xla-msa)."""

    instance: str
    offsets: dict[int, int]
    source: str
    demo_seconds: float
    xla_msa_seconds: float
    bound_seconds: float
    time_limit_seconds: float
    buffers_sha256: str
    optimal: bool

    @property
    def gain(self) -> float:
        """xla-msa's seconds over the demo's (>= 1: the demo is never slower)."""
        return self.xla_msa_seconds / self.demo_seconds

    def mapping(self, instance: Instance, budget: float) -> Mapping:
        """The demo as a harness Mapping of `instance` (policy name: its source)."""
        return Mapping(dict(self.offsets), len(instance.buffers), instance.name, self.source, budget)

    def candidate_offsets(self, cands: Candidates) -> np.ndarray:
        """[cands.n] byte offset of each candidate (alias group) placed fast, -1 for slow ones
        (`cands` from `harness.model.costmodel.candidates` of the demo's instance)."""
        out = np.full(cands.n, -1, dtype=np.int64)
        for b, off in self.offsets.items():
            out[cands.of_buffer[b]] = off
        return out


@dataclasses.dataclass(frozen=True)
class DemoSet:
    """The demonstrations of one (profile, budget), by instance name, the fingerprint they were made under and,
    once loaded, `drift`: what changed since then (empty: the recorded seconds are the current model's)."""

    profile: str
    budget: float
    fingerprint: dict
    demos: tuple[Demo, ...]
    drift: tuple[str, ...] = ()

    def by_instance(self) -> dict[str, Demo]:
        """Instance name -> its demo."""
        return {d.instance: d for d in self.demos}


def demo_path(profile: str, budget: float, directory: Path = DEMO_DIR) -> Path:
    """The file of the demos of `profile` (a name) at `budget`: ``<profile>@<budget>.json.gz``."""
    return Path(directory) / f"{profile}@{budget:g}.json.gz"


def buffers_sha256(instance: Instance) -> str:
    """Hex SHA-256 of what a mapping of `instance` depends on: each buffer's bytes, live range and alias group
    (its ops' costs left out: a new cost count leaves every mapping valid)."""
    rows = [(b.id, b.bytes, b.start, b.end, b.alias_group) for b in instance.buffers]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def fingerprint(profile: Profile) -> dict:
    """What the demos of `profile` depend on besides the instance: the hash of the profile's figures and the
    simulated seconds (the one cost model) of all-slow and all-fast on a fixed synthetic instance."""
    probe = synthetic(_PROBE[1], _PROBE[2], pattern=_PROBE[0])
    all_fast = Mapping({b.id: 0 for b in probe.buffers}, len(probe.buffers), probe.name, "probe", None)
    all_slow = Mapping({}, len(probe.buffers), probe.name, "probe", None)
    figures = json.dumps(profile.to_dict(), sort_keys=True)
    return {"profile_sha256": hashlib.sha256(figures.encode()).hexdigest(),
            "probe_seconds": [simulate(probe, m, profile) for m in (all_slow, all_fast)]}


def save(demos: DemoSet, directory: Path = DEMO_DIR, keep_others: bool = False) -> Path:
    """Write `demos` to its file under `directory` (created if missing); the path. With `keep_others`, the
    entries of the file already there for instances `demos` does not name are kept as they are, each with
    the fingerprint it was made under (a file that does not read keeps nothing and is replaced)."""
    path = demo_path(demos.profile, demos.budget, directory)
    kept = _kept_entries(path, {d.instance for d in demos.demos}) if keep_others else {}
    entries = {**kept, **{d.instance: _demo_json(d) for d in demos.demos}}
    body = {"format": FORMAT, "profile": demos.profile, "budget": demos.budget, "fingerprint": demos.fingerprint,
            "instances": dict(sorted(entries.items()))}
    artifacts.write_bytes(path, gzip.compress(json.dumps(body, sort_keys=True).encode(), mtime=0))
    return path


def _kept_entries(path: Path, remade: set) -> dict:
    """Entries of the file at `path` for instances not in `remade`, each carrying its own fingerprint."""
    try:
        body = _read(path)
    except DemoError:
        return {}
    entries = body.get("instances") if isinstance(body.get("instances"), dict) else {}
    return {name: {"fingerprint": body.get("fingerprint"), **entry}
            for name, entry in entries.items() if name not in remade and isinstance(entry, dict)}


def _demo_json(d: Demo) -> dict:
    body = dataclasses.asdict(d)
    del body["instance"]
    body["offsets"] = {str(b): off for b, off in sorted(d.offsets.items())}
    return body


def load(profile: Profile, budget: float, directory: Path = DEMO_DIR,
         instances: Optional[Callable[[str], Instance]] = None) -> DemoSet:
    """The demos of `profile` at `budget`, each checked against its instance (`instances(name)`, default
    `agent.data.split.load`): made for its buffers, a valid mapping within the budget. DemoError naming the
    file (and the instance) when the file is missing, malformed, of another format, profile or budget, or made
    for other buffers (rerun scripts/make_agent_demos.py). Made under other profile figures or another cost
    model, the set loads with that said in its `drift`."""
    path = demo_path(profile.name, budget, directory)
    body = _read(path)
    if body.get("profile") != profile.name or body.get("budget") != budget:
        raise DemoError(f"{path}: holds profile {body.get('profile')!r} at budget {body.get('budget')!r}, "
                        f"expected {profile.name!r} at {budget!r}")
    get = instances or load_instance
    entries = body.get("instances")
    if not isinstance(entries, dict) or not entries:
        raise DemoError(f"{path}: 'instances' must be a non-empty object of instance name -> demo")
    demos = tuple(_demo(path, name, entry, get, profile, budget) for name, entry in entries.items())
    return DemoSet(profile.name, budget, body["fingerprint"], demos, _drift_of(body, profile))


def model_drift(profile: Profile, budget: float, directory: Path = DEMO_DIR) -> tuple[str, ...]:
    """What changed since the demos of `profile` at `budget` were made (`DemoSet.drift`, without checking each
    demo against its instance); empty when nothing did or there is no file. DemoError when the file does not read."""
    path = demo_path(profile.name, budget, directory)
    return _drift_of(_read(path), profile) if path.exists() else ()


def _drift_of(body: dict, profile: Profile) -> tuple[str, ...]:
    """The drift of a read file `body` (its own fingerprint and each kept entry's) against `profile` now."""
    entries = body.get("instances") if isinstance(body.get("instances"), dict) else {}
    made_under = [body.get("fingerprint")] + [e["fingerprint"] for e in entries.values()
                                              if isinstance(e, dict) and "fingerprint" in e]
    current = fingerprint(profile)
    return tuple(dict.fromkeys(d for f in made_under for d in _drift(f, current)))


def _read(path: Path) -> dict:
    if not path.is_file():
        raise DemoError(f"{path}: no demonstrations for this profile and budget (make them with "
                        f"scripts/make_agent_demos.py)")
    try:
        with gzip.open(path, "rt") as f:
            body = json.load(f)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DemoError(f"{path}: unreadable ({type(err).__name__}: {err})") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        found = body.get("format") if isinstance(body, dict) else type(body).__name__
        raise DemoError(f"{path}: format {found!r}, this mallocbench reads {FORMAT!r}")
    return body


def _drift(stored, current: dict) -> tuple[str, ...]:
    """What differs between the fingerprint `stored` in a file and the `current` one (the probe's seconds
    within PROBE_TOLERANCE): other profile figures, another cost model; empty when neither."""
    stored = stored if isinstance(stored, dict) else {}
    drift = []
    if stored.get("profile_sha256") != current["profile_sha256"]:
        drift.append("made under other profile figures")
    probe = stored.get("probe_seconds")
    same = isinstance(probe, list) and len(probe) == len(current["probe_seconds"]) and all(
        isinstance(a, (int, float)) and math.isclose(a, b, rel_tol=PROBE_TOLERANCE)
        for a, b in zip(probe, current["probe_seconds"]))
    if not same:
        drift.append(f"made under another cost model (probe seconds {probe!r}, now {current['probe_seconds']!r})")
    return tuple(drift)


def _demo(path: Path, name: str, entry, get: Callable[[str], Instance], profile: Profile, budget: float) -> Demo:
    """One entry as a Demo, checked against its instance; DemoError naming file and instance."""
    where = f"{path}: instance {name!r}"
    try:
        demo = Demo(name, {int(b): int(off) for b, off in entry["offsets"].items()}, entry["source"],
                    *(float(entry[k]) for k in ("demo_seconds", "xla_msa_seconds", "bound_seconds",
                                                "time_limit_seconds")), str(entry["buffers_sha256"]),
                    entry["optimal"])
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise DemoError(f"{where}: malformed entry ({type(err).__name__}: {err})") from None
    if not isinstance(demo.optimal, bool):
        raise DemoError(f"{where}: optimal must be true or false, got {demo.optimal!r}")
    if demo.source not in SOURCES:
        raise DemoError(f"{where}: source {demo.source!r}; valid sources: {', '.join(SOURCES)}")
    times = (demo.demo_seconds, demo.xla_msa_seconds, demo.bound_seconds)
    if not all(math.isfinite(t) and t > 0 for t in times) or demo.demo_seconds > demo.xla_msa_seconds:
        raise DemoError(f"{where}: seconds must be finite and positive, the demo's at most xla-msa's; got "
                        f"demo {demo.demo_seconds}, xla-msa {demo.xla_msa_seconds}, bound {demo.bound_seconds}")
    try:
        instance = get(name)
    except ValueError as err:
        raise DemoError(f"{where}: {err}") from None
    if buffers_sha256(instance) != demo.buffers_sha256:
        raise DemoError(f"{where}: stale: made for other buffers than the instance's now; rerun "
                        f"scripts/make_agent_demos.py")
    try:
        validate(instance, demo.mapping(instance, budget), profile, budget)
    except MappingError as err:
        raise DemoError(f"{where}: not a valid mapping: {err}") from None
    return demo
