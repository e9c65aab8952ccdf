"""Decision-based attacks: they read only the predicted label, never a logit or a gradient.

Gradient masking (quantised inputs, non-differentiable preprocessing, saturated logits, shattered
gradients) blinds gradient attacks and can mislead score-based ones; an attack that needs only
``argmax`` sees the decision boundary itself. robbench has two, one per norm:

- ``rays`` (Chen & Gu, KDD 2020, "RayS: A Ray Searching Method for Hard-label Adversarial Attack"),
  L-inf: searches sign directions ``s`` in {-1, +1}^d, block by block from coarse to fine, for the one
  whose boundary ``x + r·s`` is nearest; written here, batched, after the authors' reference code
  (no maintained library has it).
- ``hopskipjump`` (Chen, Jordan & Wainwright, S&P 2020, "HopSkipJumpAttack"), L2: from a misclassified
  start, binary search to the boundary, a Monte-Carlo estimate of the boundary's normal from label
  flips, a geometric step along it, repeat; written here, batched (see benchmarks/RESULTS.md
  ``decision`` for the comparison with adversarial-robustness-toolbox and foolbox).

Both stop attacking an example once it is misclassified within ε (what an evaluation needs) or its
query budget is spent, and return a point inside the ε-ball and the value range: the boundary point
when it lies within ε, else the best direction cut at ε (which the evaluator checks like any other).
A query is one example through the model; ``config`` records the budget per example.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..errors import RobbenchError
from . import ATTACKS, Attack, AttackRules, Report, Stage
from .verify import classified_correctly


class LabelOracle:
    """``fooled(points, which)``: are the examples ``which`` misclassified at ``points``; counts queries per example.

    Non-finite logits count as fooled, so the evaluator sees such points (and refuses the model, naming it).
    """

    def __init__(self, model: nn.Module, y: torch.Tensor, budget: int, report: Report):
        self.model, self.y, self.budget, self.report = model, y, budget, report
        self.used = torch.zeros(y.shape[0], dtype=torch.long, device=y.device)

    def fooled(self, points: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            logits = self.model(points)
        self.used.index_add_(0, which, torch.ones_like(which))
        self.report(float(self.used.clamp(max=self.budget).sum()) / (self.budget * self.used.numel()))
        return ~classified_correctly(logits, self.y[which])

    def has_budget(self, which: torch.Tensor) -> torch.Tensor:
        return self.used[which] < self.budget


def _per_example(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.view(-1, *([1] * (like.dim() - 1)))


def _clamp(x: torch.Tensor, value_range: tuple[float, float] | None) -> torch.Tensor:
    return x if value_range is None else x.clamp(*value_range)


def rays_perturb(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, value_range: tuple[float, float] | None,
    queries: int, report: Report = lambda done: None,
) -> torch.Tensor:
    """RayS on a batch, L-inf: per example the nearest boundary along sign directions, until it is within ``eps``.

    As the reference code: start from the all-ones direction, flip one block of signs per step (blocks
    halve once every block at a level was tried), keep a flip when the boundary along it is nearer
    (checked first at the current best radius, then by bisection). Radii are L-inf distances; the
    bisection stops at a tolerance of ε/1000, or as soon as the boundary is within ε.
    """
    oracle = LabelOracle(model, y, queries, report)
    n, dim = x.shape[0], x[0].numel()
    flat_x = x.flatten(1)
    span = (value_range[1] - value_range[0]) if value_range is not None else float(flat_x.max() - flat_x.min()) + eps
    tolerance = eps / 1000
    sign = torch.ones_like(flat_x)
    best = torch.full((n,), math.inf, device=x.device, dtype=x.dtype)

    def points(radius: torch.Tensor, directions: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        return _clamp(flat_x[which] + radius[:, None] * directions, value_range).view(-1, *x.shape[1:])

    level, block = 0, 0
    while True:
        active = ((best > eps) & oracle.has_budget(torch.arange(n, device=x.device))).nonzero().squeeze(1)
        if active.numel() == 0:
            break
        size = math.ceil(dim / 2**level)
        start, end = block * size, min(dim, (block + 1) * size)
        attempt = sign[active].clone()
        attempt[:, start:end] *= -1
        high = _boundary_along(oracle, points, attempt, active, best[active], span, eps, tolerance)
        better = high < best[active]
        best[active[better]] = high[better]
        sign[active[better]] = attempt[better]
        block += 1
        if block == 2**level or end == dim:
            level, block = (level + 1 if size > 1 else level), 0
    radius = best.clamp(max=eps).nan_to_num(posinf=eps)
    return points(radius, sign, torch.arange(n, device=x.device))


def _boundary_along(
    oracle: LabelOracle, points: Callable, directions: torch.Tensor, which: torch.Tensor, best: torch.Tensor,
    span: float, eps: float, tolerance: float,
) -> torch.Tensor:
    """Per example, a radius along its direction at which it is misclassified (inf: none nearer than ``best``)."""
    low = torch.zeros_like(best)
    high = torch.full_like(best, math.inf)
    known = torch.isfinite(best)
    if bool(known.any()):  # is the boundary along the new direction nearer than the best so far?
        index = known.nonzero().squeeze(1)
        closer = oracle.fooled(points(best[index], directions[index], which[index]), which[index])
        high[index[closer]] = best[index[closer]]
    for step in range(1, 11):  # no boundary known yet: a line search over the value range, as the reference code
        index = (~known & torch.isinf(high) & oracle.has_budget(which)).nonzero().squeeze(1)
        if index.numel() == 0:
            break
        radius = torch.full((index.numel(),), span * step / 10, device=best.device, dtype=best.dtype)
        hit = oracle.fooled(points(radius, directions[index], which[index]), which[index])
        high[index[hit]] = radius[hit]
        low[index[~hit]] = radius[~hit]
    while True:  # bisection between the last correct and the first misclassified radius
        index = (torch.isfinite(high) & (high - low > tolerance) & (high > eps) & oracle.has_budget(which)).nonzero().squeeze(1)
        if index.numel() == 0:
            return high
        middle = (low[index] + high[index]) / 2
        hit = oracle.fooled(points(middle, directions[index], which[index]), which[index])
        high[index[hit]] = middle[hit]
        low[index[~hit]] = middle[~hit]


def hopskipjump_perturb(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, value_range: tuple[float, float] | None,
    queries: int, generator: torch.Generator, initial_evals: int = 100, max_evals: int = 10_000,
    report: Report = lambda done: None,
) -> torch.Tensor:
    """HopSkipJump on a batch, L2, untargeted, with the paper's settings (γ = 1, θ = γ/d^1.5, 100·√t
    gradient samples at iteration t, at most 10,000), until the boundary point is within ``eps``.

    The start is uniform noise over the value range (over the batch's range widened by ε when the
    inputs are unbounded), up to 100 draws; an example never misclassified by noise is returned as is.
    """
    oracle = LabelOracle(model, y, queries, report)
    n, dim = x.shape[0], x[0].numel()
    expand = lambda values: _per_example(values, x)  # noqa: E731
    theta = 1.0 / (math.sqrt(dim) * dim)
    everyone = torch.arange(n, device=x.device)
    boundary = _random_start(oracle, x, value_range, eps, generator)
    started = ~torch.isnan(boundary.flatten(1)[:, 0])
    boundary = torch.where(expand(started), boundary, x)
    boundary = _blend_search(oracle, x, boundary, started.nonzero().squeeze(1), theta)
    distance = (boundary - x).flatten(1).norm(dim=1)
    iteration = 0
    while True:
        iteration += 1
        active = (started & (distance > eps) & oracle.has_budget(everyone)).nonzero().squeeze(1)
        if active.numel() == 0:
            break
        if iteration == 1:
            span = (value_range[1] - value_range[0]) if value_range is not None else float(x.max() - x.min()) + eps
            delta = torch.full((active.numel(),), 0.1 * span, device=x.device, dtype=x.dtype)
        else:
            delta = math.sqrt(dim) * theta * distance[active]
        evals = int(min(initial_evals * math.sqrt(iteration), max_evals, (queries - oracle.used[active]).max()))
        direction = _boundary_normal(oracle, boundary[active], active, delta, evals, value_range, generator)
        step = distance[active] / math.sqrt(iteration)
        moved = _geometric_step(oracle, boundary[active], direction, step, active, value_range)
        boundary[active] = _blend_search(oracle, x[active], moved, active, theta, all_fooled=True)
        distance[active] = (boundary[active] - x[active]).flatten(1).norm(dim=1)
    scale = (eps / distance.clamp_min(1e-12)).clamp(max=1.0)
    return _clamp(x + (boundary - x) * expand(scale), value_range)


def _random_start(
    oracle: LabelOracle, x: torch.Tensor, value_range: tuple[float, float] | None, eps: float, generator: torch.Generator,
) -> torch.Tensor:
    """Per example a misclassified noise image, NaN where 100 draws found none."""
    low, high = value_range if value_range is not None else (float(x.min()) - eps, float(x.max()) + eps)
    start = torch.full_like(x, math.nan)
    for _ in range(100):
        missing = torch.isnan(start.flatten(1)[:, 0]) & oracle.has_budget(torch.arange(x.shape[0], device=x.device))
        index = missing.nonzero().squeeze(1)
        if index.numel() == 0:
            break
        noise = low + (high - low) * torch.rand(x[index].shape, generator=generator, device=x.device, dtype=x.dtype)
        hit = oracle.fooled(noise, index)
        start[index[hit]] = noise[hit]
    return start


def _blend_search(
    oracle: LabelOracle, x: torch.Tensor, adversarial: torch.Tensor, which: torch.Tensor, theta: float,
    all_fooled: bool = False,
) -> torch.Tensor:
    """Bisection on the segment from ``x`` to a misclassified point, to the boundary (within θ of the segment).

    ``all_fooled``: every ``adversarial`` point is misclassified already (a step that found one); without it,
    ``x`` is left where it is for examples outside ``which``.
    """
    if not all_fooled:
        x_part, adv_part = x[which], adversarial[which]
    else:
        x_part, adv_part = x, adversarial
    low = torch.zeros(adv_part.shape[0], device=x.device, dtype=x.dtype)
    high = torch.ones_like(low)
    while True:
        index = ((high - low > theta) & oracle.has_budget(which)).nonzero().squeeze(1)
        if index.numel() == 0:
            break
        middle = (low[index] + high[index]) / 2
        blend = x_part[index] + _per_example(middle, x_part) * (adv_part[index] - x_part[index])
        hit = oracle.fooled(blend, which[index])
        high[index[hit]] = middle[hit]
        low[index[~hit]] = middle[~hit]
    found = x_part + _per_example(high, x_part) * (adv_part - x_part)
    if all_fooled:
        return found
    result = adversarial.clone()
    result[which] = found
    return result


def _boundary_normal(
    oracle: LabelOracle, boundary: torch.Tensor, which: torch.Tensor, delta: torch.Tensor, evals: int,
    value_range: tuple[float, float] | None, generator: torch.Generator, rows_per_query: int = 20_000,
) -> torch.Tensor:
    """Monte-Carlo estimate of the unit normal pointing into the misclassified side, from ``evals`` label
    flips per example around its boundary point (with the paper's baseline: the mean decision subtracted)."""
    directions = []
    chunk = max(1, rows_per_query // evals)
    for begin in range(0, boundary.shape[0], chunk):
        part, part_delta, part_which = boundary[begin : begin + chunk], delta[begin : begin + chunk], which[begin : begin + chunk]
        m = part.shape[0]
        noise = torch.randn((m, evals, *part.shape[1:]), generator=generator, device=part.device, dtype=part.dtype)
        noise = noise / noise.flatten(2).norm(dim=2).view(m, evals, *([1] * (part.dim() - 1)))
        scale = part_delta.view(m, 1, *([1] * (part.dim() - 1)))
        probes = _clamp(part[:, None] + scale * noise, value_range)
        noise = (probes - part[:, None]) / scale
        fooled = oracle.fooled(probes.flatten(0, 1), part_which.repeat_interleave(evals)).view(m, evals)
        sign = 2 * fooled.to(part.dtype) - 1
        mean = sign.mean(1, keepdim=True)
        sign = torch.where((mean.abs() == 1), sign, sign - mean)
        estimate = (sign.view(m, evals, *([1] * (part.dim() - 1))) * noise).mean(1)
        directions.append(estimate / estimate.flatten(1).norm(dim=1).clamp_min(1e-12).view(m, *([1] * (part.dim() - 1))))
    return torch.cat(directions)


def _geometric_step(
    oracle: LabelOracle, boundary: torch.Tensor, direction: torch.Tensor, step: torch.Tensor, which: torch.Tensor,
    value_range: tuple[float, float] | None,
) -> torch.Tensor:
    """``boundary + step·direction``, the step halved until the point is misclassified (at most 25 halvings)."""
    step = step.clone()
    moved = _clamp(boundary + _per_example(step, boundary) * direction, value_range)
    pending = torch.ones(boundary.shape[0], dtype=torch.bool, device=boundary.device)
    for _ in range(25):
        index = (pending & oracle.has_budget(which)).nonzero().squeeze(1)
        if index.numel() == 0:
            break
        hit = oracle.fooled(moved[index], which[index])
        pending[index[hit]] = False
        miss = index[~hit]
        step[miss] /= 2
        moved[miss] = _clamp(boundary[miss] + _per_example(step[miss], boundary) * direction[miss], value_range)
    return torch.where(_per_example(pending, boundary), boundary, moved)


@dataclass
class RaySAttack(Attack):
    """RayS (L-inf only) with a budget of ``queries`` label queries per example."""

    queries: int = 10_000

    def __post_init__(self) -> None:
        self.name = "rays"
        if self.queries < 1:
            raise RobbenchError("rays needs queries >= 1")

    def stages(self, model: nn.Module, rules: AttackRules) -> list[Stage]:
        if rules.threat.norm != "Linf":
            raise RobbenchError(f"rays is an L-inf attack, the threat model is {rules.threat.norm}; use hopskipjump")
        threat = rules.threat

        def run(x: torch.Tensor, y: torch.Tensor, batch_seed: int, report: Report = lambda done: None) -> torch.Tensor:
            return rays_perturb(model, x, y, eps=threat.eps, value_range=rules.value_range, queries=self.queries, report=report)

        return [Stage("rays", run, reports_progress=True)]

    def config(self, rules: AttackRules) -> dict:
        return {"queries": self.queries, "tolerance": "eps/1000", "start": "all-ones direction (deterministic)",
                "implementation": "robbench"}


@dataclass
class HopSkipJumpAttack(Attack):
    """HopSkipJump (L2 only) with a budget of ``queries`` label queries per example."""

    queries: int = 10_000

    def __post_init__(self) -> None:
        self.name = "hopskipjump"
        if self.queries < 1:
            raise RobbenchError("hopskipjump needs queries >= 1")

    def stages(self, model: nn.Module, rules: AttackRules) -> list[Stage]:
        if rules.threat.norm != "L2":
            raise RobbenchError(f"hopskipjump is an L2 attack here, the threat model is {rules.threat.norm}; use rays")
        threat = rules.threat

        def run(x: torch.Tensor, y: torch.Tensor, batch_seed: int, report: Report = lambda done: None) -> torch.Tensor:
            generator = torch.Generator(device=x.device).manual_seed(batch_seed)
            return hopskipjump_perturb(model, x, y, eps=threat.eps, value_range=rules.value_range,
                                       queries=self.queries, generator=generator, report=report)

        return [Stage("hopskipjump", run, reports_progress=True)]

    def config(self, rules: AttackRules) -> dict:
        return {"queries": self.queries, "gamma": 1.0, "initial_evals": 100, "max_evals": 10_000,
                "seed": rules.seed, "implementation": "robbench"}


@ATTACKS.register("rays")
def rays(queries: int = 10_000) -> Attack:
    """RayS (decision-based, L-inf): only predicted labels, queries per example"""
    return RaySAttack(queries=queries)


@ATTACKS.register("hopskipjump")
def hopskipjump(queries: int = 10_000) -> Attack:
    """HopSkipJump (decision-based, L2): only predicted labels, queries per example"""
    return HopSkipJumpAttack(queries=queries)
