"""Helpers the tests share (no fixtures, no tests): small models, submissions, records, a malicious pickle.

Test modules import from here, never from each other or from conftest.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

from robbench.config import Metadata
from robbench.data import get_dataset
from robbench.loader import build_model
from robbench.results import AttackRecord, Checkpoint, EvalRecord, Examples, StageRecord, ThreatModelRecord, Versions

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


def make_record(
    name: str,
    clean: float = 0.9,
    robust: float = 0.5,
    *,
    pgd: float | None = None,
    dataset: str = "fashion-mnist",
    threat: str = "linf",
    norm: str = "Linf",
    eps: float = 0.1,
    standard: bool = True,
    start: int = 0,
    stop: int = 10_000,
    test_size: int = 10_000,
    training: str = "pgd-at",
    paper: str | None = None,
) -> EvalRecord:
    """A valid record with every required field filled; accuracies are fractions."""
    pgd = robust if pgd is None else pgd
    n = stop - start
    return EvalRecord(
        name=name,
        dataset=dataset,
        threat_model=ThreatModelRecord(name=threat, norm=norm, eps=eps, standard=standard),
        examples=Examples(start=start, stop=stop, test_size=test_size),
        n_examples=n,
        clean_accuracy=clean,
        robust_accuracy=robust,
        attacks=[
            AttackRecord(
                name="pgd", accuracy=pgd, config={"steps": 10},
                stages=[StageRecord(name="pgd", n_attacked=n, n_broken=round(n * (clean - pgd)), accuracy=pgd)],
            ),
            AttackRecord(
                name="autoattack", accuracy=robust, config={"version": "standard"},
                stages=[StageRecord(name="apgd-ce", n_attacked=round(n * pgd), n_broken=round(n * (pgd - robust)),
                                    accuracy=robust)],
            ),
        ],
        architecture="small-cnn",
        parameter_count=123_456,
        metadata=Metadata(training=training, paper=paper),
        checkpoint=Checkpoint(path=f"{name}.safetensors", sha256="0" * 64),
        seed=0,
        batch_size=500,
        device="cpu",
        versions=Versions(robbench="0.1.0", torch="2.4.0", pyautoattack="0.2.0", python="3.11"),
        wall_time_s=1.0,
        timestamp="2024-01-01T00:00:00+00:00",
    )


class RunsCode:
    """Unpickling this calls os.system: the classic malicious checkpoint."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))
