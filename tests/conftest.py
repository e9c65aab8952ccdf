"""Shared fixtures: small real models trained on the bundled data, written as submissions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from robbench.data import get_dataset
from robbench.loader import build_model

REPO = Path(__file__).resolve().parent.parent


def write_submission(folder: Path, name: str, architecture: str, state: dict, dataset: str = "fashion-mnist", **extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    spec = {
        "name": name,
        "dataset": dataset,
        "architecture": architecture,
        "checkpoint": "model.safetensors",
        "metadata": {"training": "standard"},
        **extra,
    }
    path = folder / "model.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def fit_linear_fashion_mnist(n: int = 2000, steps: int = 150, seed: int = 0) -> torch.nn.Module:
    """A linear classifier fitted on the bundled test images 5000.. (disjoint from the evaluated ones)."""
    torch.manual_seed(seed)
    dataset = get_dataset("fashion-mnist")
    x, y = dataset.load("test")
    x, y = x[5000 : 5000 + n], y[5000 : 5000 + n]
    model = build_model("linear", {}, None, dataset)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()


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
