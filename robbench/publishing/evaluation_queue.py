"""The evaluation queue a leaderboard maintainer runs: hub submissions, evaluated one at a time.

A request is one JSON file in the queue folder: weights pinned to a commit, the repo's model.yaml,
one threat model and radius, and a status (PENDING, RUNNING, FINISHED, or FAILED with the reason).
Files are written atomically. ``run`` holds the folder's run lock, so a request it finds RUNNING
was left by a run that crashed, and is evaluated again.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal

from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import RobbenchError, describe_validation_error, exception_summary, quoted
from ..hub import hub_spec
from ..hub_ref import parse_checkpoint_ref
from ..ownership import Claim, Ledger, name_key
from ..atomic_files import atomic_write_text, make_dirs

if TYPE_CHECKING:
    from ..evaluation import ProgressFactory
    from ..run_options import RunOptions

Status = Literal["PENDING", "RUNNING", "FINISHED", "FAILED"]
RUN_LOCK = ".run.lock"
ADD_LOCK = ".add.lock"
ADD_LOCK_TIMEOUT_S = 60  # adds hold it for one scan of the folder


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    checkpoint: str  # hf://models/ORG/REPO@<commit sha>/PATH
    spec: dict[str, Any]  # the repo's model.yaml, its checkpoint replaced by the pinned one
    threat_model: str
    eps: float
    pinned: str  # pin_digest() at add time: a request edited since is refused, never evaluated
    status: Status = "PENDING"
    reason: str | None = None  # why it FAILED
    results: list[str] = []  # the records a FINISHED request wrote
    submitted: str
    updated: str

    @property
    def key(self) -> tuple:
        """What makes two requests duplicates: (repo, commit, dataset, threat model, eps)."""
        ref = parse_checkpoint_ref(self.checkpoint)
        return ref.repo, ref.revision, self.spec["dataset"], self.threat_model, self.eps

    @property
    def edited(self) -> bool:
        """Whether what would run differs from what ``queue add`` pinned."""
        return pin_digest(self.checkpoint, self.spec, self.threat_model, self.eps) != self.pinned


def pin_digest(checkpoint: str, spec: dict[str, Any], threat_model: str, eps: float) -> str:
    """SHA-256 of everything a request evaluates: weights, model.yaml, threat model and radius."""
    pinned = {"checkpoint": checkpoint, "spec": spec, "threat_model": threat_model, "eps": eps}
    return hashlib.sha256(json.dumps(pinned, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def add(
    checkpoint: str, queue_dir: Path, threat_models: list[str] | None = None, eps: float | None = None,
    results_dir: Path = Path("results"),
) -> list[Request]:
    """Queue a hub model: one PENDING request per threat model, checked before anything is evaluated.

    Name, dataset and architecture come from the repo's model.yaml (``hub_spec``); the threat
    models default to its list, else the dataset's standard ones. Re-adding a FAILED request queues
    it again; any other duplicate is refused, and so is a name that a record in ``results_dir`` or a
    pending request holds for another source (``robbench.ownership``).
    """
    from ..data import check_hub_params, get_dataset
    from ..models import ARCHITECTURES
    from ..threat_models import select_threat_models

    spec = hub_spec(checkpoint)
    ref = parse_checkpoint_ref(spec.checkpoint)
    ARCHITECTURES.get(spec.architecture)  # only registered architectures: no code comes from the hub
    check_hub_params(spec.dataset, spec.dataset_kwargs)  # before the builder reads anything the spec names
    _check_name_free(spec.name, ref.repo, results_dir)
    dataset = get_dataset(spec.dataset, **spec.dataset_kwargs)
    threats = select_threat_models(dataset, threat_models or "all", eps, spec.threat_models)
    now = _now()
    pinned_spec = spec.model_dump(mode="json")
    new = [
        Request(
            id=f"{spec.name}-{threat.slug}-{ref.revision[:12]}", checkpoint=str(ref), spec=pinned_spec,
            threat_model=threat.name, eps=threat.eps, pinned=pin_digest(str(ref), pinned_spec, threat.name, threat.eps),
            submitted=now, updated=now,
        )
        for threat in threats
    ]
    make_dirs(queue_dir)
    with FileLock(str(queue_dir / ADD_LOCK), timeout=ADD_LOCK_TIMEOUT_S):
        queued = read_queue(queue_dir)
        clashes = [
            f"{old.id} ({old.status})" for old in queued for request in new
            if old.status != "FAILED" and (old.key == request.key or old.id == request.id)
        ]
        if clashes:
            raise RobbenchError(f"already queued: {', '.join(clashes)}; see `robbench queue status`")
        pending = [old for old in queued if old.status in ("PENDING", "RUNNING")]
        claims = Ledger(Claim(str(old.spec.get("name")), None, parse_checkpoint_ref(old.checkpoint).repo) for old in pending)
        reason = claims.refusal(Claim(spec.name, None, ref.repo))
        if reason is not None:
            holder = next(old for old in pending if name_key(str(old.spec.get("name"))) == name_key(spec.name))
            raise RobbenchError(f"{reason}: the queued request {holder.id}; rename the model in the repo's model.yaml")
        for request in new:
            _save(request, queue_dir)
    return new


def _check_name_free(name: str, repo: str, results_dir: Path) -> None:
    """Refuse a hub model whose name a record of another source holds: it would replace that record."""
    from ..store import name_ledger

    reason = name_ledger(results_dir).refusal(Claim(name, None, repo))
    if reason is not None:
        raise RobbenchError(f"{reason} (results ledger), not to hub repo {repo}; rename the model in the repo's model.yaml")


def _check_queue_dir(queue_dir: Path) -> None:
    """Refuse a file given as the queue folder: globbing it finds no request, which would read as an empty queue."""
    if queue_dir.exists() and not queue_dir.is_dir():
        raise RobbenchError(f"queue folder {quoted(queue_dir)} is a file, not a folder: pass the folder holding the "
                            "request files (--queue-dir)")


def read_queue(queue_dir: Path) -> list[Request]:
    """Every request, oldest first; none when the folder does not exist yet (nothing was queued)."""
    _check_queue_dir(queue_dir)
    requests = []
    for path in sorted(queue_dir.glob("*.json")):
        try:
            requests.append(Request.model_validate(json.loads(path.read_text(encoding="utf-8"))))
        except ValidationError as exc:
            raise RobbenchError(f"{describe_validation_error(path, exc, 'not a valid queue request')}; fix or remove it") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RobbenchError(f"{path}: not a valid queue request ({exception_summary(exc)}); fix or remove it") from exc
    return sorted(requests, key=lambda r: (r.submitted, r.id))


def run(queue_dir: Path, options: RunOptions, *, progress: ProgressFactory | None = None) -> Iterator[Request]:
    """Evaluate PENDING requests (and RUNNING ones a crash left) one by one; yield each as it ends.

    ``options`` were checked when they were built, so a bad one changes no request; the records go
    to its ``results_dir``, which a queue run needs.
    """
    from ..config import ModelSpec
    from ..data import check_hub_params
    from ..pipeline import evaluate
    from ..store import record_path

    results_dir = options.results_dir
    if results_dir is None:
        raise RobbenchError("a queue run writes records: its options need a results_dir", parameter="results_dir")
    _check_queue_dir(queue_dir)
    if not queue_dir.is_dir():
        raise RobbenchError(f"{queue_dir}: no such queue folder; add a model with `robbench queue add` first")
    lock = FileLock(str(queue_dir / RUN_LOCK), timeout=0)
    try:
        lock.acquire()
    except Timeout as exc:
        raise RobbenchError(f"another `robbench queue run` is working on {queue_dir}") from exc
    try:
        while request := next((r for r in read_queue(queue_dir) if r.status in ("PENDING", "RUNNING")), None):
            request = _save(request.model_copy(update={"status": "RUNNING", "reason": None, "updated": _now()}), queue_dir)
            try:
                if request.edited:
                    raise RobbenchError(
                        f"{request.id}.json was edited after `queue add` (it no longer matches its pinned digest "
                        f"{request.pinned[:12]}); add the model again"
                    )
                spec = ModelSpec(**request.spec)
                check_hub_params(spec.dataset, spec.dataset_kwargs)
                _check_name_free(spec.name, parse_checkpoint_ref(request.checkpoint).repo, results_dir)  # a record may have appeared since
                records = evaluate(  # saves progress in results_dir: a crashed run's rerun continues it
                    spec, options, threat_models=[request.threat_model], eps=request.eps, progress=progress,
                )
                paths = [record_path(results_dir, record) for record in records]
            except Exception as exc:  # one bad submission must not stop the queue; the reason is kept
                reason = str(exc) if isinstance(exc, RobbenchError) else f"{type(exc).__name__}: {exc}"
                update = {"status": "FAILED", "reason": reason.splitlines()[0] if reason else type(exc).__name__}
            else:
                update = {"status": "FINISHED", "results": [str(path) for path in paths]}
            yield _save(request.model_copy(update={**update, "updated": _now()}), queue_dir)
    finally:
        lock.release()


def _save(request: Request, queue_dir: Path) -> Request:
    atomic_write_text(queue_dir / f"{request.id}.json", json.dumps(request.model_dump(mode="json"), indent=2) + "\n")
    return request


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")
