"""Break verification (``robbench.attacks.verify``): what counts as broken, at its tolerances' edges.

The bounds are the module's own definitions: a point is inside the ball when its distance is at most
``eps * (1 + REL_TOLERANCE) + ABS_TOLERANCE`` (1e-5 each) and inside the value range within ``ABS_TOLERANCE``.
Each case puts a point just inside and just outside such an edge (by 1e-6, far above float32's resolution
near these values, about 1e-8).
"""

from __future__ import annotations

import math

import pytest
import torch

from robbench.attacks.verify import (
    ABS_TOLERANCE, REL_TOLERANCE, allowed_inputs, classified_correctly, verified_successes,
)
from robbench.errors import AttackBugError, RobbenchError
from robbench.threat_models import l2, linf

EPS = 0.1
EDGE = EPS * (1 + REL_TOLERANCE) + ABS_TOLERANCE  # 0.100011


def _points(offsets: list[float], base: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_adv, x): 4-pixel examples at ``base``, each x_adv moved by its offset in its first pixel only."""
    x = torch.full((len(offsets), 4), base)
    x_adv = x.clone()
    x_adv[:, 0] += torch.tensor(offsets)
    return x_adv, x


def test_the_tolerances_are_one_in_a_hundred_thousand():
    assert (ABS_TOLERANCE, REL_TOLERANCE) == (1e-5, 1e-5)
    assert EDGE == pytest.approx(0.100011, abs=1e-12)


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_the_ball_edge_is_eps_with_its_tolerances(norm):
    threat = linf(EPS) if norm == "Linf" else l2(EPS)
    # one pixel moved: its distance is |offset| in both norms
    x_adv, x = _points([0.0, EPS, -EPS, EDGE - 1e-6, -(EDGE - 1e-6), EDGE + 1e-6, -(EDGE + 1e-6)])
    assert allowed_inputs(x_adv, x, threat, None).tolist() == [True, True, True, True, True, False, False]


def test_l2_measures_the_whole_perturbation():
    x = torch.zeros(2, 4)
    x_adv = torch.full((2, 4), 0.04)  # L-inf 0.04, L2 0.08
    x_adv[1] = 0.06  # L-inf 0.06, L2 0.12
    assert allowed_inputs(x_adv, x, l2(EPS), None).tolist() == [True, False]
    assert allowed_inputs(x_adv, x, linf(EPS), None).tolist() == [True, True]


def test_the_value_range_edge_is_the_range_with_its_tolerance():
    threat = linf(EPS)
    tolerance = ABS_TOLERANCE
    above, _ = _points([0.0, 0.0, 0.0, 0.0], base=1.0)
    above[:, 0] = torch.tensor([1.0, 1.0 + tolerance - 1e-6, 1.0 + tolerance + 1e-6, 1.05])
    below, _ = _points([0.0, 0.0, 0.0, 0.0], base=0.0)
    below[:, 1] = torch.tensor([0.0, -tolerance + 1e-6, -tolerance - 1e-6, -0.05])
    for x_adv, clean_value in ((above, 1.0), (below, 0.0)):
        x = torch.full_like(x_adv, clean_value)
        assert allowed_inputs(x_adv, x, threat, (0.0, 1.0)).tolist() == [True, True, False, False]
        assert allowed_inputs(x_adv, x, threat, None).tolist() == [True, True, True, True]  # no range: only the ball


def test_a_range_is_checked_on_every_pixel_not_only_the_extremes_of_the_first():
    x = torch.full((1, 4), 0.98)
    x_adv = x.clone()
    x_adv[0, 3] = 1.05  # the last pixel leaves [0, 1] by 0.05 (0.07 from x: inside the ball)
    assert allowed_inputs(x_adv, x, linf(EPS), (0.0, 1.0)).tolist() == [False]
    assert allowed_inputs(x_adv, x, linf(EPS), (0.0, 1.1)).tolist() == [True]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_point_is_never_allowed(value):
    x = torch.zeros(2, 4)
    x_adv = x.clone()
    x_adv[1, 2] = value
    assert allowed_inputs(x_adv, x, linf(EPS), None).tolist() == [True, False]


def test_each_condition_alone_refuses():
    """Inside the ball and range; outside the ball only; outside the range only (within the ball)."""
    x = torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.95, 0.95]])
    x_adv = torch.tensor([[0.55, 0.45], [0.7, 0.5], [1.02, 0.95]])
    assert allowed_inputs(x_adv, x, linf(EPS), (0.0, 1.0)).tolist() == [True, False, False]


def test_only_finite_logits_whose_argmax_is_the_label_are_correct():
    logits = torch.tensor([[2.0, 1.0], [1.0, 2.0], [math.nan, 1.0], [math.inf, 1.0], [2.0, -math.inf]])
    y = torch.tensor([0, 0, 1, 0, 0])
    assert classified_correctly(logits, y).tolist() == [True, False, False, False, False]


def test_verified_successes_are_the_misclassified_points():
    x_adv, x = _points([0.05, -0.05, 0.0])
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 0, 1])
    assert verified_successes("pgd/run", logits, x_adv, x, y, linf(EPS), (0.0, 1.0)).tolist() == [True, False, False]


def test_a_correctly_classified_point_outside_the_ball_is_no_bug():
    x_adv, x = _points([0.3])
    assert verified_successes("pgd/run", torch.tensor([[1.0, 0.0]]), x_adv, x, torch.tensor([0]), linf(EPS),
                              None).tolist() == [False]


def test_a_point_exactly_on_the_edge_is_inside():
    """The bound is inclusive: a distance equal to it (in float32, the tensors' precision) is allowed."""
    edge = float(torch.tensor(EDGE, dtype=torch.float32))
    x = torch.zeros(1, 4)
    x_adv = torch.tensor([[edge, 0.0, 0.0, 0.0]])
    assert allowed_inputs(x_adv, x, linf(EPS), None).tolist() == [True]
    assert allowed_inputs(x_adv * (1 + 1e-6), x, linf(EPS), None).tolist() == [False]
    # so are the value range's: a pixel exactly at low - ABS_TOLERANCE or high + ABS_TOLERANCE is inside it
    below, above = (float(torch.tensor(v, dtype=torch.float32)) for v in (0.0 - ABS_TOLERANCE, 1.0 + ABS_TOLERANCE))
    x = torch.tensor([[0.0, 0.5], [1.0, 0.5]])
    x_adv = torch.tensor([[below, 0.5], [above, 0.5]])
    assert allowed_inputs(x_adv, x, linf(EPS), (0.0, 1.0)).tolist() == [True, True]


def test_a_misclassified_point_inside_the_ball_but_outside_the_range_is_an_attack_bug():
    x = torch.full((1, 4), 0.98)
    x_adv = x.clone()
    x_adv[0, 0] = 1.05  # 0.07 from x: inside the ball, above the range [0, 1]
    with pytest.raises(AttackBugError, match=r"produced 1 misclassified points outside the Linf ball of radius 0.1 or "
                                              r"the value range \(largest distance 0.0699999\)"):  # 1.05 - 0.98 in float32
        verified_successes("pgd/run", torch.tensor([[0.0, 1.0]]), x_adv, x, torch.tensor([0]), linf(EPS), (0.0, 1.0))


def test_a_misclassified_point_outside_the_ball_is_an_attack_bug_with_the_worst_distance():
    x_adv, x = _points([0.05, 0.3, 0.2, 0.4])
    x_adv = x + (x_adv - x)[:, :1]  # every pixel moved alike: L-inf 0.3 where L2 would say 0.6
    logits = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])  # the last (0.4 away) is correct
    with pytest.raises(AttackBugError) as info:
        verified_successes("pgd/run", logits, x_adv, x, torch.tensor([0, 0, 0, 0]), linf(EPS), (0.0, 1.0))
    assert str(info.value) == (
        "attack stage 'pgd/run' produced 2 misclassified points outside the Linf ball of radius 0.1 or the value "
        "range (largest distance 0.3); this is an attack bug, no number was recorded"
    )


def test_a_wrong_shape_is_an_attack_bug():
    x = torch.zeros(2, 4)
    with pytest.raises(AttackBugError, match=r"^attack stage 'fab/t' returned shape \(2, 3\) for inputs \(2, 4\)$"):
        verified_successes("fab/t", torch.zeros(2, 2), torch.zeros(2, 3), x, torch.zeros(2, dtype=torch.long),
                           linf(EPS), None)


def test_non_finite_logits_at_a_valid_point_refuse_the_model_naming_the_example():
    x_adv, x = _points([0.0, 0.05, 0.05, 0.3])
    logits = torch.tensor([[1.0, 0.0], [math.nan, 0.0], [math.inf, 0.0], [math.nan, 0.0]])  # the last is outside
    y = torch.zeros(4, dtype=torch.long)
    message = ("the model returned NaN or Inf logits at a point that attack stage 'pgd/run' found inside the L2 "
               "ball of radius 0.1 around test example {} (2 such examples in its batch); robbench cannot count "
               "them as correct or wrong: make the model's logits finite on the whole ball (e.g. clamp them)")
    with pytest.raises(RobbenchError) as info:
        verified_successes("pgd/run", logits, x_adv, x, y, l2(EPS), None, example_ids=torch.tensor([70, 71, 72, 73]))
    assert str(info.value) == message.format(71)
    with pytest.raises(RobbenchError) as info:
        verified_successes("pgd/run", logits, x_adv, x, y, l2(EPS), None)
    assert str(info.value) == message.format(1)  # without test indices: the position in the batch
