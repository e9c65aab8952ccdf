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
from robbench.evidence import Evidence
from robbench.loader import build_model
from robbench.results import AttackSpec, Checkpoint, EvalRecord, Examples, RunConfig, Versions
from robbench.threat_models import ThreatModel

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
    status: str | None = None,
    dataset: str = "fashion-mnist",
    threat: str = "linf",
    norm: str = "Linf",
    eps: float = 0.1,
    standard: bool = True,
    start: int = 0,
    stop: int | None = None,
    test_size: int = 10_000,
    training: str = "pgd-at",
    paper: str | None = None,
    sha256: str = "0" * 64,
    attacks: tuple[str, ...] = ("pgd", "autoattack"),
    seed: int = 0,
    timestamp: str = "2024-01-01T00:00:00+00:00",
    repo: str | None = None,
    revision: str | None = None,
):
    """A valid record built from per-example evidence.

    Without ``status``: the first ``clean`` fraction of examples is correct, PGD breaks the ones
    from ``pgd`` to ``clean``, AutoAttack's APGD-CE those from ``robust`` to ``pgd``; the rest survive.
    """

    stop = stop if stop is not None else start + (len(status) if status is not None else test_size)
    n = stop - start
    if status is None:
        pgd = robust if pgd is None else pgd
        n_robust, n_pgd, n_clean = round(n * robust), round(n * pgd), round(n * clean)
        status = "+" * n_robust + "1" * (n_pgd - n_robust) + "0" * (n_clean - n_pgd) + "-" * (n - n_clean)
    stage_names = {"pgd": ["pgd"], "autoattack": ["apgd-ce"]}
    stages = [f"{a}/{s}" for a in attacks for s in stage_names.get(a, [a])]
    evidence = Evidence(stages=stages, status=status)
    config = RunConfig(
        name=name, dataset=dataset, data_sha256="1" * 64,
        threat_model=ThreatModel(name=threat, norm=norm, eps=eps, standard=standard),
        examples=Examples(start=start, stop=stop, test_size=test_size),
        attacks=[AttackSpec(name=a, config={}) for a in attacks], architecture="small-cnn",
        checkpoint=Checkpoint(path=f"{name}.safetensors", sha256=sha256, repo=repo, revision=revision), seed=seed, batch_size=500, device="cpu",
        versions=Versions(robbench="0.1.0", torch="2.4.0", pyautoattack="0.2.0", python="3.11"),
    )
    return EvalRecord(
        config=config, metadata=Metadata(training=training, paper=paper), parameter_count=123_456,
        clean_accuracy=evidence.clean_accuracy(), robust_accuracy=evidence.robust_accuracy(),
        attacks=evidence.attack_results(), evidence=evidence, wall_time_s=1.0, timestamp=timestamp,
    )


def exact_linf_robust(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Per example: correct under every x' in the eps-box around x intersected with [0, 1].

    For each wrong class j the margin (w_y - w_j)·x' + (b_y - b_j) is linear in x', so its minimum
    over the box is at the corner x'_i = clamp(x_i - eps·sign(v_i), 0, 1), v = w_y - w_j.
    The example is robust iff every class pair keeps a positive margin at its own worst corner.
    """
    flat = x.flatten(1).double()
    w, b = weight.double(), bias.double()
    robust = torch.ones(len(x), dtype=torch.bool)
    for j in range(w.shape[0]):
        v = w[y] - w[j]  # (n, features)
        corner = (flat - eps * v.sign()).clamp(0, 1)
        margin = (v * corner).sum(1) + b[y] - b[j]
        robust &= (margin > 0) | (y == j)
    return robust


class RunsCode:
    """Unpickling this calls os.system: the classic malicious checkpoint."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))
