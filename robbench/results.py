"""Result records: the single source of truth for leaderboards.

One JSON file per (model, dataset, threat model): ``results/<dataset>/<threat-model>/<name>.json``.
Accuracies are fractions in [0, 1], stored as numbers. Files are written atomically
(temporary file in the same folder, then rename), so a reader never sees half a record; writers
and readers of a results folder also hold its lock file (``.robbench.lock``), so a leaderboard
render never sees half of an evaluation's records.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Literal

from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .config import NAME_PATTERN, Metadata
from .errors import RobbenchError, first_line, quoted

SCHEMA_VERSION = 1
LOCK_NAME = ".robbench.lock"
LOCK_TIMEOUT_S = 300  # writers hold the lock for milliseconds, readers for one read of the store

Fraction = float


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ThreatModelRecord(Frozen):
    name: str = Field(pattern=NAME_PATTERN)
    norm: Literal["Linf", "L2"]
    eps: float = Field(gt=0)
    standard: bool


class Examples(Frozen):
    """Which examples were evaluated: ``split[start:stop]`` of a test set of ``test_size``."""

    split: Literal["test"] = "test"
    start: int = Field(ge=0)
    stop: int = Field(gt=0)
    test_size: int = Field(gt=0)

    @property
    def count(self) -> int:
        return self.stop - self.start

    @property
    def is_full(self) -> bool:
        return self.start == 0 and self.stop == self.test_size


class StageRecord(Frozen):
    name: str
    n_attacked: int = Field(ge=0)
    n_broken: int = Field(ge=0)
    accuracy: Fraction = Field(ge=0, le=1)


class AttackRecord(Frozen):
    name: str
    accuracy: Fraction = Field(ge=0, le=1)  # under this attack and every earlier one
    config: dict[str, Any]
    stages: list[StageRecord]


class Versions(Frozen):
    robbench: str
    torch: str
    pyautoattack: str
    python: str


class Flag(Frozen):
    """A reason to distrust a result (see ``robbench.flags``); shown next to it, never hiding it."""

    code: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")  # stable: leaderboards and scripts key on it
    message: str  # one line for people

    def __str__(self) -> str:
        return self.code


class Checkpoint(Frozen):
    path: str  # as model.yaml names it; for hub weights, hf://ORG/REPO/PATH@<commit sha>
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    repo: str | None = None  # hub weights only: ORG/REPO and the commit the revision resolved to
    revision: str | None = Field(default=None, pattern=r"^[0-9a-f]{40}$")


class EvalRecord(Frozen):
    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field(pattern=NAME_PATTERN)
    dataset: str = Field(pattern=NAME_PATTERN)
    dataset_params: dict[str, Any] = Field(default_factory=dict)
    threat_model: ThreatModelRecord
    examples: Examples
    n_examples: int = Field(gt=0)
    clean_accuracy: Fraction = Field(ge=0, le=1)
    robust_accuracy: Fraction = Field(ge=0, le=1)
    attacks: list[AttackRecord]
    architecture: str
    architecture_kwargs: dict[str, Any] = Field(default_factory=dict)
    parameter_count: int = Field(ge=0)
    metadata: Metadata
    checkpoint: Checkpoint
    seed: int
    batch_size: int = Field(gt=0)
    device: str
    versions: Versions
    notes: list[str] = Field(default_factory=list)
    flags: list[Flag] = Field(default_factory=list)
    wall_time_s: float = Field(ge=0)
    timestamp: str

    def attack_accuracy(self, name: str) -> float | None:
        return next((a.accuracy for a in self.attacks if a.name == name), None)

    def relative_path(self) -> Path:
        return Path(self.dataset) / threat_slug(self.threat_model) / f"{self.name}.json"


def threat_slug(threat: ThreatModelRecord) -> str:
    """Same naming as ``ThreatModel.slug``: ``linf``, or ``linf-eps0.2`` off the standard radius."""
    return threat.name if threat.standard else f"{threat.name}-eps{threat.eps:g}"


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def make_dirs(folder: Path) -> None:
    """``mkdir -p folder``; a file in the way or a refusing disk is the user's one-line error."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cannot_write(folder, exc) from exc


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename: all or nothing."""
    make_dirs(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _cannot_write(path, exc) from exc
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # a full disk, a quota, a path that is a folder
            raise _cannot_write(path, exc) from exc
        raise


def _cannot_write(path: Path, exc: OSError) -> RobbenchError:
    return RobbenchError(f"cannot write {quoted(path)} ({exc.strerror or first_line(exc)}); free space or choose another path")


def record_json(record: EvalRecord) -> str:
    return json.dumps(record.model_dump(mode="json"), indent=2, sort_keys=False) + "\n"


@lru_cache(maxsize=None)
def _lock(path: Path) -> FileLock:
    """One FileLock object per lock file in this process, so nested use in one thread is re-entrant."""
    return FileLock(str(path), timeout=LOCK_TIMEOUT_S)


@contextmanager
def store_lock(results_dir: Path) -> Iterator[None]:
    """Hold the results folder's lock (created if need be). The OS drops it when a process dies."""
    make_dirs(results_dir)
    path = results_dir.resolve() / LOCK_NAME
    try:
        with _lock(path):
            yield
    except Timeout as exc:
        raise RobbenchError(f"{results_dir} stayed locked by another robbench process for {LOCK_TIMEOUT_S}s; try again") from exc


def record_path(results_dir: Path, record: EvalRecord) -> Path:
    root = results_dir.resolve()
    path = (root / record.relative_path()).resolve()
    if root not in path.parents:  # the name pattern forbids this; belt and braces
        raise RobbenchError(f"refusing to write {path} outside the results folder {root}")
    return path


def write_records(records: list[EvalRecord], results_dir: Path) -> list[Path]:
    """Write an evaluation's records together, under the folder's lock: readers see all or none."""
    paths = [record_path(results_dir, record) for record in records]
    with store_lock(results_dir):
        for record, path in zip(records, paths):
            atomic_write_text(path, record_json(record))
    return paths


def write_record(record: EvalRecord, results_dir: Path) -> Path:
    return write_records([record], results_dir)[0]


def read_record(path: Path) -> EvalRecord:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RobbenchError(f"{path}: not a readable JSON record ({exc})") from exc
    try:
        return EvalRecord.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise RobbenchError(f"{path}: invalid record: {key}: {first['msg']}") from exc


def read_store(results_dir: Path) -> tuple[list[EvalRecord], list[str]]:
    """Every valid record under ``results_dir`` (sorted by path) and one problem line per invalid file.

    Read under the folder's lock when it can be taken; a folder nobody may write to needs none.
    """
    if results_dir.is_dir() and os.access(results_dir, os.W_OK):
        with store_lock(results_dir):
            return _read_all(results_dir)
    return _read_all(results_dir)


def _read_all(results_dir: Path) -> tuple[list[EvalRecord], list[str]]:
    records, problems = [], []
    for path in sorted(results_dir.rglob("*.json")):
        try:
            records.append(read_record(path))
        except RobbenchError as exc:
            problems.append(str(exc))
    return records, problems
