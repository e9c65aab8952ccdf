"""Hub references, ``hf://ORG/REPO/PATH@REVISION``: their syntax and checks, without the network.

Separate from ``robbench.hub`` so that reading a ``model.yaml`` or loading local weights never
imports huggingface_hub and its HTTP stack; only a download or an upload does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import PurePosixPath

from .errors import RobbenchError, quoted

HF_SCHEME = "hf://"
WEIGHTS_FILE = "model.safetensors"  # what ``robbench submit`` uploads
SPEC_FILE = "model.yaml"
METADATA_FILES = (SPEC_FILE, "config.json")  # besides *.safetensors, the only files ever fetched
#: huggingface_hub's rules for ORG/NAME, in ASCII: each part 1-96 characters, no "--" or "..", no ".git" ending
_REPO_PART = r"[A-Za-z0-9](?:[\w.-]{0,94}\w)?"
_REPO = re.compile(rf"^{_REPO_PART}/{_REPO_PART}$", re.ASCII)
_REVISION = re.compile(r"^[\w.][\w./-]*$", re.ASCII)


@dataclass(frozen=True)
class HubRef:
    """One file in one hub model repo at one revision; valid by construction."""

    repo: str
    path: str
    revision: str

    def __post_init__(self) -> None:
        where = quoted(str(self))
        if not _REPO.fullmatch(self.repo) or "--" in self.repo or ".." in self.repo or self.repo.endswith(".git"):
            raise RobbenchError(
                f"{where}: {quoted(self.repo)} is not a hub repo id; write ORG/NAME (ASCII letters, digits, '-', '_', '.')"
            )
        parts = self.path.split("/")
        if "\\" in self.path or any(part in ("", ".", "..") for part in parts):
            raise RobbenchError(f"{where}: {quoted(self.path)} is not a file path inside the repo")
        if not (self.path.endswith(".safetensors") or parts[-1] in METADATA_FILES):
            raise RobbenchError(
                f"{where}: robbench fetches only .safetensors weights and {'/'.join(METADATA_FILES)} from the hub, "
                "never pickles or code; convert the weights to .safetensors"
            )
        if not _REVISION.fullmatch(self.revision) or ".." in self.revision:
            raise RobbenchError(f"{where}: {quoted(self.revision)} is not a revision; write a commit sha, tag or branch")

    def __str__(self) -> str:
        return f"{HF_SCHEME}{self.repo}/{self.path}@{self.revision}"

    def sibling(self, name: str) -> "HubRef":
        return replace(self, path=str(PurePosixPath(self.path).with_name(name)))


def is_hub_ref(text: str) -> bool:
    return text.startswith(HF_SCHEME)


def parse_checkpoint_ref(text: str) -> HubRef:
    """``hf://ORG/REPO/PATH.safetensors@REVISION`` (a checkpoint must be safetensors weights)."""
    body, at, revision = text[len(HF_SCHEME) :].partition("@")
    parts = body.split("/", 2)
    if not is_hub_ref(text) or len(parts) < 3:
        raise RobbenchError(f"{quoted(text)}: a hub checkpoint is written hf://ORG/REPO/PATH.safetensors@REVISION")
    if not at:
        raise RobbenchError(f"{quoted(text)}: add @REVISION (a commit sha, tag or branch) so the weights are pinned")
    ref = HubRef("/".join(parts[:2]), parts[2], revision)
    if not ref.path.endswith(".safetensors"):
        raise RobbenchError(f"{quoted(text)}: a hub checkpoint must be a .safetensors file")
    return ref
