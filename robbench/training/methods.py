"""Training methods as loss functions plugged into the one training loop.

Each takes the model (in training mode; under torchrun its ``DistributedDataParallel`` wrapper),
a batch and the adversary's settings, and returns the loss to minimise. Adversarial examples are
crafted with robbench's one PGD on the unwrapped model in eval mode (so dropout and batch-norm
statistics do not move while attacking, as in TRADES' code, and no DDP gradient reduction is armed
for a backward that only wants input gradients), then the model is put back in training mode for
the update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks.pgd import pgd_perturb
from ..distributed import unwrap
from ..threat_models import ThreatModel


@dataclass(frozen=True)
class AdversarySettings:
    threat: ThreatModel
    steps: int
    step_size: float
    value_range: tuple[float, float] | None
    beta: float = 6.0  # TRADES: weight of the robustness (KL) term


Method = Callable[[nn.Module, torch.Tensor, torch.Tensor, AdversarySettings, torch.Generator], torch.Tensor]


def _attack(
    model: nn.Module, x, y, adversary: AdversarySettings, generator: torch.Generator | None, steps: int, **kwargs
) -> torch.Tensor:
    """The last PGD iterate (the largest loss, which training wants), crafted in eval mode."""
    inner = unwrap(model)
    inner.eval()
    x_adv = pgd_perturb(
        inner, x, y, norm=adversary.threat.norm, eps=adversary.threat.eps, steps=steps,
        step_size=adversary.step_size, value_range=adversary.value_range, generator=generator,
        keep_first_success=False, **kwargs,
    )
    inner.train()
    return x_adv


def standard(model: nn.Module, x, y, adversary: AdversarySettings, generator: torch.Generator) -> torch.Tensor:
    """Empirical risk minimisation: cross-entropy on clean inputs."""
    return F.cross_entropy(model(x), y)


def pgd_at(model: nn.Module, x, y, adversary: AdversarySettings, generator: torch.Generator) -> torch.Tensor:
    """Madry et al. (2018): cross-entropy on PGD examples (random start, maximal loss)."""
    return F.cross_entropy(model(_attack(model, x, y, adversary, generator, adversary.steps)), y)


def fgsm_rs(model: nn.Module, x, y, adversary: AdversarySettings, generator: torch.Generator) -> torch.Tensor:
    """Wong et al. (2020): one signed-gradient step of alpha (1.25·eps) from a uniform start in the eps-box.

    That is PGD with one step: the start is clamped into the value range, the step projected back
    into the ball and the value range, exactly as in their code.
    """
    return F.cross_entropy(model(_attack(model, x, y, adversary, generator, 1)), y)


def trades(model: nn.Module, x, y, adversary: AdversarySettings, generator: torch.Generator) -> torch.Tensor:
    """Zhang et al. (2019): CE(f(x), y) + beta · KL(f(x) || f(x')), x' maximising that KL.

    The inner maximisation starts at x + 0.001·N(0, 1) (at x itself the KL has zero gradient)
    and takes signed steps on the summed KL, as in the authors' code; it needs no labels.
    """
    inner = unwrap(model)
    inner.eval()
    with torch.no_grad():
        p_clean = F.softmax(inner(x), dim=1)
    start = x + 0.001 * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)

    def kl_to_clean(logits: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
        return F.kl_div(F.log_softmax(logits, dim=1), p_clean, reduction="sum")

    x_adv = _attack(model, x, y, adversary, None, adversary.steps, start=start, loss_fn=kl_to_clean)
    logits = model(x)
    robust = F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(logits, dim=1), reduction="batchmean")
    return F.cross_entropy(logits, y) + adversary.beta * robust


METHODS: dict[str, Method] = {"standard": standard, "pgd-at": pgd_at, "trades": trades, "fgsm-rs": fgsm_rs}
