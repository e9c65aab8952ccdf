"""APGD (Croce & Hein, 2020) on its own, with its options exposed, from the official ``pyautoattack``.

AutoAttack runs APGD with fixed settings; escalating a doubtful number needs more: more iterations,
restarts, the DLR loss (invariant to the scale of the logits, so it survives saturated softmax),
the targeted DLR loss over more target classes, and expectation over transformation (EOT: each
gradient the mean over ``eot_iter`` forward passes) for randomized models. ``apgd`` with its defaults
(``loss=ce``) is exactly AutoAttack's ``apgd-ce`` stage, seed and all: every batch is attacked with
the run's seed, as ``run_standard_evaluation`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import RobbenchError
from . import ATTACKS, Attack, AttackRules, Report, Stage
from .autoattack import run_in_unit_box

#: the loss's name as robbench records it -> the minimum number of classes it needs
LOSSES = {"ce": 2, "dlr": 3, "dlr-targeted": 4}
#: stage names as AutoAttack's components are named in records
STAGE_NAMES = {"ce": "apgd-ce", "dlr": "apgd-dlr", "dlr-targeted": "apgd-t"}


@dataclass
class APGDAttack(Attack):
    """APGD with the loss, iterations, restarts, target classes and EOT draws chosen."""

    loss: str = "ce"
    iterations: int = 100
    restarts: int = 1
    target_classes: int = 9  # dlr-targeted: the most likely wrong classes tried, in turn (capped at classes - 1)
    eot_iter: int = 1
    rho: float = 0.75  # step-size halving checkpoint condition (the paper's and AutoAttack's value)

    def __post_init__(self) -> None:
        self.name = "apgd"
        if self.loss not in LOSSES:
            raise RobbenchError(f"apgd loss {self.loss!r} is unknown; use one of {', '.join(LOSSES)}")
        if min(self.iterations, self.restarts, self.target_classes, self.eot_iter) < 1 or not 0 < self.rho < 1:
            raise RobbenchError("apgd needs iterations, restarts, target_classes and eot_iter >= 1 and 0 < rho < 1")

    def _check_classes(self, num_classes: int) -> None:
        if num_classes < LOSSES[self.loss]:
            raise RobbenchError(
                f"apgd loss {self.loss!r} needs at least {LOSSES[self.loss]} classes, the dataset has {num_classes}; "
                "use loss=ce"
            )

    def stages(self, model: nn.Module, rules: AttackRules) -> list[Stage]:
        self._check_classes(rules.num_classes)
        return [Stage(STAGE_NAMES[self.loss], self._run(model, rules), reports_progress=True)]

    def _run(self, model: nn.Module, rules: AttackRules):
        def run(x: torch.Tensor, y: torch.Tensor, batch_seed: int, report: Report = lambda done: None) -> torch.Tensor:
            return run_in_unit_box(
                model, x, y, rules.threat.eps, rules.value_range, report,
                build=lambda unit_model, eps: self._adversary(unit_model, eps, rules),
                expected=self._expected_forwards, perturb=lambda adversary, u, y: adversary.perturb(u, y),
            )

        return run

    def _adversary(self, model: nn.Module, eps: float, rules: AttackRules):
        from pyautoattack.autopgd_base import APGDAttack as Official, APGDAttack_targeted

        common = dict(n_iter=self.iterations, norm=rules.threat.norm, n_restarts=self.restarts, eps=eps,
                      seed=rules.seed, eot_iter=self.eot_iter, rho=self.rho, device=str(rules.device))
        if self.loss == "dlr-targeted":
            return APGDAttack_targeted(model, n_target_classes=self.n_targets(rules.num_classes), **common)
        return Official(model, loss=self.loss, **common)

    def _expected_forwards(self, adversary) -> int:
        """Forward passes on a batch nothing of which breaks (counted on pyautoattack 0.2.0): progress only."""
        if self.loss == "dlr-targeted":
            return 1 + adversary.n_target_classes * self.restarts * (self.eot_iter * (self.iterations + 1) + 1)
        return 1 + self.restarts * self.eot_iter * (self.iterations + 1)

    def n_targets(self, num_classes: int) -> int:
        return min(self.target_classes, num_classes - 1)

    def config(self, rules: AttackRules) -> dict:
        config = {"loss": self.loss, "iterations": self.iterations, "restarts": self.restarts,
                  "eot_iter": self.eot_iter, "rho": self.rho, "seed": rules.seed, "implementation": "pyautoattack"}
        if self.loss == "dlr-targeted":
            config["target_classes"] = self.n_targets(rules.num_classes)
        return config


@ATTACKS.register("apgd")
def apgd(loss: str = "ce", iterations: int = 100, restarts: int = 1, target_classes: int = 9, eot_iter: int = 1,
         rho: float = 0.75) -> Attack:
    """APGD, official pyautoattack: loss ce, dlr or dlr-targeted; iterations, restarts, target_classes, eot_iter (EOT)"""
    return APGDAttack(loss=loss, iterations=iterations, restarts=restarts, target_classes=target_classes,
                      eot_iter=eot_iter, rho=rho)
