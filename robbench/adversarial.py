"""The adversarial-example file of a run: every broken example's verified adversarial input, exactly.

An ``.npz`` (zip of ``.npy`` arrays, deflate-compressed), never pickled and read with
``allow_pickle=False``: ``index`` (int64, sorted test-set indices) and ``x_adv`` (float32, one
input per index, bit for bit the input the evaluation verified). Compression takes an L∞
CIFAR-10 example from 12 KiB to about 7 KiB, so a full 10,000-image record of a standard model
(nearly every example broken) needs about 70 MB and a robust one about half; see docs/records.md.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

from .digests import file_digest
from .errors import RobbenchError

KEYS = ("index", "x_adv")


def encode(index: np.ndarray, x_adv: np.ndarray) -> bytes:
    """The file's bytes; deterministic for the same arrays (fixed zip timestamps), so its digest is stable."""
    order = np.argsort(index, kind="stable")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, array in (("index", index[order].astype(np.int64)), ("x_adv", x_adv[order].astype(np.float32))):
            entry = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(entry, "w") as handle:
                np.lib.format.write_array(handle, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _unreadable(path: Path, exc: Exception) -> RobbenchError:
    return RobbenchError(f"{path}: not a readable adversarial-example file ({exc})")


def file_sha256(path: Path) -> str:
    """The file's SHA-256, as ``digest`` gives for its bytes; one that cannot be read (no permission, a folder)
    is a one-line error."""
    try:
        return file_digest(path)
    except OSError as exc:
        raise _unreadable(path, exc) from exc


def decode(path: Path, input_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(index, x_adv)`` from a file, refusing anything but the two plain arrays of the right shapes."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if sorted(archive.files) != sorted(KEYS):
                raise RobbenchError(f"{path}: holds arrays {sorted(archive.files)}, expected {list(KEYS)}")
            index, x_adv = archive["index"], archive["x_adv"]
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise _unreadable(path, exc) from exc
    if index.dtype != np.int64 or index.ndim != 1 or x_adv.dtype != np.float32:
        raise RobbenchError(f"{path}: index must be int64 of one dimension and x_adv float32")
    if x_adv.shape != (len(index), *input_shape):
        raise RobbenchError(f"{path}: x_adv has shape {x_adv.shape}, expected {(len(index), *input_shape)}")
    return index, x_adv
