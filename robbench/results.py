"""Result records, the single source of truth for leaderboards, and the results folder's layout.

One JSON file per evaluation run: ``results/<dataset>/<threat slug>/<name>/<run id>.json``, with
the verified adversarial examples beside it (``<run id>.adv.npz``). A model keeps every run under
a threat model (e.g. the board run and a later stronger attack), which boards combine per example;
a run never overwrites another (the run id holds a digest of its configuration). A name belongs
to one checkpoint: a record for another checkpoint under a name that a record already holds is
refused. Accuracies are fractions in [0, 1], stored as numbers. Files are written atomically
(temporary file in the same folder, then rename), so a reader never sees half a record; writers
and readers of a results folder also hold its lock file (``.robbench.lock``), so a leaderboard
render never sees half of an evaluation's records.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Literal

from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .config import NAME_PATTERN, Metadata, Normalization
from .errors import RobbenchError, exception_summary, quoted
from .evidence import AttackResult, Evidence, disagreements
from .threat_models import ThreatModel

SCHEMA_VERSION = 2
Fraction = float
LOCK_NAME = ".robbench.lock"
LOCK_TIMEOUT_S = 300  # writers hold the lock for milliseconds, readers for one read of the store
ADVERSARIAL_SUFFIX = ".adv.npz"


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class AttackSpec(Frozen):
    name: str = Field(pattern=NAME_PATTERN)
    config: dict[str, Any]


class EscalationOf(Frozen):
    """What an escalation run (``robbench.adaptive``) continues: it attacks only the examples those runs left."""

    continues: list[str] = Field(min_length=1)  # run ids, in this record's folder: the board run, then earlier rounds
    flags: list[str] = Field(min_length=1)  # the reliability flags whose escalations it runs
    round: int = Field(ge=1)


class RunConfig(Frozen):
    """Everything that decides an evaluation's numbers: built once, hashed for resuming, embedded in the record."""

    name: str = Field(pattern=NAME_PATTERN)
    dataset: str = Field(pattern=NAME_PATTERN)
    dataset_params: dict[str, Any] = Field(default_factory=dict)
    data_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")  # of the evaluated examples (x float32, y int64)
    threat_model: ThreatModel
    examples: Examples
    attacks: list[AttackSpec]  # none: a clean-accuracy-only run
    architecture: str
    architecture_kwargs: dict[str, Any] = Field(default_factory=dict)
    normalization: Normalization | None = None
    checkpoint: Checkpoint
    seed: int = Field(ge=0)
    batch_size: int = Field(gt=0)
    device: str
    versions: Versions
    escalation: EscalationOf | None = None  # None: a run of every example (not an escalation)

    def key(self) -> str:
        """SHA-256 of the configuration as canonical JSON: the identity of a run.

        Without an escalation the field is left out, so runs recorded before it existed keep their identity.
        """
        data = self.model_dump(mode="json", exclude={"escalation"} if self.escalation is None else None)
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @property
    def run_id(self) -> str:
        """File stem of the run: readable, and distinct for every distinct configuration."""
        attacks = "+".join(a.name for a in self.attacks) or "clean"
        return f"{attacks}-seed{self.seed}-{self.examples.start}-{self.examples.stop}-{self.key()[:10]}"


class AdversarialExamples(Frozen):
    """The file beside the record holding every broken example's verified adversarial input."""

    file: str = Field(pattern=r"^[a-z0-9][a-z0-9._+-]*\.adv\.npz$")  # in the record's folder
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    count: int = Field(ge=0)


class EvalRecord(Frozen):
    """One evaluation run. Totals are derived from ``evidence``; a record whose totals disagree is refused."""

    schema_version: Literal[2] = SCHEMA_VERSION
    config: RunConfig
    metadata: Metadata
    parameter_count: int = Field(ge=0)
    clean_accuracy: Fraction = Field(ge=0, le=1)
    robust_accuracy: Fraction = Field(ge=0, le=1)
    attacks: list[AttackResult]
    evidence: Evidence
    adversarial_examples: AdversarialExamples | None = None
    notes: list[str] = Field(default_factory=list)
    flags: list[Flag] = Field(default_factory=list)
    wall_time_s: float = Field(ge=0)
    timestamp: str

    @model_validator(mode="after")
    def _totals_match_evidence(self) -> "EvalRecord":
        if self.evidence.n != self.config.examples.count:
            raise ValueError(f"evidence covers {self.evidence.n} examples, the record {self.config.examples.count}")
        labels = [f"{a.name}/{s.name}" for a in self.attacks for s in a.stages]
        if labels != self.evidence.stages:
            raise ValueError("the attack stages differ from the evidence's stages")
        problems = disagreements(self.evidence, self.clean_accuracy, self.robust_accuracy, self.attacks)
        if problems:
            raise ValueError("totals disagree with the per-example evidence: " + "; ".join(problems))
        return self

    # the run's identity, read through the configuration
    name = property(lambda self: self.config.name)
    dataset = property(lambda self: self.config.dataset)
    dataset_params = property(lambda self: self.config.dataset_params)
    threat_model = property(lambda self: self.config.threat_model)
    examples = property(lambda self: self.config.examples)
    n_examples = property(lambda self: self.config.examples.count)
    architecture = property(lambda self: self.config.architecture)
    architecture_kwargs = property(lambda self: self.config.architecture_kwargs)
    checkpoint = property(lambda self: self.config.checkpoint)
    seed = property(lambda self: self.config.seed)
    batch_size = property(lambda self: self.config.batch_size)
    device = property(lambda self: self.config.device)
    versions = property(lambda self: self.config.versions)

    def attack_accuracy(self, name: str) -> float | None:
        return next((a.accuracy for a in self.attacks if a.name == name), None)

    def relative_path(self) -> Path:
        return run_folder(self.dataset, self.threat_model, self.name) / f"{self.config.run_id}.json"


# --------------------------------------------------------------------------------------------
# layout: the one place that names result, adversarial-example and progress files


def run_folder(dataset: str, threat: ThreatModel, name: str) -> Path:
    """``<dataset>/<threat slug>/<name>/``: every run of one model under one threat model."""
    return Path(dataset) / threat.slug / name


def adversarial_path(record_file: Path) -> Path:
    return record_file.with_name(record_file.name[: -len(".json")] + ADVERSARIAL_SUFFIX)


def state_path(results_dir: Path, config: RunConfig) -> Path:
    """Progress of a run in flight: ``.<run id>.state`` (never ``*.json``, so never taken for a record)."""
    return results_dir / run_folder(config.dataset, config.threat_model, config.name) / f".{config.run_id}.state"


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
    return RobbenchError(f"cannot write {quoted(path)} ({exc.strerror or exception_summary(exc)}); free space or choose another path")


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


def write_records(records: list[EvalRecord], results_dir: Path,
                  adversarial: "list[bytes | None] | None" = None) -> list[Path]:
    """Write an evaluation's records (and each one's adversarial-example file) together, under the lock.

    ``adversarial[i]``: the encoded file (``robbench.adversarial.encode``) that ``records[i]`` names,
    written first, so a record never names a file that is missing. Refuses, before writing
    anything, a record whose name another checkpoint holds.
    """
    adversarial = adversarial or [None] * len(records)
    paths = [record_path(results_dir, record) for record in records]
    with store_lock(results_dir):
        for record in records:
            check_name_owner(results_dir, record.name, record.checkpoint)
        for record, path, payload in zip(records, paths, adversarial):
            if (payload is None) != (record.adversarial_examples is None):
                raise ValueError("a record names an adversarial-example file exactly when one is given")
            if payload is not None:
                atomic_write_bytes(adversarial_path(path), payload)
            atomic_write_text(path, record_json(record))
    return paths


def write_record(record: EvalRecord, results_dir: Path, adversarial: bytes | None = None) -> Path:
    return write_records([record], results_dir, [adversarial])[0]


def check_name_owner(results_dir: Path, name: str, checkpoint: Checkpoint) -> None:
    """Refuse records under ``name`` for another source than the one its records hold (``robbench.ownership``)."""
    from .ownership import conflicting_owner

    held = []
    for path in sorted(results_dir.glob(f"*/*/{name}/*.json")):
        try:
            held.append(read_record(path))
        except RobbenchError:
            continue
    holder = conflicting_owner(name, checkpoint.sha256, checkpoint.repo, held)
    if holder is not None:
        raise RobbenchError(f"the name {quoted(name)} belongs to {holder}; give this model another name in model.yaml")


def read_record(path: Path) -> EvalRecord:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RobbenchError(f"{path}: not a readable JSON record ({exc})") from exc
    if isinstance(data, dict) and data.get("schema_version") == 1:
        raise RobbenchError(
            f"{path}: a schema 1 record (totals only, no per-example evidence); regenerate it with `robbench evaluate`"
        )
    try:
        return EvalRecord.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise RobbenchError(f"{path}: invalid record: {key + ': ' if key else ''}{message}") from exc


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
