"""The results store: its folder layout, lock, ledger of name owners, and the one guarded door to its files.

Layout: one JSON record per evaluation run, ``<results>/<dataset>/<threat slug>/<name>/<run id>.json``,
its verified adversarial examples beside it (``<run id>.adv.npz``), the ledger
``<results>/ledger.jsonl`` and the lock file ``<results>/.robbench.lock``. Writers and readers hold
the lock, so a render never sees half of an evaluation's records; every file is written atomically
(``robbench.atomic_files``).

Records and adversarial-example files arrive from strangers (pull requests, hub dataset repos), so
every read goes through ``robbench.untrusted_files``: a regular file (no FIFO, no device, no link to one) no
larger than its documented limit, checked before a byte is read. JSON is parsed with limits
(``parse_json``): no integer over ``MAX_INT_DIGITS`` digits, no nesting deeper than
``MAX_JSON_DEPTH``, no NaN/Infinity. Each failure is one line naming the file.

Ownership comes from the ledger (``robbench.ownership``), never from a record's fields: ``write_records``
refuses a record the ledger refuses and appends the claims of the ones it writes. A record of a
caller's own tensors (``Examples.user_supplied``) is never written, and one found in a folder is a
problem line, never a board row or a claim. Records that entered the folder some other way
(copied by hand, a pull request) are claimed after every ledger entry, in path order, when the
store is read; ``settle_ledger`` writes those claims down (``publish`` does, before it uploads).
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock, Timeout
from pydantic import ValidationError

from .atomic_files import atomic_write_text, make_dirs, write_files
from .errors import RobbenchError, describe_validation_error
from .forked import batched, map_forked
from .ownership import Claim, Ledger
from .results import EvalRecord, RunConfig
from .threat_models import ThreatModel
from .untrusted_files import read_untrusted

LOCK_NAME = ".robbench.lock"
LOCK_TIMEOUT_S = 300  # writers hold the lock for milliseconds, readers for one read of the store
LEDGER_NAME = "ledger.jsonl"
ADVERSARIAL_SUFFIX = ".adv.npz"

#: a 10,000-example record is about 20 KB; 4 MiB leaves room for notes and plugin attack configurations
MAX_RECORD_BYTES = 4 * 2**20
#: a 10,000-image CIFAR-10 record of a standard model (nearly every example broken) needs about 100 MB
MAX_ADVERSARIAL_BYTES = 512 * 2**20
#: one line per admitted source: 64 MiB is several hundred thousand claims
MAX_LEDGER_BYTES = 64 * 2**20
MAX_JSON_DEPTH = 64  # a record nests about 6 levels; plugin attack configurations a few more
#: why a record of a caller's own tensors (``robbench.benchmark(x=, y=)``) is never written or shown
USER_SUPPLIED_REFUSAL = ("evaluated on user-supplied tensors, not the dataset's test split, so no board can compare it "
                         "and nobody can verify it")
MAX_INT_DIGITS = 40  # any count or seed fits; a 5,000-digit integer is refused before Python converts it


# --------------------------------------------------------------------------------------------
# the guarded door


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text):,} digits (the limit is {MAX_INT_DIGITS})")
    return int(text)


def _no_constant(text: str) -> float:
    raise ValueError(f"{text} is not a JSON number")


def parse_json(data: bytes, where: str) -> Any:
    """JSON with limits: bounded integers and nesting, no NaN/Infinity; one line naming ``where`` otherwise."""
    try:
        value = json.loads(data.decode("utf-8"), parse_int=_bounded_int, parse_constant=_no_constant)
    except RecursionError as exc:
        raise RobbenchError(f"{where}: not a readable JSON record (nested deeper than {MAX_JSON_DEPTH} levels)") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise RobbenchError(f"{where}: not a readable JSON record ({str(exc).splitlines()[0][:200]})") from exc
    _check_depth(value, where)
    return value


def _check_depth(value: Any, where: str) -> None:
    """Refuse nesting deeper than ``MAX_JSON_DEPTH`` (pydantic and the boards recurse into it)."""
    level = [value]
    for depth in range(MAX_JSON_DEPTH + 1):
        level = [child for item in level if isinstance(item, (dict, list))
                 for child in (item.values() if isinstance(item, dict) else item)]
        if not level:
            return
    raise RobbenchError(f"{where}: not a readable JSON record (nested deeper than {MAX_JSON_DEPTH} levels)")


# --------------------------------------------------------------------------------------------
# layout: the one place that names result, adversarial-example and progress files


def run_folder(dataset: str, threat: ThreatModel, name: str) -> Path:
    """``<dataset>/<threat slug>/<name>/``: every run of one model under one threat model."""
    return Path(dataset) / threat.slug / name


def relative_record_path(record: EvalRecord) -> Path:
    return run_folder(record.dataset, record.threat_model, record.name) / f"{record.config.run_id}.json"


def adversarial_path(record_file: Path) -> Path:
    return record_file.with_name(record_file.name[: -len(".json")] + ADVERSARIAL_SUFFIX)


def state_path(results_dir: Path, config: RunConfig) -> Path:
    """Progress of a run in flight: ``.<run id>.state`` (never ``*.json``, so never taken for a record)."""
    return results_dir / run_folder(config.dataset, config.threat_model, config.name) / f".{config.run_id}.state"


def record_path(results_dir: Path, record: EvalRecord) -> Path:
    root = results_dir.resolve()
    path = (root / relative_record_path(record)).resolve()
    if root not in path.parents:  # the name pattern forbids this; belt and braces
        raise RobbenchError(f"refusing to write {path} outside the results folder {root}")
    return path


def record_json(record: EvalRecord) -> str:
    return json.dumps(record.model_dump(mode="json"), indent=2, sort_keys=False) + "\n"


# --------------------------------------------------------------------------------------------
# the lock


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


@contextmanager
def _read_lock(results_dir: Path) -> Iterator[None]:
    """The lock where it can be taken; a folder nobody may write to (a download, a checkout) needs none."""
    if results_dir.is_dir() and os.access(results_dir, os.W_OK):
        with store_lock(results_dir):
            yield
    else:
        yield


# --------------------------------------------------------------------------------------------
# records


def read_record(path: Path) -> EvalRecord:
    """One record, through the guarded door; any problem is a one-line ``RobbenchError`` naming the file."""
    data = parse_json(read_untrusted(path, MAX_RECORD_BYTES, "record"), str(path))
    if isinstance(data, dict) and data.get("schema_version") == 1:
        raise RobbenchError(
            f"{path}: a schema 1 record (totals only, no per-example evidence); regenerate it with `robbench evaluate`"
        )
    try:
        return EvalRecord.model_validate(data)
    except ValidationError as exc:
        raise RobbenchError(describe_validation_error(path, exc, "invalid record")) from exc


def claim_of(record: EvalRecord) -> Claim:
    checkpoint = record.checkpoint
    return Claim(record.name, checkpoint.sha256, checkpoint.repo, checkpoint.revision)


def write_records(records: list[EvalRecord], results_dir: Path,
                  adversarial: "list[bytes | None] | None" = None) -> list[Path]:
    """Write an evaluation's records (and each one's adversarial-example file) together, under the lock.

    ``adversarial[i]``: the encoded file (``robbench.adversarial.encode``) that ``records[i]`` names.
    Refuses, before writing anything, a record whose name the ledger gives another source; the
    ledger gains the records' claims first, then every file is written in one batch.
    """
    adversarial = adversarial or [None] * len(records)
    for record in records:
        if record.examples.user_supplied:
            raise RobbenchError(f"{record.name}: {USER_SUPPLIED_REFUSAL}; it stays in memory")
    paths = [record_path(results_dir, record) for record in records]
    with store_lock(results_dir):
        ledger = _effective_ledger(results_dir)[0]
        for record in records:
            _refuse(ledger, claim_of(record))
            ledger.admit(claim_of(record))
        files: dict[Path, bytes] = {}
        for record, path, payload in zip(records, paths, adversarial):
            if (payload is None) != (record.adversarial_examples is None):
                raise ValueError("a record names an adversarial-example file exactly when one is given")
            if payload is not None:
                files[adversarial_path(path)] = payload
            files[path] = record_json(record).encode("utf-8")
        write_ledger(results_dir, ledger)
        write_files(files)
    return paths


def write_record(record: EvalRecord, results_dir: Path, adversarial: bytes | None = None) -> Path:
    return write_records([record], results_dir, [adversarial])[0]


def check_name_owner(results_dir: Path, name: str, sha256: str | None, repo: str | None = None) -> None:
    """Refuse ``name`` for a source the store's ledger does not admit under it (``robbench.ownership``)."""
    _refuse(name_ledger(results_dir), Claim(name, sha256, repo))


def name_ledger(results_dir: Path) -> Ledger:
    """The ledger with the claims of records it lacks: what decides who may write under a name."""
    if not results_dir.is_dir():
        return Ledger()
    with _read_lock(results_dir):
        return _effective_ledger(results_dir)[0]


def _refuse(ledger: Ledger, claim: Claim) -> None:
    reason = ledger.refusal(claim)
    if reason is not None:
        raise RobbenchError(f"{reason} (results ledger); give this model another name in model.yaml")


# --------------------------------------------------------------------------------------------
# the ledger


def read_ledger(results_dir: Path) -> Ledger:
    """The claims written down in ``ledger.jsonl``; none when there is no ledger yet."""
    path = results_dir / LEDGER_NAME
    if not path.exists() and not path.is_symlink():
        return Ledger()
    claims = []
    for number, line in enumerate(read_untrusted(path, MAX_LEDGER_BYTES, "ledger").splitlines(), 1):
        data = parse_json(line, f"{path} line {number}")
        try:
            claims.append(Claim(**{key: data[key] for key in ("name", "sha256", "repo", "revision")}))
        except (TypeError, KeyError) as exc:
            raise RobbenchError(f"{path} line {number}: not a ledger entry (name, sha256, repo, revision); fix the ledger") from exc
    return Ledger(claims)


def write_ledger(results_dir: Path, ledger: Ledger) -> None:
    lines = (json.dumps(claim.as_json(), separators=(",", ":")) + "\n" for claim in ledger.claims)
    atomic_write_text(results_dir / LEDGER_NAME, "".join(lines))


def _record_files(results_dir: Path) -> list[Path]:
    return sorted(results_dir.rglob("*.json"))


#: from this many record files on, they are read and checked in forked processes (a leaderboard's thousands)
PARALLEL_READ_FROM = 2000
#: records per forked task
READ_BATCH = 500


def _read_records(paths: list[Path]) -> "list[EvalRecord | str]":
    """Each file's record, or the one-line problem that refused it, in the files' order."""
    def read_batch(batch: list[Path]) -> "list[EvalRecord | str]":
        read: "list[EvalRecord | str]" = []
        for path in batch:
            try:
                read.append(read_record(path))
            except RobbenchError as exc:
                read.append(str(exc))
        return read

    jobs = None if len(paths) >= PARALLEL_READ_FROM else 1
    return [item for batch in map_forked(read_batch, batched(paths, READ_BATCH), jobs) for item in batch]


@dataclass
class Snapshot:
    """What the store holds, read under its lock: records as the ledger judges them, and problem lines."""

    records: list[EvalRecord] = field(default_factory=list)  # on the boards: admitted, and each name's current weights
    problems: list[str] = field(default_factory=list)
    ledger: Ledger = field(default_factory=Ledger)
    files: list[Path] = field(default_factory=list)  # the file each of ``records`` was read from, in the same order


def _effective_ledger(results_dir: Path) -> tuple[Ledger, list[tuple[Path, EvalRecord]], list[str]]:
    """The written ledger plus the claims of records it lacks (in path order); the readable records; problems."""
    ledger = read_ledger(results_dir)
    readable, problems = [], []
    paths = _record_files(results_dir)
    for path, record in zip(paths, _read_records(paths)):
        if isinstance(record, str):
            problems.append(record)
        elif record.examples.user_supplied:
            problems.append(f"{path}: {USER_SUPPLIED_REFUSAL}; not shown, and no claim on its name")
        else:
            readable.append((path, record))
    for path, record in readable:
        if ledger.refusal(claim_of(record)) is None:
            ledger.admit(claim_of(record))
    return ledger, readable, problems


def read_snapshot(results_dir: Path) -> Snapshot:
    """Every record the ledger admits, only the current weights of each name per threat model, and problems.

    A record the ledger refuses (another source's weights under a held name, a look-alike name) is
    a problem line. Where a hub repo's later commit has runs in a run folder, its earlier commits'
    runs there are left out: the repo replaced them.
    """
    with _read_lock(results_dir):
        ledger, readable, problems = _effective_ledger(results_dir)
    admitted: dict[Path, list[tuple[Path, EvalRecord]]] = {}
    for path, record in readable:
        reason = ledger.refusal(claim_of(record))
        if reason is not None:
            problems.append(f"{path}: {reason} (results ledger); not shown")
        else:
            admitted.setdefault(run_folder(record.dataset, record.threat_model, record.name), []).append((path, record))
    shown: list[tuple[Path, EvalRecord]] = []
    for runs in admitted.values():
        current = ledger.current_sha256(runs[0][1].name, {r.checkpoint.sha256 for _, r in runs})
        shown += [(path, r) for path, r in runs if r.checkpoint.sha256 == current]
    return Snapshot([r for _, r in shown], problems, ledger, [path for path, _ in shown])


def read_store(results_dir: Path) -> tuple[list[EvalRecord], list[str]]:
    """``read_snapshot``'s records and problem lines."""
    snapshot = read_snapshot(results_dir)
    return snapshot.records, snapshot.problems


def settle_ledger(results_dir: Path) -> Ledger:
    """Write down the claims of records the ledger lacks (in path order); refuse a store holding a refused record."""
    with store_lock(results_dir):
        ledger, readable, problems = _effective_ledger(results_dir)
        problems += [f"{path}: {ledger.refusal(claim_of(r))}" for path, r in readable if ledger.refusal(claim_of(r))]
        if problems:
            raise RobbenchError(f"{problems[0]}; fix or remove it" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
        write_ledger(results_dir, ledger)
    return ledger
