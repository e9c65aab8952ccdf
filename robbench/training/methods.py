"""Training methods as loss functions plugged into the one training loop.

Each takes the model (in training mode), a batch and the threat model, and returns the loss
to minimise. Adversarial examples are crafted with robbench's one PGD, with the model in eval
mode (so dropout/batch-norm do not randomise the attack), then the model is put back in
training mode for the update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks.pgd import pgd_perturb
from ..threat_models import ThreatModel


@dataclass(frozen=True)
class AdversarySettings:
    threat: ThreatModel
    steps: int
    step_size: float
    value_range: tuple[float, float] | None


Method = Callable[[nn.Module, torch.Tensor, torch.Tensor, AdversarySettings, torch.Generator], torch.Tensor]


def standard(model: nn.Module, x, y, adversary: AdversarySettings, generator: torch.Generator) -> torch.Tensor:
    """Empirical risk minimisation: cross-entropy on clean inputs."""
    return F.cross_entropy(model(x), y)


def pgd_at(model: nn.Module, x, y, adversary: AdversarySettings, generator: torch.Generator) -> torch.Tensor:
    """Madry et al. (2018): cross-entropy on PGD examples (random start, maximal loss)."""
    model.eval()
    x_adv = pgd_perturb(
        model, x, y, norm=adversary.threat.norm, eps=adversary.threat.eps, steps=adversary.steps,
        step_size=adversary.step_size, value_range=adversary.value_range, generator=generator,
        keep_first_success=False,
    )
    model.train()
    return F.cross_entropy(model(x_adv), y)


METHODS: dict[str, Method] = {"standard": standard, "pgd-at": pgd_at}
