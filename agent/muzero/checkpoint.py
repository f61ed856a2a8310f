"""mallocMuZero checkpoints: a directory that restores a training run exactly.

    config.json            format version, TrainConfig, the data Split, the files below
                           with their SHA-256, and what the run had done (iterations, time)
    state-<hash>.msgpack   TrainState (params, optimizer state, counters, key), flax.serialization
    replay-<hash>.npz      the replay buffer (absent from shipped checkpoints: only resuming needs it)
    best-<hash>.msgpack    the parameters that scored best on the validation games (absent from shipped
                           checkpoints, whose state holds them)

Files are named by their content and written atomically (`harness.results.artifacts.write_bytes`),
`config.json` last; the files it no longer names are removed after it. A save killed at
any moment leaves the previous complete checkpoint. Loading checks each file's hash and
that the state matches the config's networks, and raises `CheckpointError` naming the
file and what is wrong.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path
from typing import Optional

import jax
import numpy as np
from flax import serialization

from agent.data.split import Split
from agent.muzero.replay import Replay
from agent.muzero.learner import TrainConfig, TrainState, init_state, reference_game
from agent.muzero.networks import Params
from harness.results.artifacts import write_bytes

FORMAT = 1
CONFIG = "config.json"
STATE, REPLAY, BEST = ("state", ".msgpack"), ("replay", ".npz"), ("best", ".msgpack")


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or does not match what it is loaded for."""


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint."""

    path: Path
    config: TrainConfig
    split: Split
    state: TrainState
    replay: Optional[Replay]
    info: dict  # what the run had done: iterations, elapsed seconds, ...
    best: Optional[Params] = None  # the parameters kept for their validation score, where the run kept any


def save(path, config: TrainConfig, split: Split, state: TrainState, replay: Optional[Replay],
         info: dict, best: Optional[Params] = None) -> Path:
    """Write a checkpoint directory at `path` (the replay and the best parameters only if given)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    blobs = {STATE: serialization.to_bytes(state._asdict())}
    if best is not None:
        blobs[BEST] = serialization.to_bytes(best)
    if replay is not None:
        buf = io.BytesIO()
        np.savez(buf, **replay.state())
        blobs[REPLAY] = buf.getvalue()
    files = {}
    for (stem, ext), data in blobs.items():
        digest = hashlib.sha256(data).hexdigest()
        name = f"{stem}-{digest[:16]}{ext}"
        write_bytes(path / name, data)
        files[stem] = {"file": name, "sha256": digest}
    config_json = {"format": FORMAT, "config": dataclasses.asdict(config), "split": split.to_json(),
                   "files": files, "info": info}
    write_bytes(path / CONFIG, (json.dumps(config_json, indent=1) + "\n").encode())
    named = {f["file"] for f in files.values()}
    for stem, ext in (STATE, REPLAY, BEST):
        for old in path.glob(f"{stem}-*{ext}"):
            if old.name not in named:
                old.unlink()
    return path


def load(path, with_replay: bool = True) -> Checkpoint:
    """Read the checkpoint at `path` (and its replay buffer, if it has one and `with_replay`)."""
    path = Path(path)
    meta = _read_config(path)
    config, split = _parse(path, meta)
    reference_game()  # built (and cached) outside the trace below, which only shapes the state
    target = jax.eval_shape(lambda: init_state(config))._asdict()
    networks = f"does not match the networks of its config (preset {config.preset!r})"
    state = TrainState(**_restore(path, STATE, meta, target, networks))
    best = _restore(path, BEST, meta, target["params"], networks) if BEST[0] in meta["files"] else None
    replay = None
    if with_replay and REPLAY[0] in meta["files"]:
        try:
            with np.load(io.BytesIO(_read_checked(path, REPLAY, meta))) as arrays:
                replay = Replay.from_state(arrays)
        except CheckpointError:
            raise
        except Exception as err:
            raise CheckpointError(f"{path / meta['files'][REPLAY[0]]['file']}: unreadable replay buffer: "
                                  f"{err}") from None
    return Checkpoint(path, config, split, state, replay, dict(meta.get("info", {})), best)


def read_config(path) -> tuple[TrainConfig, Split]:
    """The training config and split of the checkpoint at `path` (without its state)."""
    path = Path(path)
    return _parse(path, _read_config(path))


def _parse(path: Path, meta: dict) -> tuple[TrainConfig, Split]:
    try:
        unknown = set(meta["config"]) - {f.name for f in dataclasses.fields(TrainConfig)}
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        raw = dict(meta["config"])
        raw.update({k: tuple(raw[k]) for k in ("profiles", "budgets") if k in raw})
        return TrainConfig(**raw), Split.from_json(meta["split"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path / CONFIG}: bad config: {err}") from None


def _read_config(path: Path) -> dict:
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint directory")
    try:
        meta = json.loads((path / CONFIG).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not a checkpoint ({CONFIG} is missing)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path / CONFIG}: corrupt JSON: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path / CONFIG}: not a format-{FORMAT} mallocMuZero checkpoint")
    for key in ("config", "split", "files"):
        if not isinstance(meta.get(key), dict):
            raise CheckpointError(f"{path / CONFIG}: {key!r} is missing or not an object")
    return meta


def _restore(path: Path, kind: tuple[str, str], meta: dict, target, mismatch: str):
    """The checked file of `kind` restored onto the structure `target`; CheckpointError naming the file and
    `mismatch` when it does not fit."""
    try:
        return serialization.from_bytes(target, _read_checked(path, kind, meta))
    except CheckpointError:
        raise
    except Exception as err:  # msgpack and flax raise many types for a state of another shape
        raise CheckpointError(f"{path / meta['files'][kind[0]]['file']}: {mismatch}: {err}") from None


def _read_checked(path: Path, kind: tuple[str, str], meta: dict) -> bytes:
    entry = meta["files"].get(kind[0])
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or "/" in entry["file"]:
        raise CheckpointError(f"{path / CONFIG}: no valid {kind[0]!r} file entry")
    name = entry["file"]
    try:
        data = (path / name).read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path / name}: missing (listed in {CONFIG})") from None
    if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise CheckpointError(f"{path / name}: corrupt (its SHA-256 differs from the one in {CONFIG})")
    return data
