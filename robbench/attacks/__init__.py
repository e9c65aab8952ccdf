"""Attacks: ``Attack.stages(context)`` gives the components to run, in order, on surviving examples.

A stage maps a batch of still-correct examples to candidate adversarial examples. It never clips
to [0, 1] by itself: it projects onto the threat model's ball intersected with the dataset's
value range. The evaluator, not the attack, decides what counts (see ``robbench.attacks.verify``).
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..errors import RobbenchError
from ..registry import Registry
from ..threat_models import ThreatModel


@dataclass(frozen=True)
class AttackContext:
    """What every stage may use: the model under attack and the rules of the game."""

    model: nn.Module
    threat: ThreatModel
    value_range: tuple[float, float] | None
    num_classes: int
    seed: int
    device: torch.device


class _InputGradientPath(nn.Module):
    """``model(x) + 0·Σx``: the same logits, with an autograd path from the input in any case."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        return logits + (x.flatten(1) * 0).sum(1, keepdim=True).to(logits.dtype)


def with_input_gradient(model: nn.Module) -> nn.Module:
    """``model`` for gradient attacks: a model that detaches its input has a zero input gradient, not an error.

    Such a model masks its gradients completely: the gradient attacks cannot move, the gradient-free
    ones (Square) decide, and ``masked-gradients`` marks the record (robbench's own check sees no
    gradient path). Chosen over refusing the model because a record with the black-box result, flagged,
    says more than an error. Adding ±0 leaves every logit and every existing gradient unchanged.
    """
    return _InputGradientPath(model)


#: (x, y, batch_seed) -> x_adv, for a batch of examples the model still classifies correctly
StageFn = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


#: ``report(fraction)``: how much of the current batch a stage has done, in [0, 1] (progress bars move within a batch)
Report = Callable[[float], None]


@dataclass(frozen=True)
class Stage:
    name: str
    run: StageFn
    reports_progress: bool = False  # True: ``run(x, y, batch_seed, report=...)`` calls ``report`` as it goes


@dataclass
class Attack(ABC):
    """An attack with its configuration; ``config()`` is recorded in every result."""

    name: str = field(init=False, default="")

    @abstractmethod
    def stages(self, context: AttackContext) -> list[Stage]:
        """Components to run in sequence; may depend on the dataset (e.g. its number of classes)."""

    def config(self, context: AttackContext) -> dict[str, Any]:
        return {key: value for key, value in vars(self).items() if key != "name"}


ATTACKS: Registry[Callable[..., Attack]] = Registry(
    "attack",
    builtin_modules=(
        "robbench.attacks.pgd", "robbench.attacks.autoattack", "robbench.attacks.apgd", "robbench.attacks.square",
        "robbench.attacks.decision", "robbench.attacks.transfer",
    ),
    entry_point_group="robbench.attacks",
)


def create_attack(name: str, **kwargs: Any) -> Attack:
    try:
        return ATTACKS.get(name).factory(**kwargs)
    except TypeError as exc:
        raise RobbenchError(f"attack {name!r} rejected its options ({exc})") from exc


def derive_seed(seed: int, *parts: int | str) -> int:
    """A 31-bit seed from the recorded seed and a stable description of the random step."""
    words = [seed] + [p if isinstance(p, int) else zlib.crc32(p.encode()) for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1)[0] & 0x7FFFFFFF)
