"""Checkpoints on the Hugging Face Hub: ``hf://ORG/REPO/PATH.safetensors@REVISION``, pinned and verified.

huggingface_hub checks only the length of what it downloads, so robbench resolves the revision to
a commit sha, reads the file's digest from the hub's tree listing (the LFS SHA-256, or the git blob
id of a small file) and compares it, and any ``sha256:`` pin, with a digest of the bytes received.
Only ``*.safetensors``, ``model.yaml`` and ``config.json`` are ever fetched, one named file at a
time, so pickles and code in a repo are never downloaded. Endpoint, token, cache and offline mode
follow huggingface_hub's environment variables (HF_ENDPOINT, HF_TOKEN, HF_HUB_CACHE, HF_HUB_OFFLINE).
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Iterator

import httpx2
import yaml
from huggingface_hub import CommitOperationAdd, HfApi, constants, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
    RevisionResolutionError,
)
from huggingface_hub.hf_api import RepoFile

from .errors import RobbenchError
from .hub_ref import SPEC_FILE, WEIGHTS_FILE, HubRef, is_hub_ref

if TYPE_CHECKING:
    from .config import ModelSpec
    from .results import EvalRecord


@dataclass(frozen=True)
class HubFile:
    """A verified local copy of a hub file, and where it came from."""

    local_path: Path
    ref: HubRef  # pinned: revision is the 40-character commit sha
    sha256: str


def offline() -> bool:
    return constants.is_offline_mode()


def resolve(ref: HubRef) -> HubRef:
    """The same file at the commit sha ``ref.revision`` names now (from the local cache when offline)."""
    with _hub_errors(ref):
        resolved = HfApi().resolve_revision(ref.repo, revision=ref.revision, local_files_only=offline())
    return replace(ref, revision=resolved.resolved)


def fetch(ref: HubRef, pin: str | None = None) -> HubFile:
    """Download one file at its resolved commit and verify its digest; a mismatch is an error."""
    pinned = resolve(ref)
    expected = None if offline() else hub_digest(pinned)
    with _hub_errors(pinned):
        local = Path(hf_hub_download(pinned.repo, pinned.path, revision=pinned.revision))
    if expected is None:  # offline: the cache names each blob after the digest the hub sent with it
        blob = Path(os.path.realpath(local))
        expected = blob.name if blob != local else pin
        if expected is None:
            raise RobbenchError(f"{pinned}: the hub cache keeps no digest of this file (no symlinks); pin sha256 in model.yaml")
    sha256 = _verify(local, expected, pinned)
    if pin is not None and sha256 != pin:
        raise RobbenchError(f"{pinned}: SHA-256 is {sha256}, model.yaml pins {pin}; the weights on the hub changed")
    return HubFile(local, pinned, sha256)


def hub_digest(ref: HubRef) -> str:
    """The file's LFS SHA-256 (or git blob id for a non-LFS file) from the hub's tree listing."""
    folder = str(PurePosixPath(ref.path).parent)
    with _hub_errors(ref):
        for entry in HfApi().list_repo_tree(ref.repo, None if folder == "." else folder, revision=ref.revision):
            if isinstance(entry, RepoFile) and entry.path == ref.path:
                return entry.lfs.sha256 if entry.lfs else entry.blob_id
    raise RobbenchError(f"{ref}: hub repo {ref.repo} has no file {ref.path} at that commit; check the path")


def _verify(local: Path, expected: str, ref: HubRef) -> str:
    """SHA-256 of ``local``, after checking it against ``expected`` (a SHA-256 or a git blob id)."""
    from .digests import file_digest

    sha256 = file_digest(local)
    actual = sha256 if len(expected) == 64 else _git_blob_id(local)
    if actual != expected:
        blob = Path(os.path.realpath(local))
        local.unlink(missing_ok=True)  # drop the bad copy, so the next try downloads it again
        blob.unlink(missing_ok=True)
        raise RobbenchError(f"{ref}: received bytes hash to {actual}, the hub says {expected}; refusing the download")
    return sha256


def _git_blob_id(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@contextmanager
def _hub_errors(ref: HubRef | str) -> Iterator[None]:
    """huggingface_hub's exceptions (multi-line, tracebacks) as one-line RobbenchErrors."""
    repo = ref.repo if isinstance(ref, HubRef) else ref
    try:
        yield
    except (OfflineModeIsEnabled, RevisionResolutionError, LocalEntryNotFoundError) as exc:
        if not offline():
            raise RobbenchError(f"{ref}: cannot reach the hub at {constants.ENDPOINT} and the file is not cached") from exc
        raise RobbenchError(
            f"{ref}: not in the local hub cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE=1 is set; "
            "fetch it once online"
        ) from exc
    except RevisionNotFoundError as exc:
        revision = ref.revision if isinstance(ref, HubRef) else "the revision"
        raise RobbenchError(f"{ref}: hub repo {repo} has no revision {revision!r}; check the part after '@'") from exc
    except RepositoryNotFoundError as exc:
        raise RobbenchError(
            f"hub repo {repo} not found at {constants.ENDPOINT}; check the name, or log in (hf auth login / HF_TOKEN) if it is private"
        ) from exc
    except EntryNotFoundError as exc:
        raise RobbenchError(f"{ref}: no such file in hub repo {repo}; check the path") from exc
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        hint = "; log in with write access (hf auth login / HF_TOKEN)" if status in (401, 403) else ""
        raise RobbenchError(f"{ref}: the hub answered HTTP {status}{hint}") from exc
    except httpx2.TransportError as exc:
        raise RobbenchError(
            f"{ref}: cannot reach the hub at {constants.ENDPOINT} ({type(exc).__name__}); "
            "check the connection, or set HF_HUB_OFFLINE=1 to use the local cache"
        ) from exc
    except OSError as exc:
        raise RobbenchError(f"{ref}: download failed ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from exc


def submit(spec: "ModelSpec", repo: str, results_dir: Path, private: bool = False) -> HubRef:
    """Upload weights, model.yaml and a model card with the local results; return the pinned weights.

    Refuses without local results for exactly these weights: the card must show measured numbers.
    """
    from .digests import file_digest
    from .results import read_store

    if is_hub_ref(spec.checkpoint):
        raise RobbenchError(f"{spec.name}: the checkpoint is already on the hub ({spec.checkpoint}); submit a local model.yaml")
    weights = spec.checkpoint_path()
    if weights.suffix != ".safetensors":
        raise RobbenchError(f"{weights}: the hub takes only .safetensors weights; convert the checkpoint first")
    if not weights.is_file():
        raise RobbenchError(f"checkpoint {weights} not found; check the 'checkpoint' path in model.yaml")
    sha256 = file_digest(weights)
    if spec.sha256 is not None and sha256 != spec.sha256:
        raise RobbenchError(f"{weights}: SHA-256 is {sha256}, model.yaml pins {spec.sha256}; the file was changed")
    records = [r for r in read_store(results_dir)[0] if r.name == spec.name and r.dataset == spec.dataset]
    if not records:
        raise RobbenchError(
            f"no results for {spec.name} on {spec.dataset} in {results_dir}; run `robbench evaluate` first (or pass --results-dir)"
        )
    records = [r for r in records if r.checkpoint.sha256 == sha256]
    if not records:
        raise RobbenchError(f"the results for {spec.name} in {results_dir} are for other weights than {weights}; evaluate again")
    target = HubRef(repo, WEIGHTS_FILE, "main")
    if offline():
        raise RobbenchError("HF_HUB_OFFLINE=1 is set; submitting needs the hub")
    hub_spec = {**spec.model_dump(mode="json", exclude_defaults=True), "checkpoint": WEIGHTS_FILE, "sha256": sha256}
    operations = [
        CommitOperationAdd(WEIGHTS_FILE, str(weights)),
        CommitOperationAdd(SPEC_FILE, yaml.safe_dump(hub_spec, sort_keys=False).encode()),
        CommitOperationAdd("README.md", model_card(spec, records).encode()),
    ]
    with _hub_errors(repo):
        api = HfApi()
        api.create_repo(repo, private=private, exist_ok=True)
        commit = api.create_commit(repo, operations, commit_message=f"robbench submit {spec.name}").oid
    pinned = replace(target, revision=commit)
    uploaded = hub_digest(pinned)
    if uploaded != sha256:
        raise RobbenchError(f"{pinned}: the hub stored SHA-256 {uploaded}, not {sha256}; submit again")
    return pinned


def model_card(spec: "ModelSpec", records: "list[EvalRecord]") -> str:
    """README.md whose front matter carries the results in the hub's ``model-index`` schema."""
    results, rows = [], []
    for record in records:
        threat = record.threat_model
        label = f"{threat.norm}, eps={threat.eps:g}" + ("" if threat.standard else ", non-standard")
        attacks = [attack.name for attack in record.attacks]
        results.append({
            "task": {"type": "image-classification"},
            "dataset": {"name": record.dataset, "type": record.dataset, "split": "test"},
            "metrics": [
                {"type": "accuracy", "name": "clean accuracy", "value": _percent(record.clean_accuracy), "verified": False},
                {
                    "type": "accuracy", "name": f"robust accuracy ({label})", "value": _percent(record.robust_accuracy),
                    "args": {"threat_model": threat.name, "norm": threat.norm, "eps": threat.eps, "attacks": attacks,
                             "n_examples": record.n_examples},
                    "verified": False,
                },
            ],
        })
        rows.append(
            f"| {record.dataset} | {label} | {_percent(record.clean_accuracy):.2f} | {_percent(record.robust_accuracy):.2f} "
            f"| {', '.join(attacks)} | {record.n_examples} |"
        )
    front = {"tags": ["robbench", "adversarial-robustness", "safetensors"], "model-index": [{"name": spec.name, "results": results}]}
    return "\n".join([
        "---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "",
        f"# {spec.name}", "",
        f"`{spec.architecture}` on `{spec.dataset}`, submitted with robbench. Accuracies in %, measured locally "
        "by the submitter; a leaderboard re-evaluates the pinned weights.", "",
        "| dataset | threat model | clean | robust | attacks | examples |", "|---|---|---|---|---|---|", *rows, "",
        "Evaluate: in a `model.yaml` set `checkpoint: hf://<this repo>/model.safetensors@<commit sha>`, "
        "then run `robbench evaluate model.yaml`.", "",
    ])


def _percent(fraction: float) -> float:
    return round(100 * fraction, 2)
