"""Norm-ball geometry shared by every attack and by verification: one place for projections."""

from __future__ import annotations

import torch

from ..threat_models import Norm


def _per_example(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return values.view(-1, *([1] * (x.dim() - 1)))


def distance(x_adv: torch.Tensor, x: torch.Tensor, norm: Norm) -> torch.Tensor:
    delta = (x_adv - x).flatten(1)
    return delta.abs().amax(1) if norm == "Linf" else delta.norm(p=2, dim=1)


def project(
    x_adv: torch.Tensor, x: torch.Tensor, norm: Norm, eps: float, value_range: tuple[float, float] | None
) -> torch.Tensor:
    """Nearest point (for L-inf exactly; for L2 radially) of the eps-ball around x, then into the value range.

    Clamping into a box that contains x never moves a point farther from x, so the result
    stays inside the ball.
    """
    if norm == "Linf":
        x_adv = torch.minimum(torch.maximum(x_adv, x - eps), x + eps)
    else:
        delta = x_adv - x
        norms = delta.flatten(1).norm(p=2, dim=1).clamp_min(1e-12)
        delta = delta * _per_example(torch.clamp(eps / norms, max=1.0), x)
        x_adv = x + delta
    if value_range is not None:
        x_adv = x_adv.clamp(*value_range)
    return x_adv


def ascent_direction(grad: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Steepest ascent of unit norm: sign for L-inf, the normalised gradient for L2.

    Where the model's gradient is undefined (NaN, e.g. sqrt at 0) that component does not move, and
    an infinite one moves as a unit one: an iterate never turns NaN and leaves the ball.
    """
    grad = grad.nan_to_num(nan=0.0, posinf=1.0, neginf=-1.0)
    if norm == "Linf":
        return grad.sign()
    norms = grad.flatten(1).norm(p=2, dim=1).clamp_min(1e-12)
    return grad / _per_example(norms, grad)


def random_in_ball(x: torch.Tensor, norm: Norm, eps: float, generator: torch.Generator) -> torch.Tensor:
    """A random perturbation inside the eps-ball (uniform in the L-inf box; random direction and radius for L2)."""
    if norm == "Linf":
        return (torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1) * eps
    direction = ascent_direction(torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype), "L2")
    radius = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype) * eps
    return direction * _per_example(radius, x)
