from __future__ import annotations

import gzip
import math
import shutil
from pathlib import Path

import pytest
import torch

import robbench
from robbench.data import get_dataset, idx
from robbench.errors import RobbenchError

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def test_fashion_mnist_test_set_is_bundled_and_exact():
    x, y = robbench.load_dataset("fashion-mnist", split="test")
    assert x.shape == (10_000, 1, 28, 28) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and y[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert torch.bincount(y).tolist() == [1000] * 10


@pytest.mark.slow
@pytest.mark.needs_data
def test_fashion_mnist_train_from_debian_package():
    assert DEBIAN.is_dir(), "CI installs dataset-fashion-mnist (apt-get install -y dataset-fashion-mnist)"
    x, y = robbench.load_dataset("fashion-mnist", split="train", n=100)
    assert x.shape == (100, 1, 28, 28) and y[:5].tolist() == [9, 0, 0, 3, 0]


def test_data_dir_layout_and_corrupt_file_is_refused(tmp_path):
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    shutil.copy(idx.BUNDLED / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz", folder)
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz", "wb") as handle:
        handle.write(b"\x00\x00\x08\x03" + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2)
    idx._load_idx_split.cache_clear()
    with pytest.raises(RobbenchError, match="corrupt or truncated"):
        get_dataset("fashion-mnist", data_dir=str(tmp_path)).load("test")


def test_missing_dataset_says_where_it_looked(monkeypatch, tmp_path):
    empty = idx.IdxSource(
        name="fashion-mnist", files=idx.FASHION_MNIST.files, sha256=idx.FASHION_MNIST.sha256, urls=(),
        system_dirs=(str(tmp_path / "nowhere"),), install_hint=idx.FASHION_MNIST.install_hint,
        threat_models=idx.FASHION_MNIST.threat_models,
    )
    monkeypatch.setitem(idx.SOURCES, "fashion-mnist", empty)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    idx._load_idx_split.cache_clear()
    try:
        with pytest.raises(RobbenchError) as info:
            robbench.load_dataset("fashion-mnist", split="train")
    finally:
        idx._load_idx_split.cache_clear()
    message = str(info.value)
    assert "not found" in message and str(tmp_path / "nowhere") in message and "apt-get install" in message


def test_truncated_idx_body_is_detected(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(b"\x00\x00\x08\x03" + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\x00" * 100)
    with pytest.raises(RobbenchError, match="truncated"):
        idx.read_idx(path)


def test_tsipras_is_deterministic_and_has_the_papers_statistics():
    dataset = get_dataset("tsipras", n=20_000, seed=3)
    assert dataset.value_range is None and dataset.input_shape == (101,) and dataset.num_classes == 2
    x, y = dataset.load("test")
    x2, y2 = get_dataset("tsipras", n=20_000, seed=3).load("test")
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, dataset.load("train")[0])  # train and test are different samples
    sign = y.float() * 2 - 1
    n = len(y)
    assert abs((x[:, 0] == sign).float().mean().item() - 0.95) < 4 * math.sqrt(0.95 * 0.05 / n)
    eta = 3 / math.sqrt(100)
    weak_mean = (x[:, 1:] * sign[:, None]).mean().item()
    assert abs(weak_mean - eta) < 4 / math.sqrt(n * 100)
    assert set(y.unique().tolist()) == {0, 1}


def test_tsipras_threat_model_is_twice_eta():
    from robbench.threat_models import standard_threat_models

    threats = standard_threat_models(get_dataset("tsipras", d=25))
    assert threats["linf"].eps == pytest.approx(2 * 3 / 5)
    assert set(standard_threat_models(get_dataset("fashion-mnist"))) == {"linf", "l2"}


@pytest.mark.parametrize(
    ("dataset", "params", "refused"),
    [
        ("tsipras", {"d": 10, "p": 0.9, "eta": 0.5, "n": 100, "seed": 1}, None),
        ("npz", {"num_classes": 10, "linf_eps": 0.03, "l2_eps": 0.5}, None),
        ("npz", {"path": "/etc/test.npz", "linf_eps": 0.03}, "'path'"),
        ("npz", {"train_path": "train.npz"}, "'train_path'"),
        ("fashion-mnist", {"data_dir": "/srv/data"}, "'data_dir'"),
        ("tsipras", {"data_dir": "x"}, "'data_dir'"),
    ],
)
def test_hub_submissions_set_only_the_parameters_a_dataset_declares_safe(dataset, params, refused):
    from robbench.data import check_hub_params

    if refused is None:
        check_hub_params(dataset, params)
    else:
        with pytest.raises(RobbenchError, match=f"dataset_kwargs {refused} of dataset '{dataset}' cannot come from a hub"):
            check_hub_params(dataset, params)
