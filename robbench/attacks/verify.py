"""Nothing counts as broken until checked: inside the ball, inside the value range, misclassified.

And nothing counts as correct unless its logits are finite: argmax of all-Inf (or all-NaN)
logits is class 0, which is no prediction at all.
"""

from __future__ import annotations

import torch

from ..errors import AttackBugError, RobbenchError
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
def classified_correctly(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per example: finite logits whose argmax is the label."""
    return (logits.argmax(1) == y) & torch.isfinite(logits).all(1)


def verified_successes(
    stage_name: str,
    logits_adv: torch.Tensor,
    x_adv: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    value_range: tuple[float, float] | None,
    example_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mask of examples whose ``x_adv`` is a valid adversarial example.

    A misclassified candidate outside the ball or the range is an attack bug (``AttackBugError``):
    counting it would report a number the threat model does not support.

    NaN or Inf logits at a valid candidate refuse the model, naming the example (its position in
    ``example_ids``, the test indices of the batch). Not a flag: such a point is neither a correct
    nor a wrong prediction, so any robust accuracy would depend on how the model's Infs sort; the
    clean pass refuses non-finite logits for the same reason, and the fix (finite logits on the
    whole ball, e.g. clamped) is the model's.
    """
    if x_adv.shape != x.shape:
        raise AttackBugError(f"attack stage {stage_name!r} returned shape {tuple(x_adv.shape)} for inputs {tuple(x.shape)}")
    misclassified = ~classified_correctly(logits_adv, y)
    valid = allowed_inputs(x_adv, x, threat, value_range)
    no_prediction = valid & ~torch.isfinite(logits_adv).all(1)
    if bool(no_prediction.any()):
        first = int(no_prediction.nonzero()[0, 0])
        example = int(example_ids[first]) if example_ids is not None else first
        raise RobbenchError(
            f"the model returned NaN or Inf logits at a point that attack stage {stage_name!r} found inside the "
            f"{threat.norm} ball of radius {threat.eps:g} around test example {example} "
            f"({int(no_prediction.sum())} such examples in its batch); robbench cannot count them as correct or "
            "wrong: make the model's logits finite on the whole ball (e.g. clamp them)"
        )
    invalid = misclassified & ~valid
    if bool(invalid.any()):
        worst = float(distance(x_adv, x, threat.norm)[invalid].max())
        raise AttackBugError(
            f"attack stage {stage_name!r} produced {int(invalid.sum())} misclassified points outside the "
            f"{threat.norm} ball of radius {threat.eps:g} or the value range (largest distance {worst:.6g}); "
            "this is an attack bug, no number was recorded"
        )
    return misclassified
