"""The evaluation queue a leaderboard maintainer runs: hub submissions, evaluated one at a time.

A request is one JSON file in the queue folder: weights pinned to a commit, the repo's model.yaml,
one threat model and radius, and a status (PENDING, RUNNING, FINISHED, or FAILED with the reason).
Files are written atomically. ``run`` holds the folder's run lock, so a request it finds RUNNING
was left by a run that crashed, and is evaluated again.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal

from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import RobbenchError
from .hub import hub_spec
from .hub_ref import parse_checkpoint_ref
from .results import atomic_write_text

if TYPE_CHECKING:
    from .evaluation import ProgressFactory

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


def add(checkpoint: str, queue_dir: Path, threat_models: list[str] | None = None, eps: float | None = None) -> list[Request]:
    """Queue a hub model: one PENDING request per threat model, checked before anything is evaluated.

    Name, dataset and architecture come from the repo's model.yaml (``hub_spec``); the threat
    models default to its list, else the dataset's standard ones. Re-adding a FAILED request queues
    it again; any other duplicate is refused.
    """
    from .data import get_dataset
    from .threat_models import get_threat_model, standard_threat_models

    spec = hub_spec(checkpoint)
    ref = parse_checkpoint_ref(spec.checkpoint)
    dataset = get_dataset(spec.dataset, **spec.dataset_kwargs)
    threats = [get_threat_model(dataset, name) for name in threat_models or spec.threat_models or sorted(standard_threat_models(dataset))]
    if eps is not None:
        if len(threats) != 1:
            raise RobbenchError("--eps applies to one threat model; pass --threat-model NAME as well")
        threats = [threats[0].with_eps(eps)]
    now = _now()
    new = [
        Request(
            id=f"{spec.name}-{threat.slug}-{ref.revision[:12]}", checkpoint=str(ref), spec=spec.model_dump(mode="json"),
            threat_model=threat.name, eps=threat.eps, submitted=now, updated=now,
        )
        for threat in threats
    ]
    queue_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(queue_dir / ADD_LOCK), timeout=ADD_LOCK_TIMEOUT_S):
        clashes = [
            f"{old.id} ({old.status})" for old in read_queue(queue_dir) for request in new
            if old.status != "FAILED" and (old.key == request.key or old.id == request.id)
        ]
        if clashes:
            raise RobbenchError(f"already queued: {', '.join(clashes)}; see `robbench queue status`")
        for request in new:
            _save(request, queue_dir)
    return new


def read_queue(queue_dir: Path) -> list[Request]:
    """Every request, oldest first."""
    requests = []
    for path in sorted(queue_dir.glob("*.json")):
        try:
            requests.append(Request.model_validate(json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValidationError) as exc:
            raise RobbenchError(f"{path}: not a valid queue request ({str(exc).splitlines()[0]}); fix or remove it") from exc
    return sorted(requests, key=lambda r: (r.submitted, r.id))


def run(
    queue_dir: Path,
    results_dir: Path,
    *,
    attacks: list[str],
    n_examples: int | None,
    batch_size: "int | str",
    device: str,
    seed: int,
    data_dir: str | None = None,
    progress: ProgressFactory | None = None,
) -> Iterator[Request]:
    """Evaluate PENDING requests (and RUNNING ones a crash left) one by one; yield each as it ends."""
    from .config import ModelSpec
    from .evaluation import evaluate
    from .results import record_path

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
                records = evaluate(
                    ModelSpec(**request.spec), threat_models=[request.threat_model], eps=request.eps, attacks=attacks,
                    n_examples=n_examples, batch_size=batch_size, device=device, seed=seed, data_dir=data_dir,
                    progress=progress, results_dir=results_dir,  # saves progress: a crashed run's rerun continues it
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
