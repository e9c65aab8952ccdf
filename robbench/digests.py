"""Digests: the one way robbench hashes a file (checkpoint pins, dataset files, hub uploads) or the
evaluated examples (a record and its resume state name their data by it).

No torch import: the dataset digest only calls the tensors' own methods, so importing this stays cheap.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of the file's bytes, read in 1 MiB chunks (checkpoints can be large)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def data_digest(x: "torch.Tensor", y: "torch.Tensor") -> str:
    """SHA-256 of the evaluated examples (x float32, y int64): a record and its state name their data."""
    sha = hashlib.sha256()
    for tensor in (x, y):
        sha.update(tensor.contiguous().cpu().numpy().tobytes())
    return sha.hexdigest()


def install_pinned(source: Path, target: Path, expected: str, what: str) -> str | None:
    """Copy ``source`` to ``target`` when its SHA-256 is ``expected``, through a ``.part`` file renamed into place.

    For the fetch scripts of pinned third-party checkpoints. Returns None, or the one-line reason it refused
    (naming ``what`` was fetched), having written nothing.
    """
    found = file_digest(source)
    if found != expected:
        return f"{what} has sha256 {found}, model.yaml pins {expected}; refusing it"
    partial = target.with_suffix(".part")
    shutil.copyfile(source, partial)
    partial.replace(target)
    return None
