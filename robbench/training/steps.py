"""A fixed budget of optimiser steps on tensors in memory: how the studies in ``robbench.reports`` train.

``robbench train`` runs epochs over a dataset with a schedule, held-out selection and a resumable
state; a study instead wants every model to get the same number of steps, whatever the size of
its training set, on data it already holds. Both use the same training methods (``METHODS``) and
the same learning-rate schedules (``learning_rate_factor``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..attacks.pgd import pgd_step_size
from ..errors import RobbenchError
from ..threat_models import ThreatModel
from .loop import learning_rate_factor
from .methods import METHODS, AdversarySettings

if TYPE_CHECKING:
    from ..data import Dataset


def train_steps(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    method: str,
    adversary: AdversarySettings | None,
    optimizer: torch.optim.Optimizer,
    steps: int,
    lr: float,
    attack_generator: torch.Generator | None,
    batch_size: int | None = None,
    shuffle: torch.Generator | None = None,
    schedule: str = "cosine",
) -> nn.Module:
    """``steps`` updates of ``method``'s loss, the learning rate ``lr``·``schedule``; the model in eval mode.

    ``batch_size`` None: every step on all of (x, y), in order (full-batch). Otherwise minibatches
    of ``min(batch_size, len(x))``, consecutive slices of a stream of ``shuffle``'s permutations.
    Deterministic for the generators on a given device and thread count.
    """
    loss_of = METHODS[method]
    n = x.shape[0]
    batch = None if batch_size is None else min(batch_size, n)
    stream = torch.empty(0, dtype=torch.long)
    model.train()
    for step in range(steps):
        if batch is None:
            xb, yb = x, y
        else:
            while stream.numel() < batch:
                stream = torch.cat([stream, torch.randperm(n, generator=shuffle)])
            index, stream = stream[:batch].to(x.device), stream[batch:]
            xb, yb = x[index], y[index]
        for group in optimizer.param_groups:
            group["lr"] = lr * learning_rate_factor(schedule, step / steps)
        loss = loss_of(model, xb, yb, adversary, attack_generator)
        if not torch.isfinite(loss):
            raise RobbenchError(f"training diverged at step {step} (loss {loss.item()}); lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


def train_new_model(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    dataset: "Dataset",
    architecture: str,
    architecture_kwargs: dict | None,
    threat: ThreatModel | None,
    steps: int,
    batch_size: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    attack_steps: int,
    seed: int,
    device: torch.device,
) -> nn.Module:
    """A fresh model trained by ``train_steps``: ``pgd-at`` at ``threat`` (``standard`` when None), ``steps``
    SGD steps on minibatches of ``min(batch_size, len(x))``, cosine learning rate. Deterministic for ``seed``
    on a given device and thread count.
    """
    from ..loader import build_model
    from ..runtime import seed_everything

    seed_everything(seed)  # initialisation and dropout
    model = build_model(architecture, architecture_kwargs or {}, None, dataset).to(device)
    adversary = None if threat is None else AdversarySettings(
        threat=threat, steps=attack_steps, step_size=pgd_step_size(threat.eps, attack_steps), value_range=dataset.value_range,
    )
    return train_steps(
        model, x.to(device), y.to(device), method="standard" if threat is None else "pgd-at", adversary=adversary,
        optimizer=torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay),
        steps=steps, lr=lr, batch_size=batch_size, shuffle=torch.Generator().manual_seed(seed),
        attack_generator=torch.Generator(device=device).manual_seed(seed + 1),
    )
