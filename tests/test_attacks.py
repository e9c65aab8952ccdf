from __future__ import annotations

import pytest
import torch

from robbench.attacks import AttackRules, Stage, create_attack
from robbench.attacks.autoattack import applicable_components
from robbench.attacks.geometry import distance
from robbench.attacks.pgd import pgd_perturb
from robbench.errors import AttackBugError, RobbenchError
from robbench.evaluation import run_attacks
from robbench.threat_models import linf


def _toy_model(features: int = 20, classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(features, 32), torch.nn.ReLU(), torch.nn.Linear(32, classes)).eval()


@pytest.mark.parametrize("norm,eps", [("Linf", 0.05), ("L2", 0.5)])
def test_pgd_stays_in_ball_and_value_range(norm, eps):
    model = _toy_model()
    x = torch.rand(64, 20)
    y = torch.randint(0, 3, (64,))
    x_adv = pgd_perturb(
        model, x, y, norm=norm, eps=eps, steps=10, step_size=2.5 * eps / 10, value_range=(0.0, 1.0),
        generator=torch.Generator().manual_seed(0),
    )
    assert float(distance(x_adv, x, norm).max()) <= eps * (1 + 1e-6)
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0


def test_pgd_does_not_clip_unbounded_inputs_to_unit_box():
    model = _toy_model()
    x = torch.randn(32, 20) * 5  # far outside [0, 1]
    y = model(x).argmax(1)
    x_adv = pgd_perturb(
        model, x, y, norm="Linf", eps=0.5, steps=5, step_size=0.25, value_range=None,
        generator=torch.Generator().manual_seed(0),
    )
    assert float(distance(x_adv, x, "Linf").max()) <= 0.5 + 1e-6
    assert float(x_adv.min()) < -1 and float(x_adv.max()) > 2


def test_pgd_keeps_first_misclassified_iterate():
    """A linear 2-class model: once across the boundary, the returned point is that first crossing."""
    model = torch.nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0], [-1.0]]))  # class 0 iff x > 0
    x = torch.tensor([[0.05]])
    y = torch.tensor([0])
    x_adv = pgd_perturb(
        model, x, y, norm="Linf", eps=1.0, steps=10, step_size=0.1, value_range=None, generator=None,
    )
    # iterates: 0.05, -0.05 (first misclassified), -0.15, ...
    assert torch.allclose(x_adv, torch.tensor([[-0.05]]))


def test_verification_refuses_points_outside_the_ball():
    model = _toy_model()
    x = torch.rand(16, 20)
    y = model(x).argmax(1)

    class Cheater:
        name = "cheater"

        def stages(self, model, rules):
            return [Stage("cheat", lambda xb, yb, seed: xb + 10.0)]  # far outside the ball

        def config(self, rules):
            return {}

    with pytest.raises(AttackBugError, match="outside the Linf ball"):
        run_attacks(model, x, y, rules=AttackRules(linf(0.01), None, 3), attacks=[Cheater()], batch_size=8)


def test_autoattack_components_depend_on_number_of_classes():
    assert applicable_components(10) == (["apgd-ce", "apgd-t", "fab-t", "square"], {})
    components, skipped = applicable_components(2)
    assert components == ["apgd-ce", "square"] and set(skipped) == {"apgd-t", "fab-t"}


@pytest.mark.slow
def test_autoattack_on_unbounded_two_class_data_matches_closed_form():
    """The averaging classifier on tsipras: robust accuracy Phi((eta - 2 eta) sqrt(d)) ~ 0.13%."""
    from robbench.data import get_dataset
    from robbench.threat_models import get_threat_model

    dataset = get_dataset("tsipras", n=400)
    x, y = dataset.load("test")
    model = torch.nn.Linear(101, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.weight[1, 1:] = 0.01
        model.weight[0, 1:] = -0.01
        model.bias.zero_()
    outcome = run_attacks(
        model, x, y, rules=AttackRules.for_dataset(dataset, get_threat_model(dataset, "linf")),
        attacks=[create_attack("autoattack")], batch_size=200,
    )
    assert outcome.clean_accuracy > 0.99
    assert outcome.robust_accuracy <= 2 / 400
    assert [s.name for s in outcome.attacks[0].stages] == ["apgd-ce", "square"]


class InfiniteOffTheGrid(torch.nn.Module):
    """Finite logits on 8-bit images (every clean input), ``fill`` (+Inf or NaN) anywhere else in the ball."""

    def __init__(self, model: torch.nn.Module, fill: float):
        super().__init__()
        self.model, self.fill = model, fill

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        off_grid = (x * 255 - torch.round(x * 255)).abs().flatten(1).amax(1) > 1e-3
        return torch.where(off_grid[:, None], torch.full_like(logits, self.fill), logits)


@pytest.mark.parametrize("attack", ["pgd", "autoattack"])
@pytest.mark.parametrize("fill", [float("inf"), float("nan")])
def test_non_finite_logits_near_the_inputs_are_refused_naming_the_example(attack, fill):
    """argmax of all-Inf (or all-NaN) logits is class 0: such examples must not count as robust."""
    model = InfiniteOffTheGrid(torch.nn.Sequential(torch.nn.Flatten(), _toy_model(features=64, classes=4)), fill)
    x = torch.randint(0, 256, (12, 1, 8, 8)).float() / 255
    y = model(x).argmax(1)
    with pytest.raises(RobbenchError, match=r"NaN or Inf logits .* test example \d+") as info:
        run_attacks(
            model, x, y, rules=AttackRules(linf(0.1), (0.0, 1.0), 4), attacks=[create_attack(attack)], batch_size=12,
        )
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("norm,eps", [("Linf", 0.1), ("L2", 0.5)])
def test_pgd_stays_finite_where_the_model_gradient_is_nan(norm, eps):
    """0·sqrt(x) has a NaN gradient at x = 0 and changes no logit: PGD must still return points in the ball."""
    base = _toy_model()

    def model(x: torch.Tensor) -> torch.Tensor:
        return base(x) + 0 * torch.sqrt(x).sum(1, keepdim=True)

    x = torch.rand(16, 20).clamp_min(0.5) - 0.5  # half the pixels at 0
    y = base(x).argmax(1)
    x_adv = pgd_perturb(
        model, x, y, norm=norm, eps=eps, steps=10, step_size=eps / 4, value_range=(0.0, 1.0),
        generator=torch.Generator().manual_seed(0),
    )
    assert bool(torch.isfinite(x_adv).all())
    assert float(distance(x_adv, x, norm).max()) <= eps * (1 + 1e-6)
