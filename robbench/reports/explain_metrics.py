"""The measurements behind ``robbench explain``'s pictures: gradient display, object energy, targeted
large-eps PGD, interpolation paths. Each works on a batch of tensors and knows nothing of the report."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks.pgd import pgd_perturb, pgd_step_size
from ..errors import RobbenchError


def rescale_gradient(grad: torch.Tensor) -> torch.Tensor:
    """The paper's display of a gradient, per image: clip to mean ± 3 std, then rescale min..max to [0, 1].

    A constant gradient (std 0) maps to 0.5 everywhere.
    """
    flat = grad.detach().flatten(1).double()
    mean, std = flat.mean(1, keepdim=True), flat.std(1, unbiased=False, keepdim=True)
    clipped = torch.maximum(torch.minimum(flat, mean + 3 * std), mean - 3 * std)
    low, high = clipped.amin(1, keepdim=True), clipped.amax(1, keepdim=True)
    span = high - low
    scaled = torch.where(span > 0, (clipped - low) / span.clamp_min(1e-300), torch.full_like(clipped, 0.5))
    return scaled.clamp(0, 1).view_as(grad).to(grad.dtype)


def object_mask(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Pixels that belong to the object: any channel above ``threshold`` (the background is black)."""
    return (x.detach() > threshold).any(dim=1, keepdim=True).expand_as(x)


def energy_on_object(grad: torch.Tensor, x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Per image: sum of grad² on the object over the sum of grad² (0 for a zero gradient)."""
    energy = grad.detach().double() ** 2
    on = (energy * object_mask(x, threshold)).flatten(1).sum(1)
    total = energy.flatten(1).sum(1)
    return torch.where(total > 0, on / total.clamp_min(1e-300), torch.zeros_like(total))


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per row of the flattened inputs; 0 where either is constant."""
    a, b = a.detach().flatten(1).double(), b.detach().flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    denominator = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(denominator > 0, (a * b).sum(1) / denominator.clamp_min(1e-300), torch.zeros_like(denominator))


def input_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """d CE(model(x), y) / dx per example (the model in eval mode)."""
    model.eval()
    grads = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(xb), y[start : start + batch_size], reduction="sum"), xb)
        grads.append(g.detach())
    return torch.cat(grads)


def _minus_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -F.cross_entropy(logits, target, reduction="sum")


def targeted_large_eps(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    eps: float,
    steps: int,
    norm: str = "L2",
    value_range: tuple[float, float] | None = (0.0, 1.0),
    batch_size: int = 500,
) -> torch.Tensor:
    """Targeted PGD: ``pgd_perturb`` maximising −CE(model(x'), target) in the eps-ball, from x itself.

    ``steps`` steps of 2.5·eps/steps; the last iterate is returned (``keep_first_success=False``:
    the point is the most target-like image in the ball, not the first one the model calls target).
    """
    model.eval()
    out = []
    for start in range(0, len(x), batch_size):
        out.append(pgd_perturb(
            model, x[start : start + batch_size], target[start : start + batch_size], norm=norm, eps=eps, steps=steps,
            step_size=pgd_step_size(eps, steps), value_range=value_range, generator=None, keep_first_success=False,
            loss_fn=_minus_cross_entropy,
        ).detach())
    return torch.cat(out)


def interpolate(x: torch.Tensor, x_adv: torch.Tensor, ts: Sequence[float]) -> torch.Tensor:
    """Shape (len(ts), *x.shape): x + t·(x_adv − x) for each t."""
    delta = x_adv - x
    return torch.stack([x + float(t) * delta for t in ts])


def monotonicity(values: torch.Tensor) -> torch.Tensor:
    """Per row (values along a path): (last − first) / total variation, in [−1, 1]; 1 for a non-decreasing path."""
    values = values.double()
    variation = (values[:, 1:] - values[:, :-1]).abs().sum(1)
    rise = values[:, -1] - values[:, 0]
    return torch.where(variation > 0, rise / variation.clamp_min(1e-300), torch.ones_like(rise))


def first_true(mask: torch.Tensor, ts: Sequence[float]) -> torch.Tensor:
    """Per row: the first t where ``mask`` holds; NaN when it never does."""
    grid = torch.tensor([float(t) for t in ts], dtype=torch.float64)
    hit = mask.any(1)
    index = mask.double().argmax(1)
    return torch.where(hit, grid[index], torch.full_like(grid[index], float("nan")))


@torch.no_grad()
def probabilities(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    model.eval()
    return torch.cat([F.softmax(model(x[s : s + batch_size]), 1).double().cpu() for s in range(0, len(x), batch_size)])


def select_images(y: torch.Tensor, classes: Sequence[int], n_per_class: int, stop: int) -> torch.Tensor:
    """Indices of the first ``n_per_class`` images of each class among the first ``stop``; class-major order."""
    chosen = []
    for c in classes:
        index = (y[:stop] == c).nonzero().squeeze(1)[:n_per_class]
        if index.numel() < n_per_class:
            raise RobbenchError(f"only {index.numel()} test images of class {c} among the first {stop}; lower n_per_class")
        chosen.append(index)
    return torch.cat(chosen)
