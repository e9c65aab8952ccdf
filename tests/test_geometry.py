"""The norm-ball geometry every attack starts from (``robbench.attacks.geometry``): random starts, projections.

The bounds are the definitions: a uniform sample of the L-inf box ``[-eps, eps]^d`` stays in it and,
over 20,000 coordinates, comes within 1 % of both faces (the chance a uniform sample of that size misses
a 1 % strip at one face is 0.99^20000, about 1e-87); the L2 start's radius is uniform on ``[0, eps]``.
"""

from __future__ import annotations

import pytest
import torch

from robbench.attacks.geometry import ascent_direction, distance, project, random_in_ball

EPS = 0.3


def _start(norm: str, seed: int = 0, shape: tuple[int, ...] = (200, 1, 10, 10)) -> torch.Tensor:
    return random_in_ball(torch.zeros(shape), norm, EPS, torch.Generator().manual_seed(seed))


def test_an_linf_start_is_uniform_on_the_whole_box():
    delta = _start("Linf")
    assert float(delta.abs().max()) <= EPS
    assert float(delta.min()) < -0.99 * EPS and float(delta.max()) > 0.99 * EPS
    assert abs(float(delta.mean())) < 0.01 * EPS  # symmetric: the mean of 20,000 uniforms has sd eps/245


def test_an_l2_start_lies_in_the_ball_at_every_radius():
    norms = _start("L2").flatten(1).norm(dim=1)
    assert float(norms.max()) <= EPS * (1 + 1e-6)
    assert float(norms.max()) > 0.95 * EPS and float(norms.min()) < 0.05 * EPS  # 200 uniform radii
    # not the L-inf box: a point of the box has L2 norm up to eps * sqrt(100)
    assert float(_start("Linf").flatten(1).norm(dim=1).max()) > 2 * EPS


def test_a_start_is_the_generators_and_keeps_the_inputs_dtype():
    for norm in ("Linf", "L2"):
        torch.manual_seed(123)  # the global generator must play no part
        first = _start(norm, seed=5)
        torch.manual_seed(456)
        assert torch.equal(first, _start(norm, seed=5))
        assert not torch.equal(first, _start(norm, seed=6))
    for norm in ("Linf", "L2"):
        for dtype in (torch.float64, torch.float16):  # float16: a float32 draw would promote the start to float32
            start = random_in_ball(torch.zeros(2, 3, dtype=dtype), norm, EPS, torch.Generator().manual_seed(0))
            assert start.dtype == dtype and start.shape == (2, 3)


def test_distance_is_the_norms_of_the_flattened_difference():
    x = torch.zeros(2, 1, 2, 2)
    x_adv = torch.tensor([[3.0, 4.0, 0.0, 0.0], [-1.0, 1.0, 1.0, -1.0]]).view(2, 1, 2, 2)
    assert distance(x_adv, x, "Linf").tolist() == [4.0, 1.0]
    assert distance(x_adv, x, "L2").tolist() == [5.0, 2.0]


def test_projection_is_the_nearest_point_of_the_ball_then_the_range():
    x = torch.full((1, 4), 0.5)
    x_adv = torch.tensor([[0.9, 0.1, 0.6, 0.5]])
    assert project(x_adv, x, "Linf", 0.2, None)[0].tolist() == pytest.approx([0.7, 0.3, 0.6, 0.5])
    # L2: (0.4, -0.4, 0.1, 0) has norm 0.574; scaled radially to 0.2
    delta = project(x_adv, x, "L2", 0.2, None) - x
    assert float(delta.norm()) == pytest.approx(0.2) and torch.allclose(delta / 0.2, (x_adv - x) / (x_adv - x).norm())
    # each example by its own norm: one far outside (norm 1.0, scaled to 0.2), one inside (norm 0.1, unchanged)
    batch = project(torch.tensor([[1.5, 0.5], [0.6, 0.5]]), torch.full((2, 2), 0.5), "L2", 0.2, None)
    assert batch.tolist() == [[pytest.approx(0.7), 0.5], [pytest.approx(0.6), 0.5]]
    inside = torch.tensor([[0.55, 0.45, 0.5, 0.5]])
    assert torch.equal(project(inside, x, "L2", 0.2, None), inside)  # inside the ball: unchanged
    assert project(torch.tensor([[1.4, -0.4]]), torch.tensor([[0.9, 0.1]]), "Linf", 1.0, (0.0, 1.0)).tolist() == [[1.0, 0.0]]


def test_the_ascent_direction_has_unit_norm_and_ignores_nan():
    grad = torch.tensor([[3.0, -4.0, 0.0], [float("nan"), float("inf"), -float("inf")]])
    assert ascent_direction(grad, "Linf").tolist() == [[1.0, -1.0, 0.0], [0.0, 1.0, -1.0]]
    l2 = ascent_direction(grad, "L2")
    assert l2[0].tolist() == pytest.approx([0.6, -0.8, 0.0])
    assert l2[1].tolist() == pytest.approx([0.0, 2 ** -0.5, -(2 ** -0.5)])
    small = ascent_direction(torch.tensor([[0.003, -0.004]]), "L2")  # a gradient of norm 0.005 is scaled up too
    assert small[0].tolist() == pytest.approx([0.6, -0.8])
    assert ascent_direction(torch.zeros(1, 3), "L2").tolist() == [[0.0, 0.0, 0.0]]  # no gradient: no step, no NaN
