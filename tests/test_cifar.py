"""CIFAR-10/100, MNIST and npz datasets: layouts, checksums, lookup order, partial test sets."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from robbench import evaluate
from robbench.data import cifar, get_dataset, idx, sources
from robbench.errors import RobbenchError
from robbench.threat_models import standard_threat_models

SHARED = sources.shared_dirs("cifar10")
needs_shared = pytest.mark.skipif(not SHARED, reason="no shared/data/cifar10 folder near the working directory or checkout")


@pytest.fixture(autouse=True)
def _fresh_caches():
    cifar._load_split.cache_clear()
    idx._load_idx_split.cache_clear()
    yield
    cifar._load_split.cache_clear()
    idx._load_idx_split.cache_clear()


def _batch_bytes(data: np.ndarray, labels: list[int], label_key: str) -> bytes:
    """A batch as CIFAR's pickles hold it: a dict with channel-planar uint8 rows, protocol 2."""
    return pickle.dumps({"batch_label": "testing", "data": data, label_key: labels}, protocol=2)


def _fake_canonical(folder: Path, source: cifar.CifarSource, n: int = 4) -> tuple[cifar.CifarSource, dict]:
    """Tiny batches in ``folder/<source.folder>/``, and the source with their MD5s pinned."""
    rng = np.random.default_rng(0)
    (folder / source.folder).mkdir(parents=True)
    md5, arrays = {}, {}
    for split, names in source.files.items():
        for name in names:
            data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
            labels = rng.integers(0, source.num_classes, size=n).tolist()
            raw = _batch_bytes(data, labels, source.label_key)
            (folder / source.folder / name).write_bytes(raw)
            md5[name] = hashlib.md5(raw).hexdigest()
            arrays[name] = (data, labels)
    return dataclasses.replace(source, md5=md5), arrays


@needs_shared
def test_cifar10_from_the_shared_npz_folder_is_the_first_1000_test_images():
    dataset = get_dataset("cifar10")
    x, y = dataset.load("test")
    assert x.shape == (1000, 3, 32, 32) and x.dtype == torch.float32 and dataset.test_size == 10_000
    assert y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    raw = np.load(SHARED[0] / "test-0-999.npz")["x"]
    assert torch.equal(x[7], torch.from_numpy(raw[7]).permute(2, 0, 1).float() / 255)  # NHWC -> NCHW, /255


@pytest.mark.slow
@needs_shared
def test_a_partial_test_set_is_recorded_as_examples_0_to_1000_of_10000(tmp_path):
    torch.manual_seed(0)
    weights = {"1.weight": torch.randn(10, 3072) * 0.01, "1.bias": torch.zeros(10)}
    from safetensors.torch import save_file

    save_file(weights, str(tmp_path / "w.safetensors"))
    spec = {"name": "cifar-linear", "dataset": "cifar10", "architecture": "linear", "checkpoint": "w.safetensors"}
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(spec))
    (record,) = evaluate(tmp_path / "model.yaml", threat_models="linf", attacks=[], n_examples=5000, device="cpu")
    assert (record.examples.start, record.examples.stop, record.examples.test_size) == (0, 1000, 10_000)
    assert record.n_examples == 1000 and not record.examples.is_full


@pytest.mark.parametrize("source", [cifar.CIFAR10, cifar.CIFAR100], ids=lambda s: s.name)
def test_canonical_pickled_batches_are_checked_and_read(tmp_path, monkeypatch, source):
    folder = tmp_path / source.name
    pinned, arrays = _fake_canonical(folder, source)
    monkeypatch.setitem(cifar.SOURCES, source.name, pinned)
    dataset = get_dataset(source.name, data_dir=str(tmp_path))
    x, y = dataset.load("train")
    first = source.files["train"][0]
    data, labels = arrays[first]
    assert x.shape == (4 * len(source.files["train"]), 3, 32, 32) and y[:4].tolist() == labels
    channel, row, col = 2, 5, 17  # rows are channel-planar: R plane, G plane, B plane, each row-major
    assert float(x[1, channel, row, col]) == data[1, channel * 1024 + row * 32 + col] / np.float32(255)
    assert dataset.num_classes == source.num_classes

    batch = folder / source.folder / source.files["test"][0]
    batch.write_bytes(batch.read_bytes()[:-1] + b"\x00")
    cifar._load_split.cache_clear()
    with pytest.raises(RobbenchError, match="corrupt or truncated"):
        dataset.load("test")


class _Code:
    def __reduce__(self):
        return (os.getcwd, ())


def test_the_unpickler_builds_arrays_and_nothing_else(tmp_path):
    evil = tmp_path / "data_batch_1"
    evil.write_bytes(pickle.dumps({"data": _Code()}, protocol=2))
    with pytest.raises(RobbenchError, match="not an array type"):
        cifar.unpickle_batch(evil)
    data = np.arange(3072 * 2, dtype=np.uint8).reshape(2, 3072)
    raw = _batch_bytes(data, [1, 2], "labels")
    assert b"numpy._core.multiarray" in raw  # numpy >= 2 wrote it; the real files name numpy.core
    for name in (b"numpy._core.multiarray", b"numpy.core.multiarray"):
        path = tmp_path / "batch"
        path.write_bytes(raw.replace(b"numpy._core.multiarray", name))
        batch = cifar.unpickle_batch(path)
        assert np.array_equal(batch["data"], data) and batch["labels"] == [1, 2]


def test_download_is_checked_and_extracted_into_the_cache(tmp_path, monkeypatch, capsys):
    staging = tmp_path / "staging"
    pinned, arrays = _fake_canonical(staging, cifar.CIFAR10, n=2)
    archive = tmp_path / "mirror" / pinned.archive
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(staging / pinned.folder, arcname=pinned.folder)
        tar.addfile(tarfile.TarInfo("../escape"), io.BytesIO(b""))  # never extracted: not a known batch
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(
        cifar.SOURCES, "cifar10", dataclasses.replace(pinned, url=archive.parent.as_uri() + "/", archive_sha256=digest)
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("ROBBENCH_DATA", raising=False)
    monkeypatch.setattr(sources, "_CHECKOUT", tmp_path)  # no shared/data folder is found
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ROBBENCH_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    x, y = get_dataset("cifar10").load("test")
    assert y.tolist() == arrays["test_batch"][1] and x.shape == (2, 3, 32, 32)
    cached = tmp_path / "cache" / "robbench" / "cifar10"
    # announced before it started: which file, from where, into which folder
    assert f"{pinned.archive} is not on this machine; downloading it from {archive.parent.as_uri()}/ into {cached}" in (
        capsys.readouterr().err)
    assert (cached / pinned.folder / "test_batch").is_file() and not (cached / pinned.archive).exists()
    assert not (tmp_path / "cache" / "robbench" / "escape").exists()

    monkeypatch.setitem(cifar.SOURCES, "cifar10", dataclasses.replace(pinned, url=(tmp_path / "nowhere").as_uri() + "/"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    cifar._load_split.cache_clear()
    with pytest.raises(RobbenchError, match=r"cifar10 train files \(data_batch_1.*\) not found .*the download failed.*--data-dir DIR"):
        get_dataset("cifar10").load("train")

    capsys.readouterr()
    # offline: the working mirror is never asked; the error names the files, the switch and the ways to provide them
    monkeypatch.setitem(cifar.SOURCES, "cifar10", dataclasses.replace(pinned, url=archive.parent.as_uri() + "/", archive_sha256=digest))
    for variable in ("ROBBENCH_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(variable, "1")
        cifar._load_split.cache_clear()
        with pytest.raises(RobbenchError) as caught:
            get_dataset("cifar10").load("test")
        message = str(caught.value)
        assert "downloads are off (ROBBENCH_OFFLINE or HF_HUB_OFFLINE is set)" in message and "test_batch" in message
        assert "--data-dir DIR (or set ROBBENCH_DATA=DIR)" in message and pinned.archive in message
        assert "downloading" not in capsys.readouterr().err and not any((tmp_path / "empty-cache").rglob("*.tar.gz"))
        monkeypatch.delenv(variable)


def _npz_split(folder: Path, name: str, index: np.ndarray, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(len(index), 32, 32, 3), dtype=np.uint8)
    np.savez(folder / name, x=x, y=(index % 10).astype(np.int64), index=index.astype(np.int64))


def test_npz_folder_layout_checks_sums_and_refuses_gaps(tmp_path):
    folder = tmp_path / "cifar10"
    folder.mkdir()
    _npz_split(folder, "train-1.npz", np.arange(8, 16))
    _npz_split(folder, "train-0.npz", np.arange(0, 8))
    _npz_split(folder, "test-0-3.npz", np.arange(4))
    dataset = get_dataset("cifar10", data_dir=str(tmp_path))
    x, y = dataset.load("train")
    assert x.shape == (16, 3, 32, 32) and y.tolist() == [i % 10 for i in range(16)]  # in index order
    assert len(dataset.load("test")[0]) == 4 and dataset.test_size == 10_000

    sums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.npz")}
    sums["train-0.npz"] = "0" * 64
    (folder / "SHA256SUMS").write_text("".join(f"{d}  {n}\n" for n, d in sums.items()))
    cifar._load_split.cache_clear()
    with pytest.raises(RobbenchError, match="corrupt or truncated"):
        dataset.load("train")

    (folder / "SHA256SUMS").unlink()
    _npz_split(folder, "test-8-9.npz", np.arange(8, 10))
    cifar._load_split.cache_clear()
    with pytest.raises(RobbenchError, match="prefix"):
        dataset.load("test")


def test_cifar_threat_models_are_the_standard_radii():
    for name in ("cifar10", "cifar100"):
        threats = standard_threat_models(get_dataset(name))
        assert threats["linf"].eps == 8 / 255 and threats["l2"].eps == 0.5
    threats = standard_threat_models(get_dataset("mnist"))
    assert threats["linf"].eps == 0.3 and threats["l2"].eps == 2.0


def _idx_gz(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def _publish_as_mnist(folder: Path, monkeypatch) -> None:
    """Patch the files in ``folder`` in as MNIST's published bytes, so synthetic idx files pass the digest check."""
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    monkeypatch.setitem(idx.SOURCES, "mnist", dataclasses.replace(idx.MNIST, sha256={**idx.MNIST.sha256, **digests}))


def test_mnist_reads_idx_files_from_robbench_data(tmp_path, monkeypatch):
    folder = tmp_path / "mnist"
    folder.mkdir()
    images = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    _idx_gz(folder / "t10k-images-idx3-ubyte.gz", images)
    _idx_gz(folder / "t10k-labels-idx1-ubyte.gz", np.array([7, 2, 1]))
    monkeypatch.setenv("ROBBENCH_DATA", str(tmp_path))
    with pytest.raises(RobbenchError, match="corrupt or truncated"):  # not the published bytes
        get_dataset("mnist").load("test")

    _publish_as_mnist(folder, monkeypatch)
    idx._load_idx_split.cache_clear()
    x, y = get_dataset("mnist").load("test")
    assert x.shape == (3, 1, 28, 28) and y.tolist() == [7, 2, 1]
    assert float(x[1, 0, 0, 5]) == images[1, 0, 5] / np.float32(255)
    assert set(idx.MNIST.sha256) == {name for names in idx.MNIST.files.values() for name in names.values()}


def test_npz_dataset_reads_uint8_nhwc_and_float_nchw(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(6, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "test.npz", x=pixels, y=np.array([0, 1, 2, 0, 1, 2]))
    np.savez(tmp_path / "train.npz", x=pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255, y=np.array([2, 1, 0, 2, 1, 0]))
    dataset = get_dataset("npz", path="test.npz", train_path="train.npz", linf_eps=0.1, data_dir=str(tmp_path))
    assert dataset.input_shape == (3, 8, 8) and dataset.num_classes == 3 and dataset.test_size == 6
    x_test, _ = dataset.load("test")
    x_train, y_train = dataset.load("train")
    assert torch.equal(x_test, x_train) and y_train.tolist() == [2, 1, 0, 2, 1, 0]
    assert dataset.params["sha256"] == hashlib.sha256((tmp_path / "test.npz").read_bytes()).hexdigest()
    assert standard_threat_models(dataset)["linf"].eps == 0.1

    np.savez(tmp_path / "bad.npz", x=np.full((2, 3, 4, 4), 2.0, dtype=np.float32), y=np.array([0, 1]))
    with pytest.raises(RobbenchError, match=r"outside \[0, 1\]"):
        get_dataset("npz", path=str(tmp_path / "bad.npz"))
    with pytest.raises(RobbenchError, match="train_path"):
        get_dataset("npz", path=str(tmp_path / "test.npz")).load("train")


def _local_mnist() -> Path:
    """The folder holding the four original MNIST files, found as robbench finds them (no download)."""
    found = idx.find_local(idx.MNIST, "t10k-images-idx3-ubyte.gz", "test", None)
    if found is None:
        pytest.skip("no local copy of the MNIST idx files (set ROBBENCH_DATA to a folder with mnist/)")
    return found.parent


def test_mnist_from_the_local_data_folder_is_the_published_test_set():
    folder = _local_mnist()
    assert {p.name for p in folder.glob("*.gz")} >= set(idx.MNIST.sha256)
    idx._load_idx_split.cache_clear()
    x, y = get_dataset("mnist").load("test")
    assert x.shape == (10_000, 1, 28, 28) and y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert round(float(x.mean()), 4) == 0.1325  # the published test-set mean pixel


@pytest.mark.parametrize("damage", ["truncated", "altered"])
def test_a_damaged_mnist_file_stops_evaluate_naming_the_file(damage, tmp_path, capsys, monkeypatch):
    """Synthetic idx files stand in for the published ones (their digests patched in), so this runs without data."""
    from robbench.cli import main

    from .helpers import write_submission

    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    _idx_gz(folder / "t10k-images-idx3-ubyte.gz", np.arange(12 * 28 * 28).reshape(12, 28, 28) % 256)
    _idx_gz(folder / "t10k-labels-idx1-ubyte.gz", np.arange(12) % 10)
    _publish_as_mnist(folder, monkeypatch)
    images = folder / "t10k-images-idx3-ubyte.gz"
    data = images.read_bytes()
    middle = len(data) // 2
    images.write_bytes(data[:middle] if damage == "truncated" else data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    submission = write_submission(tmp_path / "sub", "mnist-linear", "linear", {"1.weight": model[1].weight.detach(),
                                  "1.bias": model[1].bias.detach()}, dataset="mnist")
    results = tmp_path / "results"
    idx._load_idx_split.cache_clear()
    code = main(["evaluate", str(submission), "--data-dir", str(tmp_path / "data"), "--results-dir", str(results),
                 "--attacks", "pgd", "--n-examples", "10", "--device", "cpu"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1
    assert str(images) in lines[0] and "corrupt or truncated" in lines[0]
    assert not results.exists() or not list(results.rglob("*.json"))  # nothing evaluated, nothing written
