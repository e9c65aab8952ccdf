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
import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

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
    """The file's SHA-256, as ``digest`` gives for its bytes, read through the store's guarded door
    (a regular file within ``MAX_ADVERSARIAL_BYTES``: no FIFO, no link to a device)."""
    from .store import MAX_ADVERSARIAL_BYTES
    from .untrusted_files import open_untrusted

    with open_untrusted(path, MAX_ADVERSARIAL_BYTES, "adversarial-example file") as handle:
        try:
            return hashlib.file_digest(handle, "sha256").hexdigest()
        except OSError as exc:
            raise _unreadable(path, exc) from exc


#: the most bytes one decoded array may take: a 10,000-image CIFAR-100 record's examples are 123 MB
MAX_DECODED_BYTES = 2 * 2**30
_DTYPES = {"index": np.dtype("<i8"), "x_adv": np.dtype("<f4")}
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def decode(path: Path, input_shape: tuple[int, ...], count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(index, x_adv)`` from a file, refusing anything but the two plain arrays of the right shapes.

    ``count``: how many examples the record says the file holds. Each member's ``.npy`` header is
    checked against it (and the input shape) before a byte of data is decompressed, and then
    exactly that many bytes are read: a header claiming 10^11 floats or a zip bomb is refused
    without decoding it.
    """
    from .store import MAX_ADVERSARIAL_BYTES
    from .untrusted_files import open_untrusted

    with open_untrusted(path, MAX_ADVERSARIAL_BYTES, "adversarial-example file") as handle:
        try:
            with zipfile.ZipFile(handle) as archive:
                names = sorted(archive.namelist())
                if names != sorted(f"{key}.npy" for key in KEYS):
                    raise RobbenchError(f"{path}: holds arrays {[n.removesuffix('.npy') for n in names][:5]}, expected {list(KEYS)}")
                index = _read_member(path, archive, "index", count, ())
                x_adv = _read_member(path, archive, "x_adv", len(index), input_shape)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise _unreadable(path, exc) from exc
    return index, x_adv


def _read_member(path: Path, archive: zipfile.ZipFile, key: str, count: int | None, row_shape: tuple[int, ...]) -> np.ndarray:
    """One ``.npy`` member: header checked (dtype, shape, size) before its data is read, then exactly its bytes."""
    with archive.open(f"{key}.npy") as member:
        reader = _HEADER_READERS.get(np.lib.format.read_magic(member))
        if reader is None:
            raise RobbenchError(f"{path}: {key} is not a version 1 or 2 .npy array")
        shape, fortran_order, dtype = reader(member)
        if dtype != _DTYPES[key] or fortran_order:
            raise RobbenchError(f"{path}: index must be int64 of one dimension and x_adv float32")
        expected = ((shape[0] if count is None and shape else count), *row_shape)
        if tuple(shape) != expected:
            raise RobbenchError(f"{path}: {key} has shape {tuple(shape)}, expected {expected}")
        size = math.prod(shape) * dtype.itemsize
        if size > MAX_DECODED_BYTES:
            raise RobbenchError(f"{path}: {key} claims {size:,} bytes, over the limit of {MAX_DECODED_BYTES:,}")
        data = member.read(size + 1)
    if len(data) != size:
        raise RobbenchError(f"{path}: {key} holds {'more' if len(data) > size else 'fewer'} bytes than its header's "
                            f"{size:,}; the file is damaged")
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
