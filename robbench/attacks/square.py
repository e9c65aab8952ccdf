"""Square (Andriushchenko et al., 2020) on its own, with its query budget, from the official ``pyautoattack``.

A score-based black-box attack: it reads the logits, never a gradient, so masked or shattered
gradients do not stop it. AutoAttack runs it with 5,000 queries; a model whose number Square moves
(``square-beats-white-box``) deserves more. With its defaults ``square`` is exactly AutoAttack's
``square`` stage (p_init 0.8, the schedule not rescaled to the budget, the run's seed for every batch).
``rescale_schedule=true`` stretches the square-size schedule, written for 10,000 queries, to the budget
(torchattacks' default): with small budgets the squares then shrink in time (1,000 queries on a
Fashion-MNIST SmallCNN: 43.4 % robust against 52.8 % unstretched; benchmarks/RESULTS.md, *Square:
robbench vs torchattacks*).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import RobbenchError
from . import ATTACKS, Attack, AttackRules, Report, Stage
from .autoattack import run_in_unit_box


@dataclass
class SquareAttack(Attack):
    """Square with ``queries`` per restart, initial square fraction ``p_init`` and ``restarts``."""

    queries: int = 5000
    p_init: float = 0.8
    restarts: int = 1
    rescale_schedule: bool = False  # shrink the squares on a schedule stretched to ``queries`` (the paper's 10,000)

    def __post_init__(self) -> None:
        self.name = "square"
        if self.queries < 1 or self.restarts < 1 or not 0 < self.p_init <= 1:
            raise RobbenchError("square needs queries >= 1, restarts >= 1 and 0 < p_init <= 1")

    def stages(self, model: nn.Module, rules: AttackRules) -> list[Stage]:
        return [Stage("square", self._run(model, rules), reports_progress=True)]

    def _run(self, model: nn.Module, rules: AttackRules):
        def run(x: torch.Tensor, y: torch.Tensor, batch_seed: int, report: Report = lambda done: None) -> torch.Tensor:
            return run_in_unit_box(
                model, x, y, rules.threat.eps, rules.value_range, report,
                build=lambda unit_model, eps: self._adversary(unit_model, eps, rules),
                expected=lambda adversary: 3 + self.restarts * self.queries,
                perturb=lambda adversary, u, y: adversary.perturb(u, y),
            )

        return run

    def _adversary(self, model: nn.Module, eps: float, rules: AttackRules):
        from pyautoattack.square import SquareAttack as Official

        return Official(model, norm=rules.threat.norm, n_queries=self.queries, eps=eps, p_init=self.p_init,
                        n_restarts=self.restarts, seed=rules.seed, device=str(rules.device),
                        resc_schedule=self.rescale_schedule)

    def config(self, rules: AttackRules) -> dict:
        return {"queries": self.queries, "p_init": self.p_init, "restarts": self.restarts, "loss": "margin",
                "rescale_schedule": self.rescale_schedule, "seed": rules.seed, "implementation": "pyautoattack"}


@ATTACKS.register("square")
def square(queries: int = 5000, p_init: float = 0.8, restarts: int = 1, rescale_schedule: bool = False) -> Attack:
    """Square (black-box, score-based), official pyautoattack: queries per restart, p_init, restarts, rescale_schedule"""
    return SquareAttack(queries=queries, p_init=p_init, restarts=restarts, rescale_schedule=rescale_schedule)
