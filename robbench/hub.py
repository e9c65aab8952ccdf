"""Files on the Hugging Face Hub (``hf://ORG/REPO@REVISION/PATH``), pinned to a commit and verified.

huggingface_hub checks only the length of what it downloads, so robbench resolves the revision to
a commit sha, reads the file's digest from the hub's tree listing (the LFS SHA-256, or the git blob
id of a small file) and compares it, and any ``sha256:`` pin, with a digest of the bytes received.
From model repos only ``*.safetensors``, ``model.yaml`` and ``config.json`` are ever fetched, one
named file at a time, so pickles and code in a repo are never downloaded; from dataset repos, only
the result records a leaderboard is rendered from (``fetch_folder``). Every file's size in that listing
is checked against robbench's limit for its kind (``download_limit``; docs/security.md) before a byte
of it is downloaded, so a hub repo cannot make robbench fetch a multi-gigabyte "record". Endpoint,
token and cache follow huggingface_hub's environment variables (HF_ENDPOINT, HF_TOKEN, HF_HUB_CACHE).
Offline mode is robbench's one switch (``robbench.downloads``: ``ROBBENCH_OFFLINE=1`` or
``HF_HUB_OFFLINE=1``, read when a download would start): files then come from the local cache only,
and one that is not there is a one-line error naming it and the ways to provide it. A file not in the
cache is announced on stderr before it is downloaded.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Iterator

import httpx2
from huggingface_hub import CommitOperation, HfApi, constants, hf_hub_download, try_to_load_from_cache
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

from .downloads import DOWNLOADS_OFF, OFFLINE_VARIABLES, announce, offline
from .errors import RobbenchError
from .hub_ref import METADATA_FILES, SPEC_FILE, HubRef, RepoType, parse_checkpoint_ref, parse_hub_ref

if TYPE_CHECKING:
    from .config import ModelSpec


@dataclass(frozen=True)
class HubFile:
    """A verified local copy of a hub file, and where it came from."""

    local_path: Path
    ref: HubRef  # pinned: revision is the 40-character commit sha
    sha256: str


@dataclass(frozen=True)
class Listed:
    """A file as the hub's tree listing describes it: its digest (LFS SHA-256, else git blob id) and size in bytes."""

    digest: str
    size: int


def download_limit(path: str) -> tuple[int, str, str]:
    """The most bytes robbench downloads of a hub file at ``path``, what the file is, and the fix when it is larger.

    The limits are the ones robbench reads such a file with (docs/security.md): a larger file would be refused
    after the download, so it is refused before.
    """
    from .config import MAX_CONFIG_BYTES
    from .loader import MAX_MODEL_BYTES
    from .store import ADVERSARIAL_SUFFIX, LEDGER_NAME, MAX_ADVERSARIAL_BYTES, MAX_LEDGER_BYTES, MAX_RECORD_BYTES

    name = PurePosixPath(path).name
    if name.endswith(".safetensors"):
        return MAX_MODEL_BYTES, "weights file", "robbench evaluates models of at most that many bytes of weights"
    if name.endswith(ADVERSARIAL_SUFFIX):
        return MAX_ADVERSARIAL_BYTES, "adversarial-example file", "its publisher must re-publish the repo with `robbench publish`"
    if name == LEDGER_NAME:
        return MAX_LEDGER_BYTES, "ledger", "its publisher must re-publish the repo with `robbench publish`"
    if name.endswith(".json") and name not in METADATA_FILES:
        return MAX_RECORD_BYTES, "record", "its publisher must remove it and re-publish with `robbench publish`"
    return MAX_CONFIG_BYTES, "model description", "its owner must shorten it"


def check_download_size(ref: HubRef, size: int) -> None:
    """Refuse ``ref`` before its download when the hub lists it larger than ``download_limit`` allows."""
    limit, what, fix = download_limit(ref.path)
    if size > limit:
        raise RobbenchError(f"{ref}: the hub lists this {what} at {size:,} bytes, over robbench's limit of {limit:,} "
                            f"(docs/security.md); nothing was downloaded; {fix}")


def resolve(ref: HubRef) -> HubRef:
    """The same file at the commit sha ``ref.revision`` names now (from the local cache when offline)."""
    with _hub_errors(ref):
        resolved = HfApi().resolve_revision(
            ref.repo, repo_type=ref.repo_type, revision=ref.revision, local_files_only=offline()
        )
    return replace(ref, revision=resolved.resolved)


def fetch(ref: HubRef, pin: str | None = None) -> HubFile:
    """Download one file at its resolved commit and verify its digest; a mismatch is an error."""
    pinned = resolve(ref)
    expected = None
    if not offline():  # offline, the file comes from the cache: nothing is downloaded
        listed = hub_listing(pinned)
        check_download_size(pinned, listed.size)
        expected = listed.digest
        if not _cached(pinned):
            announce(str(pinned), constants.ENDPOINT, constants.HF_HUB_CACHE)
    local = _download(pinned)
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
    return hub_listing(ref).digest


def hub_listing(ref: HubRef) -> Listed:
    """The file's entry in the hub's tree listing at ``ref.revision``."""
    folder = str(PurePosixPath(ref.path).parent)
    listed = repo_files(ref, None if folder == "." else folder, recursive=False).get(ref.path)
    if listed is None:
        raise RobbenchError(f"{ref}: hub repo {ref.repo} has no file {ref.path} at that commit; check the path")
    return listed


def repo_files(ref: HubRef, folder: str | None, recursive: bool) -> dict[str, Listed]:
    """Path -> digest and size of the files under ``folder`` at ``ref.revision``."""
    with _hub_errors(ref):
        entries = HfApi().list_repo_tree(ref.repo, folder, recursive=recursive, revision=ref.revision, repo_type=ref.repo_type)
        return {e.path: Listed(e.lfs.sha256, e.lfs.size) if e.lfs else Listed(e.blob_id, e.size)
                for e in entries if isinstance(e, RepoFile)}


#: concurrent downloads of a folder's files: each is a small request that mostly waits on the network
DOWNLOAD_THREADS = 8


def fetch_folder(ref: HubRef, suffix: "str | tuple[str, ...]") -> Path:
    """Every ``*suffix`` file (any of several) under ``ref.path`` at the resolved commit, each verified; the local snapshot root.

    Online only: the digests come from the hub's listing at that commit. The files download
    ``DOWNLOAD_THREADS`` at a time (a published board holds thousands of records); the first one that
    fails its digest ends the fetch with its error.
    """
    pinned = resolve(ref)
    if offline():
        raise RobbenchError(f"{pinned}: {DOWNLOADS_OFF} and reading a folder needs the hub's listing; unset it, "
                            "or render from a local --results-dir")
    listing = {p: f for p, f in repo_files(pinned, pinned.path or None, recursive=True).items() if p.endswith(suffix)}
    if not listing:
        raise RobbenchError(f"{pinned}: no {'/'.join(suffix) if isinstance(suffix, tuple) else suffix} files under {pinned.path or 'the repo root'} at that commit; check the repo")
    for path, listed in sorted(listing.items()):  # every size first: one oversized file and nothing is downloaded
        check_download_size(replace(pinned, path=path), listed.size)
    missing = [path for path in listing if not _cached(replace(pinned, path=path))]
    if missing:
        announce(f"{pinned} ({len(missing)} of its {len(listing)} files)", constants.ENDPOINT, constants.HF_HUB_CACHE)

    def fetch_listed(path: str) -> Path:
        file_ref = replace(pinned, path=path)
        local = _download(file_ref)
        _verify(local, listing[path].digest, file_ref)
        return local

    paths = sorted(listing)
    pool = ThreadPoolExecutor(DOWNLOAD_THREADS)
    try:
        local = list(pool.map(fetch_listed, paths))[-1]
    finally:
        pool.shutdown(cancel_futures=True)  # after a failure, the downloads not yet started are not made
    return local.parents[len(PurePosixPath(paths[-1]).parts) - 1]


def hub_spec(text: str) -> "ModelSpec":
    """The model.yaml of a hub model, its checkpoint pinned: what ``queue add`` and ``evaluate hf://...`` read.

    ``text`` names the weights (``.../model.safetensors``: the model.yaml next to them describes
    them), the model.yaml itself, or the repo (its root model.yaml, whose ``checkpoint`` names the
    weights in the repo). Only registered architectures are accepted: no code comes from the hub.
    """
    from .config import load_model_spec
    from .hub_ref import is_hub_ref
    from .models import ARCHITECTURES

    ref = resolve(parse_hub_ref(text))
    spec_ref = ref.sibling(SPEC_FILE) if ref.path.endswith(".safetensors") or not ref.path else ref
    spec = load_model_spec(fetch(spec_ref).local_path)
    if ref.path.endswith(".safetensors"):
        weights = ref
    elif is_hub_ref(spec.checkpoint):
        weights = resolve(parse_checkpoint_ref(spec.checkpoint))
    else:
        weights = spec_ref.sibling(spec.checkpoint)
        if not weights.path.endswith(".safetensors"):
            raise RobbenchError(f"{spec_ref}: its checkpoint {spec.checkpoint!r} is not .safetensors weights; robbench fetches no other")
    if not offline():
        hub_digest(weights)  # the weights exist at that commit (they are downloaded when evaluated)
    ARCHITECTURES.get(spec.architecture)
    return spec.model_copy(update={"checkpoint": str(weights)})


#: why nothing is uploaded while offline
UPLOADS_OFF = f"{' or '.join(OFFLINE_VARIABLES)} is set, and uploading needs the hub; unset it"


def commit(repo: str, repo_type: RepoType, operations: list[CommitOperation], message: str, private: bool = False) -> str:
    """One commit on main of ``repo`` (created if need be); its sha."""
    if offline():
        raise RobbenchError(UPLOADS_OFF)
    with _hub_errors(repo):
        api = HfApi()
        api.create_repo(repo, repo_type=repo_type, private=private, exist_ok=True)
        return api.create_commit(repo, operations, commit_message=message, repo_type=repo_type).oid


def _cached(ref: HubRef) -> bool:
    """Whether the file at ``ref.revision`` (a commit sha) is in the local hub cache."""
    return isinstance(try_to_load_from_cache(ref.repo, ref.path, revision=ref.revision, repo_type=ref.repo_type), str)


def _download(ref: HubRef) -> Path:
    """The file at ``ref.revision``: from the local cache, and when online from the hub if it is not there."""
    with _hub_errors(ref):
        return Path(hf_hub_download(ref.repo, ref.path, repo_type=ref.repo_type, revision=ref.revision,
                                    local_files_only=offline()))


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
            f"{ref}: not in the local hub cache ({constants.HF_HUB_CACHE}) and {DOWNLOADS_OFF}; fetch it once online "
            "(unset it), point HF_HUB_CACHE at a cache that holds it, or name a local checkpoint file in model.yaml"
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
            "check the connection, or set ROBBENCH_OFFLINE=1 to use the local cache"
        ) from exc
    except OSError as exc:
        raise RobbenchError(f"{ref}: download failed ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from exc
