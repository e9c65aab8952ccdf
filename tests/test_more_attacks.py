"""The attacks beyond PGD and AutoAttack: apgd, square, autoattack(version=rand), rays, hopskipjump, transfer.

Geometry (every candidate inside the ball and the value range), strength against models whose
robust accuracy is known in closed form, and exactness against the official pyautoattack classes.
"""

from __future__ import annotations

import pytest
import torch

from robbench.attacks import ATTACKS, AttackRules, create_attack
from robbench.attacks.geometry import distance
from robbench.errors import RobbenchError
from robbench.evaluation import run_attacks
from robbench.threat_models import ThreatModel

NEW_ATTACKS = ("apgd", "square", "rays", "hopskipjump", "transfer")


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    """On two shared cores one torch thread is many times faster than oversubscribed ones."""


def _threat(norm: str, eps: float) -> ThreatModel:
    return ThreatModel(name=norm.lower(), norm=norm, eps=eps)


def _mlp(features: int = 36, classes: int = 5) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(features, 32), torch.nn.ReLU(), torch.nn.Linear(32, classes)
    ).eval()


def _images(n: int = 24) -> torch.Tensor:
    return torch.rand(n, 1, 6, 6, generator=torch.Generator().manual_seed(1))


class _Quantized(torch.nn.Module):
    """Inputs rounded to 4 levels before the network: zero input gradient almost everywhere (gradient masking).

    ``without_preprocessing()`` hands out the network behind the rounding, as a defence plugin may.
    """

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(torch.round(x * 3) / 3)

    def without_preprocessing(self) -> torch.nn.Module:
        return self.network


def test_robbench_list_shows_every_new_attack(capsys):
    from robbench.cli import main

    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    for name in NEW_ATTACKS:
        assert f" {name} " in listed
    assert set(NEW_ATTACKS) <= set(ATTACKS.names())


CANDIDATES = [
    ("apgd", {"iterations": 10}, "Linf", 0.1), ("apgd", {"iterations": 10, "loss": "dlr"}, "L2", 1.0),
    ("apgd", {"iterations": 5, "loss": "dlr-targeted", "target_classes": 2}, "Linf", 0.1),
    ("apgd", {"iterations": 5, "eot_iter": 2}, "L2", 1.0),
    ("square", {"queries": 50}, "Linf", 0.1), ("square", {"queries": 50}, "L2", 1.0),
    ("rays", {"queries": 200}, "Linf", 0.1), ("hopskipjump", {"queries": 300}, "L2", 1.0),
    ("transfer", {"surrogate": "self-without-preprocessing", "steps": 5}, "Linf", 0.1),
]


@pytest.mark.parametrize("name,options,norm,eps", CANDIDATES)
def test_candidates_stay_in_the_ball_and_the_value_range(name, options, norm, eps):
    """Each stage's raw output, before any verification: inside the ε-ball and [0, 1], whatever it broke."""
    model = _Quantized(_mlp()).eval()
    x = _images()
    y = model(x).argmax(1)
    rules = AttackRules(_threat(norm, eps), (0.0, 1.0), 5)
    (stage,) = create_attack(name, **options).stages(model, rules)
    x_adv = stage.run(x.clone(), y, 7)
    assert x_adv.shape == x.shape
    assert float(distance(x_adv, x, norm).max()) <= eps * (1 + 1e-5) + 1e-6
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0


def _linear_two_class(features: int) -> torch.nn.Module:
    """Class 1 iff w·x + b > 0, with fixed w and b."""
    model = torch.nn.Linear(features, 2)
    with torch.no_grad():
        w = torch.linspace(-1, 1, features)
        model.weight.copy_(torch.stack([-w / 2, w / 2]))
        model.bias.copy_(torch.tensor([-0.05, 0.05]))
    return model.eval()


@pytest.mark.parametrize("name,norm,eps", [
    pytest.param("rays", "Linf", 0.05, marks=pytest.mark.slow),  # one direction per query for the far examples
    ("hopskipjump", "L2", 0.1),
])
def test_decision_based_attacks_find_the_linear_boundary(name, norm, eps):
    """For w·x + b the exact distance to the boundary is |w·x + b| / ||w||_1 (L-inf) or / ||w||_2 (L2), inputs
    unbounded: every example nearer than 0.8·ε must break (the attacks only see labels), none farther than ε can."""
    features = 16
    model = _linear_two_class(features)
    x = torch.randn(60, features, generator=torch.Generator().manual_seed(0)) * 0.1
    y = model(x).argmax(1)
    with torch.no_grad():
        w, b = model.weight[1] - model.weight[0], model.bias[1] - model.bias[0]
        exact = (x @ w + b).abs() / (w.abs().sum() if norm == "Linf" else w.norm())
    assert 5 < int((exact < 0.8 * eps).sum()) < 55  # a real test: some near, some far
    outcome = run_attacks(model, x, y, rules=AttackRules(_threat(norm, eps), None, 2),
                          attacks=[create_attack(name, queries=1000)], batch_size=60)
    broken = ~outcome.robust_mask
    assert bool(broken[exact < 0.8 * eps].all())
    assert not bool(broken[exact > eps * (1 + 1e-4)].any())


def test_apgd_ce_is_pyautoattacks_apgd_ce():
    """robbench's apgd with its defaults breaks exactly what the official APGDAttack breaks, with the same seed."""
    from pyautoattack.autopgd_base import APGDAttack

    model = _mlp()
    x = _images(32)
    y = model(x).argmax(1)
    eps = 0.08
    outcome = run_attacks(model, x, y, rules=AttackRules(_threat("Linf", eps), (0.0, 1.0), 5, seed=3),
                          attacks=[create_attack("apgd", iterations=20)], batch_size=32)
    official = APGDAttack(model, n_iter=20, norm="Linf", n_restarts=1, eps=eps, seed=3, loss="ce", device="cpu")
    with torch.no_grad():
        official_robust = model(official.perturb(x, y)).argmax(1) == y
    assert 0 < int(official_robust.sum()) < 32
    assert torch.equal(outcome.robust_mask, official_robust)


def test_square_is_pyautoattacks_square():
    from pyautoattack.square import SquareAttack

    model = _mlp()
    x = _images(16)
    y = model(x).argmax(1)
    eps = 0.1
    outcome = run_attacks(model, x, y, rules=AttackRules(_threat("Linf", eps), (0.0, 1.0), 5, seed=5),
                          attacks=[create_attack("square", queries=100)], batch_size=16)
    official = SquareAttack(model, norm="Linf", n_queries=100, eps=eps, p_init=0.8, n_restarts=1, seed=5, device="cpu",
                            resc_schedule=False)
    with torch.no_grad():
        official_robust = model(official.perturb(x, y)).argmax(1) == y
    assert 0 < int(official_robust.sum()) < 16
    assert torch.equal(outcome.robust_mask, official_robust)


def test_transfer_without_preprocessing_breaks_what_gradients_cannot():
    """The quantiser zeroes every input gradient: PGD breaks nothing, PGD on the network behind it breaks most."""
    model = _Quantized(_mlp()).eval()
    x = _images(40)
    y = model(x).argmax(1)
    common = dict(rules=AttackRules(_threat("Linf", 0.3), (0.0, 1.0), 5), batch_size=40)
    pgd = run_attacks(model, x, y, attacks=[create_attack("pgd")], **common)
    transfer = run_attacks(model, x, y, attacks=[create_attack("transfer", surrogate="self-without-preprocessing")], **common)
    assert pgd.robust_accuracy >= 0.9  # only a random start that lands across a rounding step breaks one
    assert transfer.robust_accuracy < 0.5


def test_transfer_from_a_registered_model(linear_submission):
    """A surrogate named by its model.yaml: crafted on the linear model, checked on the same weights behind a quantiser."""
    from robbench import load_dataset
    from robbench.zoo import load_model

    target = _Quantized(load_model(linear_submission))
    x, y = load_dataset("fashion-mnist", n=60)
    attack = create_attack("transfer", surrogate=str(linear_submission), steps=20)
    rules = AttackRules(_threat("Linf", 0.1), (0.0, 1.0), 10)
    assert attack.config(rules)["surrogate_resolved"]["name"] == "fmnist-linear"
    outcome = run_attacks(target, x, y, rules=rules, attacks=[attack], batch_size=60)
    assert outcome.robust_accuracy < outcome.clean_accuracy / 2


@pytest.mark.parametrize("name,options,norm,message", [
    ("rays", {}, "L2", "rays is an L-inf attack.*use hopskipjump"),
    ("hopskipjump", {}, "Linf", "hopskipjump is an L2 attack.*use rays"),
    ("apgd", {"loss": "dlr-targeted"}, "Linf", "needs at least 4 classes, the dataset has 3; use loss=ce"),
    ("transfer", {"surrogate": "self-without-preprocessing"}, "Linf", "no preprocessing robbench can remove"),
])
def test_attacks_refuse_what_they_cannot_do_in_one_line(name, options, norm, message):
    rules = AttackRules(_threat(norm, 0.1), (0.0, 1.0), 3)
    with pytest.raises(RobbenchError, match=message) as info:
        create_attack(name, **options).stages(_mlp(classes=3), rules)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name,options,message", [
    ("apgd", {"loss": "hinge"}, "apgd loss 'hinge' is unknown"),
    ("apgd", {"iterations": 0}, "apgd needs iterations"),
    ("square", {"p_init": 0.0}, "square needs"),
    ("rays", {"queries": 0}, "rays needs queries >= 1"),
    ("transfer", {}, "transfer needs surrogate=MODEL"),
    ("autoattack", {"version": "plus"}, "use one of standard, rand"),
])
def test_bad_options_are_refused_when_the_attack_is_made(name, options, message):
    with pytest.raises(RobbenchError, match=message):
        create_attack(name, **options)
