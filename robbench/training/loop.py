"""``robbench train``: train a reference baseline, top to bottom in one function.

Writes into the output folder: ``model.safetensors``, a ready ``model.yaml`` and
``train_log.json`` (per epoch: training loss, clean and PGD accuracy on the first
``eval_examples`` test images, learning rate, seconds). The test images only monitor
training; nothing is selected on them.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

import torch
import yaml
from safetensors.torch import save as safetensors_bytes

from ..attacks.pgd import PGDAttack
from ..checkpoints import file_sha256
from ..config import TrainSpec
from ..data import get_dataset
from ..errors import RobbenchError
from ..evaluation import ProgressFactory, run_attacks
from ..loader import build_model
from ..results import atomic_write_bytes, atomic_write_text
from ..runtime import describe_device, resolve_device, seed_everything, versions
from ..threat_models import get_threat_model
from .methods import METHODS, AdversarySettings


def learning_rate_factor(schedule: str, progress: float) -> float:
    """Multiplier of the base learning rate at ``progress`` in [0, 1) of training."""
    if schedule == "piecewise":  # Madry et al.: /10 at half and at three quarters
        return 0.01 if progress >= 0.75 else 0.1 if progress >= 0.5 else 1.0
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


def train(
    spec: TrainSpec,
    out_dir: Path,
    *,
    device: str = "auto",
    data_dir: str | None = None,
    progress: ProgressFactory | None = None,
    log: Callable[[dict], None] | None = None,
) -> dict:
    """Train ``spec`` and write the submission folder; return the training log."""
    seed_everything(spec.seed)
    torch_device = resolve_device(device)
    dataset = get_dataset(spec.dataset, **({**spec.dataset_kwargs, "data_dir": data_dir} if data_dir else spec.dataset_kwargs))
    x_train, y_train = dataset.load("train", spec.n_train)
    x_eval, y_eval = dataset.load("test", spec.eval_examples)
    threat = get_threat_model(dataset, spec.threat_model)
    if spec.eps is not None:
        threat = threat.with_eps(spec.eps)
    adversary = AdversarySettings(
        threat=threat,
        steps=spec.attack_steps,
        step_size=spec.attack_step_size or 2.5 * threat.eps / spec.attack_steps,
        value_range=dataset.value_range,
    )
    method = METHODS[spec.method]

    model = build_model(spec.architecture, spec.architecture_kwargs, spec.normalization, dataset).to(torch_device)
    optimizer = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    steps_per_epoch = math.ceil(len(x_train) / spec.batch_size)
    total_steps = spec.epochs * steps_per_epoch
    shuffle = torch.Generator().manual_seed(spec.seed)
    attack_rng = torch.Generator(device=torch_device).manual_seed(spec.seed + 1)
    monitor = PGDAttack(steps=spec.eval_attack_steps)

    history = []
    step = 0
    for epoch in range(1, spec.epochs + 1):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(len(x_train), generator=shuffle)
        advance = (progress or (lambda d, t: lambda n: None))(f"epoch {epoch}/{spec.epochs}", len(x_train))
        loss_sum, seen = 0.0, 0
        for start in range(0, len(order), spec.batch_size):
            index = order[start : start + spec.batch_size]
            x, y = x_train[index].to(torch_device), y_train[index].to(torch_device)
            for group in optimizer.param_groups:
                group["lr"] = spec.lr * learning_rate_factor(spec.schedule, step / total_steps)
            loss = method(model, x, y, adversary, attack_rng)
            if not torch.isfinite(loss):
                raise RobbenchError(f"training diverged at epoch {epoch} (loss {loss.item()}); lower lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_sum += loss.item() * len(index)
            seen += len(index)
            advance(len(index))
        outcome = run_attacks(
            model, x_eval, y_eval, threat=threat, value_range=dataset.value_range,
            num_classes=dataset.num_classes, attacks=[monitor], batch_size=500, device=torch_device, seed=spec.seed,
        )
        entry = {
            "epoch": epoch,
            "loss": loss_sum / seen,
            "clean_accuracy": outcome.clean_accuracy,
            "pgd_accuracy": outcome.robust_accuracy,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(time.perf_counter() - started, 2),
        }
        history.append(entry)
        if log:
            log(entry)

    model.eval()
    return _write_submission(spec, model, threat, history, out_dir, describe_device(torch_device))


def _write_submission(spec: TrainSpec, model, threat, history: list[dict], out_dir: Path, device: str) -> dict:
    from ..loader import inner_model

    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / "model.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in inner_model(model).state_dict().items()}
    atomic_write_bytes(weights, safetensors_bytes(state, metadata={"robbench_name": spec.name}))
    model_yaml = {
        "name": spec.name,
        "dataset": spec.dataset,
        **({"dataset_kwargs": spec.dataset_kwargs} if spec.dataset_kwargs else {}),
        "architecture": spec.architecture,
        "architecture_kwargs": spec.architecture_kwargs,
        "checkpoint": weights.name,
        "sha256": file_sha256(weights),
        "normalization": spec.normalization.model_dump() if spec.normalization else None,
        "threat_models": None,
        "metadata": {**spec.metadata.model_dump(), "training": spec.method},
    }
    atomic_write_text(out_dir / "model.yaml", yaml.safe_dump(model_yaml, sort_keys=False))
    log = {
        "config": spec.model_dump(mode="json"),
        "threat_model": {"name": threat.name, "norm": threat.norm, "eps": threat.eps},
        "device": device,
        "versions": versions(),
        "epochs": history,
    }
    atomic_write_text(out_dir / "train_log.json", json.dumps(log, indent=2) + "\n")
    return log
