"""Board file names and titles, shared by every rendering of the boards.

The radius is written as a fraction of 255 where it is one (``cifar10-linf-8_255``), otherwise
with ``%g`` and ``.`` as ``p`` (``fashion-mnist-linf-0p1``). A non-standard radius always gets
its own board.
"""

from __future__ import annotations

from typing import Iterable

from .entries import BoardKey


def _as_255ths(eps: float) -> int | None:
    """``k`` when eps is k/255 (to within 1e-9 in units of 1/255) and below 1, else None."""
    if not (0 < eps < 1):
        return None
    scaled = eps * 255
    k = round(scaled)
    return k if k > 0 and abs(scaled - k) <= 1e-9 else None


def eps_slug(eps: float) -> str:
    """``8_255`` for 8/255, ``0p1`` for 0.1, ``1p5`` for 1.5."""
    k = _as_255ths(eps)
    return f"{k}_255" if k is not None else f"{eps:g}".replace(".", "p")


def eps_label(eps: float) -> str:
    """Human form: ``8/255 (0.03137)``, ``0.1``."""
    k = _as_255ths(eps)
    return f"{k}/255 ({eps:.4g})" if k is not None else f"{eps:g}"


def board_stem(key: BoardKey) -> str:
    return f"{key.dataset}-{key.threat.name}-{eps_slug(key.threat.eps)}"


def board_stems(keys: Iterable[BoardKey]) -> dict[BoardKey, str]:
    """A distinct file stem per board.

    Normally ``<dataset>-<threat>-<eps slug>``. Two boards can only share that when their radii
    print alike with ``%g`` (0.1 standard and 0.1000001 non-standard): then the non-standard one
    gets ``-nonstandard``, and radii that still collide are written in full (``repr``).
    """
    ordered = sorted(set(keys), key=lambda k: k.sort_key)
    stems = {key: board_stem(key) for key in ordered}
    for rule in ("nonstandard", "repr"):
        counts: dict[str, int] = {}
        for stem in stems.values():
            counts[stem] = counts.get(stem, 0) + 1
        for key in ordered:
            if counts[stems[key]] < 2:
                continue
            if rule == "nonstandard" and not key.threat.standard:
                stems[key] += "-nonstandard"
            elif rule == "repr":
                stems[key] = f"{key.dataset}-{key.threat.name}-{repr(key.threat.eps).replace('.', 'p')}" + (
                    "" if key.threat.standard else "-nonstandard"
                )
    return _split_parts_apart(stems)


def _split_parts_apart(stems: dict[BoardKey, str]) -> dict[BoardKey, str]:
    """Unique stems by construction where ``-`` inside names made two boards alike.

    Dataset ``fashion`` with threat model ``mnist-linf`` reads like ``fashion-mnist`` with
    ``linf``. Of boards still sharing a stem, a registered dataset keeps it; the others get
    ``<dataset>+<threat>+<eps repr>[+nonstandard]``: names cannot hold ``+``, so these stems
    can neither meet each other nor a plain one.
    """
    from ..data import DATASETS

    sharing: dict[str, list[BoardKey]] = {}
    for key, stem in stems.items():
        sharing.setdefault(stem, []).append(key)
    for keys in (keys for keys in sharing.values() if len(keys) > 1):
        registered = [key for key in keys if key.dataset in DATASETS.names()]
        keeper = registered[0] if len(registered) == 1 else None
        for key in keys:
            if key != keeper:
                stems[key] = "+".join([key.dataset, key.threat.name, repr(key.threat.eps).replace(".", "p")]
                                      + ([] if key.threat.standard else ["nonstandard"]))
    return stems


def board_title(key: BoardKey) -> str:
    threat = key.threat
    return f"{key.dataset} — {threat.norm} ε = {eps_label(threat.eps)}" + ("" if threat.standard else " (non-standard ε)")
