"""Attacks: ``Attack.stages(model, rules)`` gives the components to run, in order, on surviving examples.

A stage maps a batch of still-correct examples to candidate adversarial examples. It never clips
to [0, 1] by itself: it projects onto the threat model's ball intersected with the dataset's
value range. The evaluator, not the attack, decides what counts (see ``robbench.attacks.verify``).
"""

from __future__ import annotations

import inspect
import typing
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from pydantic import TypeAdapter, ValidationError
from torch import nn

from ..errors import RobbenchError, quoted
from ..registry import Registry
from ..threat_models import ThreatModel


@dataclass(frozen=True)
class AttackRules:
    """The rules of a run, the same for every model attacked under them (the model is passed separately).

    What an attack's stages and recorded ``config`` may depend on: the threat model, the dataset's
    value range (``None``: unbounded) and number of classes, the run's seed and the device.
    """

    threat: ThreatModel
    value_range: tuple[float, float] | None
    num_classes: int
    seed: int = 0
    device: torch.device = torch.device("cpu")

    @classmethod
    def for_dataset(cls, dataset: Any, threat: ThreatModel, *, seed: int = 0,
                    device: torch.device = torch.device("cpu")) -> "AttackRules":
        """The rules of attacking ``dataset``'s examples under ``threat`` (its value range and classes)."""
        return cls(threat, dataset.value_range, dataset.num_classes, seed, device)


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
    def stages(self, model: nn.Module, rules: AttackRules) -> list[Stage]:
        """Components to run on ``model`` in sequence; may depend on the rules (e.g. the number of classes)."""

    def config(self, rules: AttackRules) -> dict[str, Any]:
        return {key: value for key, value in vars(self).items() if key != "name"}


ATTACKS: Registry[Callable[..., Attack]] = Registry(
    "attack",
    builtin_modules=(
        "robbench.attacks.pgd", "robbench.attacks.autoattack", "robbench.attacks.apgd", "robbench.attacks.square",
        "robbench.attacks.decision", "robbench.attacks.transfer",
    ),
    entry_point_group="robbench.attacks",
)


def attack_options(name: str) -> dict[str, inspect.Parameter]:
    """The keyword options attack ``name``'s factory accepts, by name (none of ``**kwargs``)."""
    parameters = inspect.signature(ATTACKS.get(name).factory).parameters.values()
    return {p.name: p for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def create_attack(name: str, **kwargs: Any) -> Attack:
    """Attack ``name`` with ``kwargs``; an unknown option or a value of the wrong type is a one-line error
    naming the attack's options (the factory's own checks, e.g. ``steps >= 1``, then run)."""
    factory = ATTACKS.get(name).factory
    accepted = attack_options(name)
    takes_any = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(factory).parameters.values())
    options_text = ", ".join(accepted) or "none"
    for key, value in kwargs.items():
        if key not in accepted:
            if takes_any:
                continue
            raise RobbenchError(f"attack {name!r} has no option {quoted(key)}; its options: {options_text}")
        _check_option_type(name, key, value, factory)
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise RobbenchError(f"attack {name!r} rejected its options ({exc}); its options: {options_text}") from exc


def _check_option_type(name: str, key: str, value: Any, factory: Callable[..., Attack]) -> None:
    """Refuse a value of another type than the factory's annotation (strictly: no '5' for 5, no True for 1)."""
    try:
        annotation = typing.get_type_hints(factory).get(key)
    except (NameError, TypeError):  # an annotation that does not resolve: the factory checks for itself
        return
    if annotation is None:
        return
    try:
        TypeAdapter(annotation).validate_python(value, strict=True)
    except ValidationError as exc:
        expected = getattr(annotation, "__name__", str(annotation))
        raise RobbenchError(f"attack {name!r} option {key} must be {expected}, got {quoted(value)}") from exc


def derive_seed(seed: int, *parts: int | str) -> int:
    """A 31-bit seed from the recorded seed and a stable description of the random step."""
    words = [seed] + [p if isinstance(p, int) else zlib.crc32(p.encode()) for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1)[0] & 0x7FFFFFFF)
