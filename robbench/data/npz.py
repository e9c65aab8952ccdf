"""NumPy ``.npz`` data: the ``npz`` dataset (a user's own files) and the npz folder layout.

A file holds ``x`` and ``y``: ``x`` as uint8 pixels NHWC (or NHW for grey images), scaled to
[0, 1], or as floats NCHW already in [0, 1]; ``y`` as integer labels. Files are read with
``allow_pickle=False``, so they can hold arrays only.

The folder layout (e.g. ``shared/data/cifar10``, see its README) splits a dataset into
``<split>-*.npz`` files that also hold ``index``, each example's position in the original split,
plus a ``SHA256SUMS`` file. A folder may hold only part of a split; ``index`` says which part,
and a test split must be a prefix (examples 0..n-1) so a record can say exactly what was used.
"""

from __future__ import annotations

import math
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..errors import RobbenchError
from ..threat_models import l2, linf
from . import DATASETS, Dataset, Split, user_data_root
from ..digests import file_digest
from .sources import check_digest


def images_from_array(x: np.ndarray, where: str) -> torch.Tensor:
    """float32 NCHW in [0, 1] from uint8 NHWC/NHW pixels or float NCHW images."""
    if x.dtype == np.uint8 and x.ndim in (3, 4):
        pixels = torch.from_numpy(np.ascontiguousarray(x if x.ndim == 4 else x[..., None]))
        return pixels.permute(0, 3, 1, 2).contiguous().float().div_(255)
    if np.issubdtype(x.dtype, np.floating) and x.ndim == 4:
        images = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if images.numel() and not (bool(torch.isfinite(images).all()) and 0 <= images.min() and images.max() <= 1):
            raise RobbenchError(f"{where}: x holds floats outside [0, 1]; scale the images to [0, 1] or store uint8 pixels")
        return images
    raise RobbenchError(
        f"{where}: x is {x.dtype} with shape {x.shape}; store uint8 pixels NHWC (or NHW) or float images NCHW"
    )


def labels_from_array(y: np.ndarray, n: int, where: str) -> torch.Tensor:
    if not np.issubdtype(y.dtype, np.integer) or y.shape != (n,):
        raise RobbenchError(f"{where}: y must be {n} integer labels, one per image, got {y.dtype} with shape {y.shape}")
    return torch.from_numpy(y.astype(np.int64))


def read_arrays(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named arrays of an .npz file, never unpickling anything."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in keys if key not in data.files]
            if missing:
                raise RobbenchError(f"{path} has no array {missing[0]!r} (it has {', '.join(data.files) or 'none'}); save it with np.savez")
            for key in keys:
                _check_claimed_size(data.zip, f"{key}.npy", path)
            return {key: data[key] for key in keys}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, MemoryError) as exc:
        raise RobbenchError(f"{path} is not a readable .npz file of plain arrays ({exc}); save it with np.savez") from exc


def _check_claimed_size(archive: zipfile.ZipFile, member: str, path: Path) -> None:
    """Refuse an array whose header claims more bytes than its member holds, before numpy allocates them."""
    info = archive.getinfo(member)
    with archive.open(info) as handle:
        major, _ = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(handle)
        claimed = math.prod(shape) * dtype.itemsize
        if claimed > info.file_size - handle.tell():
            raise RobbenchError(
                f"{path}: {member} claims shape {shape} ({claimed:,} bytes) but holds {info.file_size - handle.tell():,} bytes; "
                "the file is corrupt"
            )


def _published_sums(folder: Path) -> dict[str, str]:
    """``SHA256SUMS`` (``sha256sum`` output) as filename -> digest; empty when there is none."""
    path = folder / "SHA256SUMS"
    if not path.is_file():
        return {}
    sums = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split(maxsplit=1)
        if len(parts) == 2:
            sums[parts[1].lstrip("*").strip()] = parts[0].lower()
    return sums


def read_npz_folder(folder: Path, split: Split) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The examples of ``split`` in ``folder``'s ``<split>-*.npz`` files, in index order; None without any."""
    files = sorted(folder.glob(f"{split}-*.npz"))
    if not files:
        return None
    sums = _published_sums(folder)
    parts = []
    for path in files:
        if sums:
            if path.name not in sums:
                raise RobbenchError(f"{path} is not listed in {folder / 'SHA256SUMS'}; remove it or add its checksum")
            check_digest(path, ("sha256", sums[path.name]))
        arrays = read_arrays(path, ("x", "y", "index"))
        if arrays["index"].shape != arrays["y"].shape:
            raise RobbenchError(f"{path}: index and y differ in length; the file is corrupt")
        parts.append(arrays)
    index = np.concatenate([p["index"] for p in parts])
    order = np.argsort(index, kind="stable")
    index = index[order]
    if np.any(index[1:] == index[:-1]):
        raise RobbenchError(f"{folder}: two {split}-*.npz files hold the same examples; remove the duplicate")
    if split == "test" and not np.array_equal(index, np.arange(len(index))):
        raise RobbenchError(
            f"{folder}: the test files do not hold a prefix 0..n-1 of the test set; add the missing test-*.npz files"
        )
    x, y = np.concatenate([p["x"] for p in parts]), np.concatenate([p["y"] for p in parts])
    if np.any(order != np.arange(len(order))):  # files out of order: a copy, which in-order files skip
        x, y = x[order], y[order]
    where = f"{folder}/{split}-*.npz"
    return images_from_array(x, where), labels_from_array(y, len(x), where)


@lru_cache(maxsize=4)
def _read_file(path: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    file = Path(path)
    if not file.is_file():
        raise RobbenchError(f"{file}: no such .npz file; check dataset_kwargs path")
    arrays = read_arrays(file, ("x", "y"))
    x = images_from_array(arrays["x"], str(file))
    return x, labels_from_array(arrays["y"], len(x), str(file)), file_digest(file)


@DATASETS.register("npz", hub_params=("num_classes", "linf_eps", "l2_eps"))  # never path, train_path
def npz(
    path: str,
    train_path: str | None = None,
    num_classes: int | None = None,
    linf_eps: float = 8 / 255,
    l2_eps: float = 0.5,
    data_dir: str | None = None,
) -> Dataset:
    """Your own images from an .npz file (x, y); relative paths resolve under --data-dir when given."""
    root = user_data_root(data_dir)

    def resolve(name: str) -> str:
        file = Path(name).expanduser()
        return str(root / file if root is not None and not file.is_absolute() else file)

    x, y, sha256 = _read_file(resolve(path))
    if len(y) == 0:
        raise RobbenchError(f"{path} holds no examples; check the file")
    classes = int(y.max()) + 1 if num_classes is None else int(num_classes)
    if classes < 2 or not all(math.isfinite(e) and e > 0 for e in (linf_eps, l2_eps)):
        raise RobbenchError(f"npz needs num_classes >= 2 and positive linf_eps and l2_eps; got {classes}, {linf_eps}, {l2_eps}")

    def load(split: Split) -> tuple[torch.Tensor, torch.Tensor]:
        if split == "test":
            return x, y
        if train_path is None:
            raise RobbenchError("the npz dataset has no training file; add train_path to dataset_kwargs")
        x_train, y_train, _ = _read_file(resolve(train_path))
        if tuple(x_train.shape[1:]) != tuple(x.shape[1:]):
            raise RobbenchError(f"{train_path} holds images of shape {tuple(x_train.shape[1:])}, {path} {tuple(x.shape[1:])}; use one shape")
        return x_train, y_train

    params = {"path": path, "sha256": sha256, "num_classes": classes, "linf_eps": linf_eps, "l2_eps": l2_eps}
    if train_path is not None:
        params["train_path"] = train_path
    return Dataset(
        name="npz",
        input_shape=tuple(x.shape[1:]),
        num_classes=classes,
        value_range=(0.0, 1.0),
        test_size=len(y),
        params=params,
        threat_models=(linf(linf_eps), l2(l2_eps)),
        loader=load,
    )
