"""Hub references in the Hub's own URI syntax, ``hf://[TYPE/]ORG/REPO[@REVISION][/PATH]``, and their checks.

The URI is parsed and rendered by huggingface_hub's ``parse_hf_uri``/``HfUri`` (the ``hf`` CLI's
grammar), imported only when a reference is parsed, so reading a ``model.yaml`` with local weights
never imports huggingface_hub and its HTTP stack. robbench's first syntax, ``hf://ORG/REPO/PATH@REV``,
is still read, with a one-line deprecation warning naming the new form.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Literal

from .errors import RobbenchError, quoted

HF_SCHEME = "hf://"
WEIGHTS_FILE = "model.safetensors"  # what ``robbench submit`` uploads
SPEC_FILE = "model.yaml"
METADATA_FILES = (SPEC_FILE, "config.json")  # besides *.safetensors, the only files ever fetched from model repos
#: huggingface_hub's rules for ORG/NAME, in ASCII: each part 1-96 characters, no "--" or "..", no ".git" ending
_REPO_PART = r"[A-Za-z0-9](?:[\w.-]{0,94}\w)?"
_REPO = re.compile(rf"^{_REPO_PART}/{_REPO_PART}$", re.ASCII)
_REVISION = re.compile(r"^[\w.][\w./-]*$", re.ASCII)

RepoType = Literal["model", "dataset"]


class HubRefDeprecation(FutureWarning):
    """An ``hf://`` reference in robbench's old syntax; shown to users (FutureWarning), once per text."""


@dataclass(frozen=True)
class HubRef:
    """A file (or, with ``path=""``, the whole repo) in one hub repo at one revision; valid by construction."""

    repo: str
    path: str
    revision: str
    repo_type: RepoType = "model"

    def __post_init__(self) -> None:
        where = quoted(str(self))
        if not _REPO.fullmatch(self.repo) or "--" in self.repo or ".." in self.repo or self.repo.endswith(".git"):
            raise RobbenchError(
                f"{where}: {quoted(self.repo)} is not a hub repo id; write ORG/NAME (ASCII letters, digits, '-', '_', '.')"
            )
        parts = self.path.split("/")
        if self.path and ("\\" in self.path or any(part in ("", ".", "..") for part in parts)):
            raise RobbenchError(f"{where}: {quoted(self.path)} is not a file path inside the repo")
        if self.repo_type == "model" and self.path and not (self.path.endswith(".safetensors") or parts[-1] in METADATA_FILES):
            raise RobbenchError(
                f"{where}: robbench fetches only .safetensors weights and {'/'.join(METADATA_FILES)} from the hub, "
                "never pickles or code; convert the weights to .safetensors"
            )
        if not _REVISION.fullmatch(self.revision) or ".." in self.revision:
            raise RobbenchError(f"{where}: {quoted(self.revision)} is not a revision; write a commit sha, tag or branch")

    def __str__(self) -> str:
        """The canonical URI, as huggingface_hub renders it: ``hf://models/ORG/REPO@REV/PATH``."""
        from huggingface_hub import HfUri

        return HfUri(type=self.repo_type, id=self.repo, revision=self.revision, path_in_repo=self.path).to_uri()

    def sibling(self, name: str) -> "HubRef":
        """Another file in the same folder of the repo (``name`` at the root for a repo reference)."""
        folder = PurePosixPath(self.path).parent if self.path else PurePosixPath(".")
        return replace(self, path=str(folder / name) if str(folder) != "." else name)


def is_hub_ref(text: str) -> bool:
    return text.startswith(HF_SCHEME)


def parse_hub_ref(text: str, repo_type: RepoType = "model") -> HubRef:
    """Any pinned ``hf://`` reference to a repo of ``repo_type``, with or without a path; ``@REVISION`` required."""
    from huggingface_hub import parse_hf_uri
    from huggingface_hub.errors import HfUriError

    if not is_hub_ref(text):
        raise RobbenchError(f"{text!r} is not a hub reference; write hf://ORG/REPO@REVISION[/PATH]")
    try:
        uri = parse_hf_uri(text)
    except HfUriError as exc:
        raise RobbenchError(f"{text!r}: {_first_sentence(exc)}; write hf://ORG/REPO@REVISION[/PATH]") from exc
    path, revision = uri.path_in_repo, uri.revision
    if revision is None and "@" in path:  # robbench's old hf://ORG/REPO/PATH@REVISION
        path, _, revision = path.rpartition("@")
        new = HubRef(uri.id, path, revision, repo_type) if uri.type == repo_type else None
        warnings.warn(f"{text}: hf://ORG/REPO/PATH@REVISION is deprecated; write {new or 'hf://ORG/REPO@REVISION/PATH'}",
                      HubRefDeprecation, stacklevel=2)
    if uri.type != repo_type:
        raise RobbenchError(f"{text!r} names a {uri.type} repo; a {repo_type} repo is needed here")
    if revision is None:
        raise RobbenchError(f"{text!r}: add @REVISION (a commit sha, tag or branch) after the repo so the files are pinned")
    return HubRef(uri.id, path, revision, repo_type)


def parse_checkpoint_ref(text: str) -> HubRef:
    """``hf://ORG/REPO@REVISION/PATH.safetensors`` (a checkpoint must be safetensors weights)."""
    ref = parse_hub_ref(text)
    if not ref.path.endswith(".safetensors"):
        raise RobbenchError(f"{quoted(text)}: a hub checkpoint is a .safetensors file: hf://ORG/REPO@REVISION/PATH.safetensors")
    return ref


def _first_sentence(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.rstrip(". ")
