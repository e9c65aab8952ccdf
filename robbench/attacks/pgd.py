"""Projected gradient descent (Madry et al., 2018) for L-inf and L2: the one PGD in robbench.

Used for evaluation (``PGDAttack``) and for adversarial training (``pgd_perturb``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..threat_models import Norm
from . import ATTACKS, Attack, AttackRules, Report, Stage, with_input_gradient
from .geometry import ascent_direction, project, random_in_ball
from .verify import classified_correctly

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


#: Madry et al.'s step, as a multiple of eps/steps: enough to cross the ball and still move along its boundary
STEP_SIZE_FACTOR = 2.5


def pgd_step_size(eps: float, steps: int, factor: float = STEP_SIZE_FACTOR) -> float:
    """PGD's default step size, ``factor``·eps/steps (2.5·eps/steps), wherever robbench runs PGD."""
    return factor * eps / steps


def _cross_entropy_sum(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="sum")


def pgd_perturb(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    norm: Norm,
    eps: float,
    steps: int,
    step_size: float,
    value_range: tuple[float, float] | None,
    generator: torch.Generator | None,
    keep_first_success: bool = True,
    loss_fn: Loss = _cross_entropy_sum,
    start: torch.Tensor | None = None,
    on_step: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Maximise ``loss_fn`` within the eps-ball around x (intersected with the value range).

    With ``keep_first_success`` each example keeps the first iterate that is misclassified
    (an evaluation wants a success, not the largest loss); without it, the last iterate is
    returned (adversarial training wants the largest loss); an iterate with NaN or Inf logits counts
    as a success, so that verification sees it. ``generator=None`` starts at x;
    ``start`` (projected into the ball) starts elsewhere, e.g. TRADES' x + 0.001·N(0, 1).
    The loop has no host/device synchronisation, except that with ``keep_first_success`` and the
    default loss it drops the examples already misclassified every ``COMPACT_EVERY`` steps.
    ``on_step(steps_done)`` is called after every step (for progress bars).
    """
    on_step = on_step or (lambda done: None)
    x = x.detach()
    if start is not None:
        x_adv = project(start.detach(), x, norm, eps, value_range)
    else:
        x_adv = x if generator is None else project(x + random_in_ball(x, norm, eps, generator), x, norm, eps, value_range)
    if keep_first_success and loss_fn is _cross_entropy_sum:
        return _first_successes(
            model, x, y, x_adv, norm=norm, eps=eps, steps=steps, step_size=step_size, value_range=value_range, on_step=on_step
        )
    first_success = x_adv
    succeeded = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    expand = (-1,) + (1,) * (x.dim() - 1)
    for step in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        logits = model(x_adv)
        (grad,) = torch.autograd.grad(loss_fn(logits, y), x_adv)
        if keep_first_success:
            newly = ~classified_correctly(logits.detach(), y) & ~succeeded
            first_success = torch.where(newly.view(expand), x_adv.detach(), first_success)
            succeeded = succeeded | newly
        x_adv = project(x_adv.detach() + step_size * ascent_direction(grad, norm), x, norm, eps, value_range)
        on_step(step + 1)
    if not keep_first_success:
        return x_adv
    # The final iterate was never checked; the evaluator's verification pass decides whether it counts.
    return torch.where(succeeded.view(expand), first_success, x_adv)


#: every this many steps, examples already misclassified leave the batch (one host/device sync each time)
COMPACT_EVERY = 5


def _first_successes(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor, *, norm: Norm, eps: float, steps: int,
    step_size: float, value_range: tuple[float, float] | None, on_step: Callable[[int], None],
) -> torch.Tensor:
    """PGD on cross-entropy that stops attacking an example once an iterate misclassifies it.

    The per-example loss makes every example's iterates independent of the others in the batch,
    so dropping the successful ones (every ``COMPACT_EVERY`` steps) changes no iterate of the rest,
    only the work: an evaluation wants the first success and nothing after it. Returns, per example,
    its first misclassified iterate, else its final iterate (checked by the evaluator's verification).
    """
    expand = (-1,) + (1,) * (x.dim() - 1)
    result = x_adv.clone()
    position = None  # where the attacked examples sit in the batch; None: all of them, in order
    xs, ys, current = x, y, x_adv
    first, succeeded = x_adv, torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for step in range(steps):
        current = current.detach().requires_grad_(True)
        logits = model(current)
        (grad,) = torch.autograd.grad(_cross_entropy_sum(logits, ys), current)
        newly = ~classified_correctly(logits.detach(), ys) & ~succeeded
        first = torch.where(newly.view(expand), current.detach(), first)
        succeeded = succeeded | newly
        current = project(current.detach() + step_size * ascent_direction(grad, norm), xs, norm, eps, value_range)
        on_step(step + 1)
        if (step + 1) % COMPACT_EVERY == 0 and step + 1 < steps:
            done = torch.where(succeeded.view(expand), first, current)
            result = done if position is None else result.index_copy(0, position, done)
            keep = (~succeeded).nonzero().squeeze(1)  # the sync
            if keep.numel() == 0:
                return result
            if keep.numel() < succeeded.numel():
                position = keep if position is None else position[keep]
                xs, ys, current, first, succeeded = xs[keep], ys[keep], current[keep], first[keep], succeeded[keep]
    done = torch.where(succeeded.view(expand), first, current)
    return done if position is None else result.index_copy(0, position, done)


@dataclass
class PGDAttack(Attack):
    """PGD with cross-entropy loss and random start; step 2.5·eps/steps; restarts on survivors."""

    steps: int = 20
    restarts: int = 1
    step_size_factor: float = STEP_SIZE_FACTOR  # step = factor · eps / steps (Madry et al.)

    def __post_init__(self) -> None:
        self.name = "pgd"
        if self.steps < 1 or self.restarts < 1 or self.step_size_factor <= 0:
            from ..errors import RobbenchError

            raise RobbenchError("pgd needs steps >= 1, restarts >= 1 and a positive step_size_factor")

    def stages(self, model: nn.Module, rules: AttackRules) -> list[Stage]:
        threat = rules.threat
        step_size = pgd_step_size(threat.eps, self.steps, self.step_size_factor)
        attacked = with_input_gradient(model)

        def run(x: torch.Tensor, y: torch.Tensor, batch_seed: int, report: Report = lambda done: None) -> torch.Tensor:
            generator = torch.Generator(device=x.device).manual_seed(batch_seed)
            best = x
            remaining = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
            for restart in range(self.restarts):
                index = remaining.nonzero().squeeze(1)  # one sync per restart, not per step
                if index.numel() == 0:
                    break
                candidate = pgd_perturb(
                    attacked, x[index], y[index], norm=threat.norm, eps=threat.eps, steps=self.steps,
                    step_size=step_size, value_range=rules.value_range, generator=generator,
                    on_step=lambda done, restart=restart: report((restart * self.steps + done) / (self.restarts * self.steps)),
                )
                best = best.index_copy(0, index, candidate)
                if restart + 1 < self.restarts:
                    with torch.inference_mode():
                        fooled = ~classified_correctly(model(candidate), y[index])
                    remaining = remaining.index_put((index,), ~fooled)
            return best

        return [Stage("pgd", run, reports_progress=True)]

    def config(self, rules: AttackRules) -> dict:
        return {
            "steps": self.steps,
            "restarts": self.restarts,
            "step_size": pgd_step_size(rules.threat.eps, self.steps, self.step_size_factor),
            "loss": "ce",
            "random_start": True,
        }


@ATTACKS.register("pgd")
def pgd(steps: int = 20, restarts: int = 1, step_size_factor: float = STEP_SIZE_FACTOR) -> Attack:
    """PGD (Madry et al.): cross-entropy, random start, 20 steps of 2.5·eps/steps"""
    return PGDAttack(steps=steps, restarts=restarts, step_size_factor=step_size_factor)
