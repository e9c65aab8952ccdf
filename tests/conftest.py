"""Shared fixtures (small real models trained on the bundled data, written as submissions), and the
skip of ``needs_data`` tests on a machine without the Fashion-MNIST training split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from .helpers import fit_linear_fashion_mnist, write_submission

NO_TRAINING_SPLIT = (
    "needs the Fashion-MNIST training split: apt-get install dataset-fashion-mnist, "
    "or ROBBENCH_DATA=DIR with DIR/fashion-mnist/train-*-ubyte.gz"
)


def fashion_mnist_training_split_present() -> bool:
    """Both training files are in a local folder robbench searches (no download is tried)."""
    from robbench.data.idx import FASHION_MNIST, find_local

    return all(find_local(FASHION_MNIST, name, "train", None) for name in FASHION_MNIST.files["train"].values())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    marked = [item for item in items if item.get_closest_marker("needs_data")]
    if marked and not fashion_mnist_training_split_present():
        for item in marked:
            item.add_marker(pytest.mark.skip(reason=NO_TRAINING_SPLIT))


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for a module's tests: on two shared cores it is many times faster than oversubscribed ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def linear_submission(tmp_path_factory) -> Path:
    model = fit_linear_fashion_mnist()
    return write_submission(tmp_path_factory.mktemp("linear"), "fmnist-linear", "linear", model.state_dict())


@pytest.fixture(scope="session")
def tiny_cifar_dir(tmp_path_factory) -> str:
    """A CIFAR-10 npz folder of 80 random training and 16 test images (the layout of shared/data/cifar10)."""
    root = tmp_path_factory.mktemp("data")
    folder = root / "cifar10"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train-0.npz", 80), ("test-0-15.npz", 16)):
        x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        np.savez(folder / name, x=x, y=rng.integers(0, 10, size=n), index=np.arange(n))
    return str(root)
