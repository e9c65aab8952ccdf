"""MNIST-format datasets (gzipped idx files): fashion-mnist and mnist.

Fashion-MNIST's 10,000 test images ship inside the package, so evaluation needs no download.
Other files are looked for as ``robbench.data.sources`` describes (``--data-dir``/``ROBBENCH_DATA``,
the bundled files, Debian's ``dataset-fashion-mnist`` folder, a ``shared/data`` folder, the user
cache) and finally downloaded from the canonical mirrors with SHA-256 verification.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..errors import RobbenchError
from ..threat_models import ThreatModel, l2, linf
from . import DATASETS, Dataset, cache_root, user_data_root
from .sources import candidate_dirs, check_digest, download, not_found

BUNDLED = Path(__file__).parent / "files"


@dataclass(frozen=True)
class IdxSource:
    name: str
    files: dict[str, dict[str, str]]  # split -> {"images"|"labels": filename}
    sha256: dict[str, str]  # filename -> digest
    urls: tuple[str, ...]  # mirrors, tried in order
    system_dirs: tuple[str, ...]  # distribution packages
    install_hint: str
    threat_models: tuple[ThreatModel, ...]
    class_names: tuple[str, ...] | None = None


_MNIST_FILES = {
    "train": {"images": "train-images-idx3-ubyte.gz", "labels": "train-labels-idx1-ubyte.gz"},
    "test": {"images": "t10k-images-idx3-ubyte.gz", "labels": "t10k-labels-idx1-ubyte.gz"},
}

FASHION_MNIST = IdxSource(
    name="fashion-mnist",
    files=_MNIST_FILES,
    sha256={
        "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
        "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
    },
    urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    install_hint="apt-get install dataset-fashion-mnist, or pass --data-dir DIR with DIR/fashion-mnist/*.gz",
    threat_models=(linf(0.1), l2(1.5)),
    class_names=("T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"),
)

MNIST = IdxSource(
    name="mnist",
    files=_MNIST_FILES,
    sha256={  # the SHA-256 that TensorFlow Datasets and Keras publish for LeCun's files
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    urls=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",  # PyTorch's mirror
        "https://storage.googleapis.com/cvdf-datasets/mnist/",  # TensorFlow's mirror
        "http://yann.lecun.com/exdb/mnist/",
    ),
    system_dirs=(),
    install_hint="connect to the internet once, or pass --data-dir DIR with DIR/mnist/*-ubyte.gz",
    threat_models=(linf(0.3), l2(2.0)),  # Madry et al.'s L-inf radius
    class_names=tuple(str(digit) for digit in range(10)),
)

SOURCES = {source.name: source for source in (FASHION_MNIST, MNIST)}


def _search_dirs(source: IdxSource, split: str, data_dir: str | None) -> list[Path]:
    own = [BUNDLED / source.name] if split == "test" and (BUNDLED / source.name).is_dir() else []
    return candidate_dirs(source.name, data_dir, own + [Path(d) for d in source.system_dirs])


def find_local(source: IdxSource, filename: str, split: str, data_dir: str | None) -> Path | None:
    """The first local copy of ``filename`` (not checked yet), without downloading; None when there is none."""
    return next((folder / filename for folder in _search_dirs(source, split, data_dir) if (folder / filename).is_file()), None)


def locate(source: IdxSource, filename: str, split: str, data_dir: str | None) -> Path:
    digest = ("sha256", source.sha256[filename])
    local = find_local(source, filename, split, data_dir)
    if local is not None:
        return check_digest(local, digest)
    downloaded = download(source.urls, filename, cache_root() / source.name, digest)
    if downloaded is not None:
        return downloaded
    raise not_found(f"{source.name} file {filename}", _search_dirs(source, split, data_dir), source.install_hint)


def read_idx(path: Path) -> np.ndarray:
    """Parse an idx file (big-endian header: magic with dtype/ndim, then the dimensions)."""
    try:
        with gzip.open(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        raise RobbenchError(f"{path} is not a readable gzip file ({exc}); delete it and fetch it again") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise RobbenchError(f"{path} is not an unsigned-byte idx file; check the file you passed")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise RobbenchError(f"{path} is truncated: header promises {dims}, body has {body.size} bytes")
    return body.reshape(dims)


@lru_cache(maxsize=8)
def _load_idx_split(source_name: str, split: str, data_dir: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    source = SOURCES[source_name]
    names = source.files[split]
    images = read_idx(locate(source, names["images"], split, data_dir))
    labels = read_idx(locate(source, names["labels"], split, data_dir))
    if len(images) != len(labels):
        raise RobbenchError(f"{source.name} {split}: {len(images)} images but {len(labels)} labels; files are mismatched")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def _idx_dataset(source: IdxSource, data_dir: str | None) -> Dataset:
    root = user_data_root(data_dir)  # resolved now, so the cache tells ROBBENCH_DATA values apart
    return Dataset(
        name=source.name,
        input_shape=(1, 28, 28),
        num_classes=10,
        value_range=(0.0, 1.0),
        test_size=10_000,
        params={},
        threat_models=source.threat_models,
        loader=lambda split: _load_idx_split(source.name, split, str(root) if root else None),
        class_names=source.class_names,
    )


@DATASETS.register("mnist")
def mnist(data_dir: str | None = None) -> Dataset:
    """MNIST (LeCun et al., 1998): 28x28 grey handwritten digits, 10 classes."""
    return _idx_dataset(MNIST, data_dir)


@DATASETS.register("fashion-mnist")
def fashion_mnist(data_dir: str | None = None) -> Dataset:
    """Fashion-MNIST (Xiao et al., 2017): 28x28 grey clothing images, 10 classes; test set bundled."""
    return _idx_dataset(FASHION_MNIST, data_dir)
