"""Who owns a model name: the source of the weights that first took it, never a later newcomer.

A name on the boards belongs to a source. For hub weights the source is the repo (ORG/NAME): its
later commits may replace its own records, and no other repo may take the name. For local
weights the source is the checkpoint's SHA-256. A hub repo and local weights are different
sources, even with the same bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from .results import EvalRecord


def same_owner(sha256: str | None, repo: str | None, other_sha256: str | None, other_repo: str | None) -> bool:
    """Whether two checkpoints (SHA-256, hub repo or None) are one source under the rule above."""
    if repo is not None or other_repo is not None:
        return repo == other_repo
    return sha256 == other_sha256


def describe_source(sha256: str | None, repo: str | None) -> str:
    return f"hub repo {repo}" if repo is not None else f"local weights {(sha256 or '?')[:12]}"


def conflicting_owner(name: str, sha256: str | None, repo: str | None, records: "Iterable[EvalRecord]") -> str | None:
    """Which record holds ``name`` for another source than (``sha256``, ``repo``); None when it is free or theirs.

    ``sha256`` may be None for hub weights not downloaded yet: a repo owns its names whatever its bytes.
    """
    for record in records:
        held = record.checkpoint
        if record.name == name and not same_owner(sha256, repo, held.sha256, held.repo):
            return f"the record {record.relative_path().as_posix()} of {describe_source(held.sha256, held.repo)}"
    return None
