"""What robbench puts on the Hugging Face Hub, and reads back for a leaderboard.

``submit``: a model repo with the weights, its model.yaml and a model card (two commits: the
weights, then the card naming them pinned). ``publish``: a dataset repo holding the result records
with their adversarial-example files (so ``robbench verify`` can check what the hub holds) and a
rendered site, the convention of the Hub's leaderboards, in one commit.
``results_from_hub``: those records at one commit, verified, for ``robbench leaderboard --from-hub``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, constants

from ..downloads import offline
from ..errors import RobbenchError
from ..hub import UPLOADS_OFF, repo_files, commit, fetch_folder, hub_digest
from ..hub_ref import HF_SCHEME, SPEC_FILE, WEIGHTS_FILE, HubRef, is_hub_ref, parse_hub_ref

if TYPE_CHECKING:
    from ..config import ModelSpec

RESULTS_FOLDER = "results"  # in a published dataset repo: the records, laid out as in the results folder
SITE_FOLDER = "site"  # and the rendered site, when one is published


def submit(spec: "ModelSpec", repo: str, results_dir: Path, private: bool = False, license: str = "unknown") -> HubRef:
    """Upload weights, model.yaml and a model card with the local results; return the pinned weights.

    Refuses without local results for exactly these weights: the card must show measured numbers.
    """
    from ..digests import file_digest
    from .model_card import model_card
    from ..store import read_store

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
    model_card(spec, records, HubRef(repo, WEIGHTS_FILE, "0" * 40), license)  # repo id and card valid before any upload
    hub_spec = {**spec.model_dump(mode="json", exclude_defaults=True), "checkpoint": WEIGHTS_FILE, "sha256": sha256}
    weights_commit = commit(repo, "model", [
        CommitOperationAdd(WEIGHTS_FILE, str(weights)),
        CommitOperationAdd(SPEC_FILE, yaml.safe_dump(hub_spec, sort_keys=False).encode()),
    ], f"robbench submit {spec.name}: weights", private=private)
    pinned = HubRef(repo, WEIGHTS_FILE, weights_commit)
    uploaded = hub_digest(pinned)
    if uploaded != sha256:
        raise RobbenchError(f"{pinned}: the hub stored SHA-256 {uploaded}, not {sha256}; submit again")
    card = model_card(spec, records, pinned, license)
    commit(repo, "model", [CommitOperationAdd("README.md", str(card).encode())], f"robbench submit {spec.name}: model card")
    return pinned


def publish(repo: str, results_dir: Path, site_dir: Path | None = None, private: bool = False) -> HubRef:
    """Make the dataset repo's results (and site) those of ``results_dir`` (and ``site_dir``), in one commit.

    Every record is validated first; files the repo holds under those folders and the local ones
    lack are deleted in the same commit. Returns the repo pinned to the new commit.
    """
    from ..store import LEDGER_NAME, adversarial_path, read_record, settle_ledger

    if not results_dir.is_dir():
        raise RobbenchError(f"{results_dir}: no such results folder; pass --results-dir")
    records = sorted(results_dir.rglob("*.json"))
    if not records:
        raise RobbenchError(f"{results_dir} holds no records; run `robbench evaluate` first")
    uploads = list(records)
    for path in records:
        _check_regular(path)
        if read_record(path).adversarial_examples is not None:  # an invalid record stops the upload, naming the file
            uploads.append(adversarial_path(path))  # published with the record, so `robbench verify` can check it
            if not uploads[-1].is_file():
                raise RobbenchError(f"{path}: its adversarial-example file {uploads[-1].name} is missing; "
                                    "re-run `robbench evaluate` or remove the record")
            _check_regular(uploads[-1])
    files = {f"{RESULTS_FOLDER}/{path.relative_to(results_dir).as_posix()}": path for path in sorted(uploads)}
    settle_ledger(results_dir)  # the boards rendered from the hub judge ownership by it
    files[f"{RESULTS_FOLDER}/{LEDGER_NAME}"] = results_dir / LEDGER_NAME
    if site_dir is not None:
        if not site_dir.is_dir():
            raise RobbenchError(f"{site_dir}: no such site folder; render it with `robbench leaderboard` or drop --site")
        files.update({f"{SITE_FOLDER}/{p.relative_to(site_dir).as_posix()}": p for p in _site_files(site_dir)})
    target = HubRef(repo, "", "main", "dataset")
    stale = [path for path in _existing_files(target) if path.startswith((f"{RESULTS_FOLDER}/", f"{SITE_FOLDER}/")) and path not in files]
    operations = [CommitOperationAdd(path, str(local)) for path, local in files.items()]
    operations += [CommitOperationDelete(path) for path in stale]
    sha = commit(repo, "dataset", operations, f"robbench publish: {len(files)} file(s), {len(stale)} removed", private=private)
    return replace(target, revision=sha)


def _check_regular(path: Path) -> None:
    """Refuse a link or anything but a regular file: publish uploads the files themselves, never what a link names."""
    if path.is_symlink() or not stat.S_ISREG(path.lstat().st_mode):
        raise RobbenchError(f"{path}: a link or not a regular file; publish uploads only regular files, remove it")


def _site_files(site_dir: Path) -> list[Path]:
    """The pages and plots ``robbench leaderboard`` generated under ``site_dir``: regular files carrying its marker.

    Links are never followed (a link to a secret would upload the secret); anything else is left out.
    """
    from ..leaderboard import GENERATED_SUFFIXES, _looks_generated

    found = []
    for folder, _, names in os.walk(site_dir, followlinks=False):
        for name in sorted(names):
            path = Path(folder) / name
            if (not path.is_symlink() and stat.S_ISREG(path.lstat().st_mode) and path.suffix in GENERATED_SUFFIXES
                    and _looks_generated(path)):
                found.append(path)
    if not found:
        raise RobbenchError(f"{site_dir} holds no site pages rendered by `robbench leaderboard`; render it or drop --site")
    return sorted(found)


def _existing_files(target: HubRef) -> list[str]:
    """The repo's files on main; none when the repo does not exist yet."""
    if offline():
        raise RobbenchError(UPLOADS_OFF)
    try:
        return list(repo_files(target, None, recursive=True))
    except RobbenchError as exc:
        if "not found" in str(exc):
            return []
        raise


def results_from_hub(text: str) -> tuple[Path, str]:
    """The records of a published dataset repo at one commit (``ORG/NAME@REVISION`` or its hf:// URI), verified;
    and the web address of that commit's records folder, for the boards to link each record to."""
    ref = parse_hub_ref(text if is_hub_ref(text) else f"{HF_SCHEME}datasets/{text}", repo_type="dataset")
    if ref.path:
        raise RobbenchError(f"{text!r}: name the repo and revision only (ORG/NAME@REVISION); records are read from {RESULTS_FOLDER}/")
    from ..store import LEDGER_NAME

    folder = fetch_folder(replace(ref, path=RESULTS_FOLDER), (".json", f"/{LEDGER_NAME}")) / RESULTS_FOLDER
    return folder, f"{constants.ENDPOINT}/datasets/{ref.repo}/blob/{ref.revision}/{RESULTS_FOLDER}"
