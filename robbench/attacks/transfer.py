"""Transfer attack: adversarial examples crafted on a surrogate model, checked on the model under test.

A defence that hides its gradients (quantisation, a non-differentiable preprocessing step, saturated
logits) still classifies like the network it wraps; examples crafted on a differentiable model of
the same task often fool it (Papernot et al., 2016; Athalye et al., 2018 use the same idea for
BPDA). The surrogate is

- another registered model: a model.yaml path, a committed submission's name or an ``hf://``
  reference (e.g. the board's standard-trained model of the dataset), loaded like any submission
  (verified weights, plugins only from installed packages); or
- ``self-without-preprocessing``: the model under test with its input preprocessing removed: the
  network inside robbench's normalisation wrapper, or what a model's own ``without_preprocessing()``
  method returns (how a defence plugin exposes the differentiable network behind a non-differentiable
  input transformation).

Crafting is robbench's PGD on the surrogate (cross-entropy, random start, ``steps`` steps of
2.5·ε/steps) keeping the *last* iterate: a point deep in the surrogate's wrong region transfers better
than the first one across its boundary. Only the target's verification decides what counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import RobbenchError
from . import ATTACKS, Attack, AttackRules, Report, Stage, with_input_gradient
from .pgd import pgd_perturb, pgd_step_size

SELF = "self-without-preprocessing"


def without_preprocessing(model: nn.Module) -> nn.Module:
    """The network behind ``model``'s input preprocessing; a one-line error when robbench knows of none."""
    from ..models.normalize import Normalized

    if isinstance(model, Normalized):
        return model.model
    strip = getattr(model, "without_preprocessing", None)
    if callable(strip):
        return strip()
    raise RobbenchError(
        f"surrogate {SELF!r}: the model has no preprocessing robbench can remove (no normalization in its model.yaml, "
        "no without_preprocessing() method); name another model as the surrogate"
    )


@dataclass
class TransferAttack(Attack):
    """PGD on ``surrogate``, then the target decides."""

    surrogate: str = ""
    steps: int = 100

    def __post_init__(self) -> None:
        self.name = "transfer"
        if not self.surrogate:
            raise RobbenchError(f"transfer needs surrogate=MODEL (a model.yaml, a submission name or {SELF!r})")
        if self.steps < 1:
            raise RobbenchError("transfer needs steps >= 1")
        self._loaded = None  # the surrogate submission, loaded once (none for SELF)
        if self.surrogate != SELF:
            from ..loader import load_submission
            from ..zoo import model_spec

            self._loaded = load_submission(model_spec(self.surrogate))

    def surrogate_model(self, model: nn.Module) -> nn.Module:
        return without_preprocessing(model) if self._loaded is None else self._loaded.model

    def stages(self, model: nn.Module, rules: AttackRules) -> list[Stage]:
        if self._loaded is not None and self._loaded.dataset.num_classes != rules.num_classes:
            raise RobbenchError(f"transfer surrogate {self.surrogate!r} has {self._loaded.dataset.num_classes} classes, "
                                f"the model under test {rules.num_classes}; pick a surrogate for the same dataset")
        surrogate = with_input_gradient(self.surrogate_model(model).to(rules.device).eval())
        threat = rules.threat

        def run(x: torch.Tensor, y: torch.Tensor, batch_seed: int, report: Report = lambda done: None) -> torch.Tensor:
            generator = torch.Generator(device=x.device).manual_seed(batch_seed)
            return pgd_perturb(
                surrogate, x, y, norm=threat.norm, eps=threat.eps, steps=self.steps,
                step_size=pgd_step_size(threat.eps, self.steps), value_range=rules.value_range, generator=generator,
                keep_first_success=False, on_step=lambda done: report(done / self.steps),
            )

        return [Stage("transfer", run, reports_progress=True)]

    def config(self, rules: AttackRules) -> dict:
        # ``surrogate`` is the option as given (so verify rebuilds the attack from the record); what it resolved to beside it
        resolved: dict[str, Any] | None = None
        if self._loaded is not None:
            resolved = {"name": self._loaded.spec.name, "dataset": self._loaded.dataset.name,
                        "checkpoint_sha256": self._loaded.checkpoint.sha256}
        return {"surrogate": self.surrogate, "surrogate_resolved": resolved, "crafting": "pgd", "steps": self.steps, "loss": "ce", "random_start": True,
                "step_size": pgd_step_size(rules.threat.eps, self.steps), "iterate": "last"}


@ATTACKS.register("transfer")
def transfer(surrogate: str = "", steps: int = 100) -> Attack:
    """Transfer: PGD crafted on surrogate=MODEL (model.yaml, submission name, or self-without-preprocessing)"""
    return TransferAttack(surrogate=surrogate, steps=steps)
