"""Nothing counts as broken until checked: inside the ball, inside the value range, misclassified."""

from __future__ import annotations

import torch

from ..errors import AttackBugError
from ..threat_models import ThreatModel
from .geometry import distance

#: float32 slack for points on the sphere or the box edge
ABS_TOLERANCE = 1e-5
REL_TOLERANCE = 1e-5


def allowed_inputs(x_adv: torch.Tensor, x: torch.Tensor, threat: ThreatModel,
                   value_range: tuple[float, float] | None) -> torch.Tensor:
    """Per example: finite, inside the threat model's ball around ``x`` and inside the value range."""
    finite = torch.isfinite(x_adv.flatten(1)).all(1)
    in_ball = distance(x_adv, x, threat.norm) <= threat.eps * (1 + REL_TOLERANCE) + ABS_TOLERANCE
    in_range = torch.ones_like(in_ball)
    if value_range is not None:
        low, high = value_range
        flat = x_adv.flatten(1)
        in_range = (flat.amin(1) >= low - ABS_TOLERANCE) & (flat.amax(1) <= high + ABS_TOLERANCE)
    return finite & in_ball & in_range


def verified_successes(
    stage_name: str,
    logits_adv: torch.Tensor,
    x_adv: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    value_range: tuple[float, float] | None,
) -> torch.Tensor:
    """Mask of examples whose ``x_adv`` is a valid adversarial example.

    A misclassified candidate outside the ball or the range is an attack bug (``AttackBugError``):
    counting it would report a number the threat model does not support.
    """
    if x_adv.shape != x.shape:
        raise AttackBugError(f"attack stage {stage_name!r} returned shape {tuple(x_adv.shape)} for inputs {tuple(x.shape)}")
    misclassified = logits_adv.argmax(1) != y
    invalid = misclassified & ~allowed_inputs(x_adv, x, threat, value_range)
    if bool(invalid.any()):
        worst = float(distance(x_adv, x, threat.norm)[invalid].max())
        raise AttackBugError(
            f"attack stage {stage_name!r} produced {int(invalid.sum())} misclassified points outside the "
            f"{threat.norm} ball of radius {threat.eps:g} or the value range (largest distance {worst:.6g}); "
            "this is an attack bug, no number was recorded"
        )
    return misclassified
