"""CIFAR-10 and CIFAR-100 (Krizhevsky, 2009): 32x32 colour images, 10 or 100 classes.

A folder may hold either layout, looked for split by split in the order of
``robbench.data.sources`` (``DIR/cifar10/``, ``shared/data/cifar10``, the user cache):

- the canonical pickled batches (``cifar-10-batches-py``/``cifar-100-python``, or their files
  directly in the folder), each checked against the MD5 that torchvision publishes for it and
  read with an unpickler that can build numpy arrays and plain containers, nothing else;
- the npz folder layout (``robbench.data.npz``), e.g. ``shared/data/cifar10`` with all 50,000
  training images but only the first 1,000 test images.

Without either, the canonical archive is downloaded and checked against its SHA-256. Where only
part of the test set exists, ``load("test")`` returns that prefix while ``test_size`` stays
10,000, so a record says "examples 0..1000 of 10000", never a bare 1,000.
"""

from __future__ import annotations

import codecs
import pickle
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..errors import RobbenchError
from ..threat_models import l2, linf
from . import DATASETS, Dataset, Split, cache_root, user_data_root
from .npz import images_from_array, labels_from_array, read_npz_folder
from .sources import candidate_dirs, check_digest, download, not_found

TEST_SIZE = 10_000


@dataclass(frozen=True)
class CifarSource:
    name: str
    num_classes: int
    folder: str  # the canonical folder inside the archive
    files: dict[str, tuple[str, ...]]  # split -> pickled batches, in order
    md5: dict[str, str]  # batch -> MD5 published by torchvision (no SHA-256 is published per batch)
    label_key: str
    url: str
    archive: str
    archive_sha256: str  # as Keras and TensorFlow Datasets pin it


CIFAR10 = CifarSource(
    name="cifar10",
    num_classes=10,
    folder="cifar-10-batches-py",
    files={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
    md5={
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
    },
    label_key="labels",
    url="https://www.cs.toronto.edu/~kriz/",
    archive="cifar-10-python.tar.gz",
    archive_sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
)

CIFAR100 = CifarSource(
    name="cifar100",
    num_classes=100,
    folder="cifar-100-python",
    files={"train": ("train",), "test": ("test",)},
    md5={"train": "16019d7e3df5f24257cddd939b257f8d", "test": "f0ef6b0ae62326f3e7ffdfab6717acfc"},
    label_key="fine_labels",
    url="https://www.cs.toronto.edu/~kriz/",
    archive="cifar-100-python.tar.gz",
    archive_sha256="85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
)

SOURCES = {source.name: source for source in (CIFAR10, CIFAR100)}


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays; refuses every other global."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): np.empty(0).__reduce__()[0],
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # how protocol-2 pickles written by Python 3 store bytes
    }

    def find_class(self, module: str, name: str):
        if module.startswith("numpy._core"):  # numpy >= 2 writes the new name of numpy.core
            module = "numpy.core" + module[len("numpy._core") :]
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not an array type")
        return self.ALLOWED[module, name]


def unpickle_batch(path: Path) -> dict[str, object]:
    """One CIFAR batch (a Python-2 pickle of a dict), keys as str."""
    try:
        with open(path, "rb") as handle:
            batch = _ArraysOnly(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise RobbenchError(f"{path} is not a CIFAR batch ({exc}); delete it and fetch it again") from exc
    if not isinstance(batch, dict):
        raise RobbenchError(f"{path} is not a CIFAR batch (no dict inside); delete it and fetch it again")
    return {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in batch.items()}


def read_pickled(source: CifarSource, folder: Path, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for name in source.files[split]:
        path = folder / name
        if not path.is_file():
            raise RobbenchError(f"{path} is missing; the {source.folder} folder is incomplete, fetch it again")
        batch = unpickle_batch(check_digest(path, ("md5", source.md5[name])))
        images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[source.label_key], dtype=np.int64))
    x = np.concatenate(images).transpose(0, 2, 3, 1)  # NHWC view, the layout images_from_array reads
    return images_from_array(x, str(folder)), labels_from_array(np.concatenate(labels), len(x), str(folder))


def _read_folder(source: CifarSource, folder: Path, split: Split) -> tuple[torch.Tensor, torch.Tensor] | None:
    for pickled in (folder / source.folder, folder):
        if any((pickled / name).is_file() for name in source.files[split]):
            return read_pickled(source, pickled, split)
    return read_npz_folder(folder, split)


def _download(source: CifarSource) -> Path | None:
    """The canonical folder in the user cache, from the archive; None when offline."""
    cache = cache_root() / source.name
    archive = download((source.url,), source.archive, cache, ("sha256", source.archive_sha256))
    if archive is None:
        return None
    wanted = {f"{source.folder}/{name}" for names in source.files.values() for name in names}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:  # only the known batch files, so no path in the archive is trusted
            if member.name in wanted and member.isfile():
                target = cache / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
                    shutil.copyfileobj(src, tmp)
                Path(tmp.name).replace(target)
    archive.unlink()
    return cache / source.folder


@lru_cache(maxsize=4)
def _load_split(source_name: str, split: Split, root: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    source = SOURCES[source_name]
    dirs = candidate_dirs(source.name, root)
    for folder in dirs:
        found = _read_folder(source, folder, split)
        if found is not None:
            return found
    downloaded = _download(source)
    if downloaded is None:
        raise not_found(f"{source.name} {split} files ({', '.join(source.files[split])})", dirs,
                        f"pass --data-dir DIR (or set ROBBENCH_DATA=DIR) with DIR/{source.name}/{source.folder}/ "
                        f"or DIR/{source.name}/{split}-*.npz, or unset the offline switch to download {source.archive} "
                        f"from {source.url}")
    return read_pickled(source, downloaded, split)


def _cifar_dataset(source: CifarSource, data_dir: str | None) -> Dataset:
    root = user_data_root(data_dir)  # resolved now, so the cache tells ROBBENCH_DATA values apart
    return Dataset(
        name=source.name,
        input_shape=(3, 32, 32),
        num_classes=source.num_classes,
        value_range=(0.0, 1.0),
        test_size=TEST_SIZE,
        params={},
        threat_models=(linf(8 / 255), l2(0.5)),  # RobustBench's boards
        loader=lambda split: _load_split(source.name, split, str(root) if root else None),
    )


@DATASETS.register("cifar10")
def cifar10(data_dir: str | None = None) -> Dataset:
    """CIFAR-10 (Krizhevsky, 2009): 32x32 colour images, 10 classes; canonical batches or npz folder."""
    return _cifar_dataset(CIFAR10, data_dir)


@DATASETS.register("cifar100")
def cifar100(data_dir: str | None = None) -> Dataset:
    """CIFAR-100 (Krizhevsky, 2009): 32x32 colour images, 100 fine classes; canonical batches or npz folder."""
    return _cifar_dataset(CIFAR100, data_dir)
