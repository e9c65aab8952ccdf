"""Who owns a model name: the source whose record the results store admitted first, never a record's own word.

The store keeps a ledger (``robbench.store``): one claim per source admitted under a name, in the
order the store admitted them. The first claim of a name is its owner. A later claim under that
name is admitted when

- it holds the owner's weights (the same SHA-256: a local model and its hub copy are one owner), or
- the owner is a hub repo and the claim comes from that same repo (a later commit of it; it then
  replaces the repo's earlier commit on the boards, see ``current_sha256``).

Names are compared as PyPI compares project names (PEP 503: case, runs of ``-``, ``_`` and
``.``) and trailing separators are ignored, so ``Model.``, ``model_x`` and ``model-x`` are one
name: a look-alike of a held name is refused wherever the exact name would be.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Iterable


@dataclass(frozen=True)
class Claim:
    """One source admitted under a name: the weights' SHA-256 and, for hub weights, repo and commit."""

    name: str
    sha256: str | None  # None: hub weights not downloaded yet (``queue add``); the repo speaks for them
    repo: str | None = None
    revision: str | None = None

    def as_json(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return f"hub repo {self.repo}" if self.repo is not None else f"local weights {(self.sha256 or '?')[:12]}"


def name_key(name: str) -> str:
    """PEP 503's normalised name, trailing separators dropped: ``My_Model.`` -> ``my-model``."""
    return re.sub(r"[-_.]+", "-", name.lower()).strip("-")


class Ledger:
    """The claims of a results store in admission order, and the rules above over them."""

    def __init__(self, claims: Iterable[Claim] = ()):
        self.claims: list[Claim] = []
        self._by_key: dict[str, list[Claim]] = {}
        for claim in claims:
            self.append(claim)

    def append(self, claim: Claim) -> None:
        self.claims.append(claim)
        self._by_key.setdefault(name_key(claim.name), []).append(claim)

    def owner(self, name: str) -> Claim | None:
        """The first claim of ``name`` or of a look-alike of it."""
        claims = self._by_key.get(name_key(name))
        return claims[0] if claims else None

    def owner_digests(self, name: str) -> set[str]:
        """The weights the owner of ``name`` has published under it: its first and its own repo's later ones."""
        owner = self.owner(name)
        if owner is None:
            return set()
        return {c.sha256 for c in self._by_key[name_key(name)]
                if c.sha256 is not None and (c == owner or (owner.repo is not None and c.repo == owner.repo))}

    def refusal(self, claim: Claim) -> str | None:
        """Why ``claim`` may not be admitted (one line), or None when it may."""
        owner = self.owner(claim.name)
        if owner is None:
            return None
        if owner.name != claim.name:
            return f"the name {claim.name!r} is a look-alike of {owner.name!r}, which belongs to {owner.describe()}"
        if claim.sha256 is not None and claim.sha256 in self.owner_digests(claim.name):
            return None
        if owner.repo is not None and claim.repo == owner.repo:
            return None
        return f"the name {claim.name!r} belongs to {owner.describe()}"

    def admit(self, claim: Claim) -> bool:
        """Append ``claim`` unless it is there already; whether it was new. The caller checked ``refusal``."""
        if claim in self._by_key.get(name_key(claim.name), ()):
            return False
        self.append(claim)
        return True

    def current_sha256(self, name: str, present: set[str]) -> str | None:
        """Of the weights ``present`` under ``name``, the owner's latest admitted: a hub repo's newest commit wins."""
        owned = self.owner_digests(name) & present
        latest = None
        for claim in self._by_key.get(name_key(name), ()):
            if claim.sha256 in owned:
                latest = claim.sha256
        return latest
