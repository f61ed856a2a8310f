"""The instances mallocMuZero trains and is evaluated on, and the split between them.

Workload instances are committed extractions (`WORKLOAD_DIR`: the 14 `ci` workloads at
sizes ci, small and medium, written by `scripts/make_agent_instances.py`), so training and
evaluation see the same programs on every machine and JAX version. Synthetic
instances are rebuilt from (pattern, seed, buffers) by `agent.synthetic`.

A `Split` names each instance (`workload@size` or `synthetic-<pattern>-<seed>-<n>`)
as train or held out. The default holds out the AlphaTensor workloads, vit-encoder
and lstm-scan at every size, and synthetic seeds 1000 and up.
"""

from __future__ import annotations

import dataclasses
import gzip
import re
from pathlib import Path

from agent.data.synthesize import PATTERNS, synthetic
from harness.xla.instance import Instance

WORKLOAD_DIR = Path(__file__).resolve().parent / "instances"
HELD_OUT_WORKLOADS = ("alphatensor-", "vit-encoder", "lstm-scan")  # name prefixes
_SYNTHETIC = re.compile(r"^synthetic-(?P<pattern>[a-z]+)-(?P<seed>\d+)-(?P<n>\d+)$")


@dataclasses.dataclass(frozen=True)
class Split:
    """Names of the training and the held-out instances."""

    train: tuple[str, ...]
    held_out: tuple[str, ...]

    def __post_init__(self):
        both = set(self.train) & set(self.held_out)
        if both:
            raise ValueError(f"split: instances both trained on and held out: {', '.join(sorted(both))}")

    def to_json(self) -> dict:
        """The split as JSON-able lists."""
        return {"train": list(self.train), "held_out": list(self.held_out)}

    @classmethod
    def from_json(cls, value: dict) -> Split:
        """The split of `to_json`; ValueError naming what is wrong."""
        if not isinstance(value, dict):
            raise ValueError("split: expected an object with lists 'train' and 'held_out'")
        for key in ("train", "held_out"):
            names = value.get(key)
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ValueError(f"split: {key!r} must be a list of instance names")
        if not value["train"]:
            raise ValueError("split: 'train' is empty")
        return cls(tuple(value["train"]), tuple(value["held_out"]))


def workload_names() -> list[str]:
    """`workload@size` of every committed workload instance."""
    return sorted(p.name[: -len(".json.gz")] for p in WORKLOAD_DIR.glob("*.json.gz"))


def default_split(n_train_synthetic: int = 24, n_held_out_synthetic: int = 12) -> Split:
    """Workloads split by `HELD_OUT_WORKLOADS`; synthetic instances of every pattern, 40 to 200
    buffers, seeds below 1000 for training and from 1000 held out."""
    workloads = workload_names()
    held = [w for w in workloads if w.startswith(HELD_OUT_WORKLOADS)]
    train = [w for w in workloads if w not in held]
    train += _synthetic_names(0, n_train_synthetic)
    held += _synthetic_names(1000, n_held_out_synthetic)
    return Split(tuple(train), tuple(held))


def _synthetic_names(first_seed: int, count: int) -> list[str]:
    sizes = (40, 80, 120, 160, 200)
    return [f"synthetic-{PATTERNS[i % len(PATTERNS)]}-{first_seed + i}-{sizes[i % len(sizes)]}" for i in range(count)]


def read_split(path) -> Split:
    """The split in the JSON file at `path`, every name checked to load."""
    import json

    try:
        split = Split.from_json(json.loads(Path(path).read_text()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"split file {path}: {err}") from None
    for name in split.train + split.held_out:
        load(name)
    return split


def load(name: str) -> Instance:
    """The instance called `name` (a `workload@size` or a `synthetic-...` name)."""
    match = _SYNTHETIC.match(name)
    if match:
        if match["pattern"] not in PATTERNS:
            raise ValueError(f"instance {name!r}: unknown synthetic pattern {match['pattern']!r}")
        return synthetic(int(match["seed"]), int(match["n"]), pattern=match["pattern"])
    path = WORKLOAD_DIR / f"{name}.json.gz"
    if not path.is_file():
        raise ValueError(f"instance {name!r}: no such workload instance in {WORKLOAD_DIR} "
                         f"and not a synthetic-<pattern>-<seed>-<buffers> name")
    with gzip.open(path, "rt") as f:
        return Instance.from_json(f.read())
