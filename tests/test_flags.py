"""Reliability flags: a model built to trip each one trips it; a plain trained model trips none."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import nn

from robbench.attacks import AttackRules, create_attack
from robbench.data import get_dataset
from robbench.evaluation import run_attacks
from robbench.flags import BoardStandard, attack_flags, board_flags, check_radii, eps_flags, model_flags
from robbench.results import Flag, read_record, write_record
from robbench.threat_models import ThreatModel, linf
from .helpers import REPO, fit_linear_fashion_mnist

MODEL_BEHAVIOUR = {"randomized", "softmax-output", "masked-gradients", "eps-not-monotone", "no-collapse-at-large-eps"}
LINF = linf(0.1)
CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def linear() -> nn.Module:
    return fit_linear_fashion_mnist()


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    return get_dataset("fashion-mnist").load("test", 20)


class Around(nn.Module):
    """``f(linear, x)``: the plain linear model with one dishonest twist."""

    def __init__(self, linear: nn.Module, twist: Callable[[nn.Module, torch.Tensor], torch.Tensor]):
        super().__init__()
        self.linear, self.twist = linear, twist

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.twist(self.linear, x)


class RecognisesTestInputs(nn.Module):
    """Honest near the test inputs it memorised; far from them (a large ε), it answers from memory."""

    def __init__(self, linear: nn.Module, x: torch.Tensor, y: torch.Tensor, radius: float):
        super().__init__()
        self.linear, self.known_x, self.known_y, self.radius = linear, x.flatten(1), y, radius

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distance, nearest = (x.detach().flatten(1)[:, None] - self.known_x[None]).abs().amax(2).min(1)
        remembered = nn.functional.one_hot(self.known_y[nearest], 10).float() * 10
        return torch.where((distance > self.radius)[:, None], remembered, self.linear(x))


TWISTS = {
    "randomized": lambda f, x: f(x) + 0.5 * torch.randn(x.shape[0], 10),  # noise at inference
    "softmax-output": lambda f, x: f(x).softmax(1),
    "masked-gradients": lambda f, x: f(torch.round(x * 4) / 4),  # input quantisation: zero gradients
}


def _flags(model: nn.Module, data, threat: ThreatModel = LINF) -> set[str]:
    x, y = data
    return {f.code for f in model_flags(model.eval(), x, y, threat=threat, value_range=(0.0, 1.0), seed=0, device=CPU)}


def _attacked(model: nn.Module, data) -> set[str]:
    x, y = data
    outcome = run_attacks(
        model.eval(), x, y, rules=AttackRules(LINF, (0.0, 1.0), 10, seed=0, device=CPU),
        attacks=[create_attack("pgd"), create_attack("autoattack")], batch_size=20,
    )
    return {f.code for f in attack_flags(outcome.attacks, outcome.n_examples)}


@pytest.mark.slow
@pytest.mark.parametrize("code", sorted(TWISTS))
def test_model_built_to_trip_a_flag_trips_it(linear, data, code):
    assert code in _flags(Around(linear, TWISTS[code]), data)


def test_robustness_that_grows_with_eps_is_flagged(linear, data):
    codes = _flags(RecognisesTestInputs(linear, *data, radius=0.15), data)
    assert {"eps-not-monotone", "no-collapse-at-large-eps"} <= codes


@pytest.mark.slow
def test_plain_trained_model_raises_no_model_or_attack_flag(linear, data):
    assert _flags(linear, data) & MODEL_BEHAVIOUR == set()
    assert _attacked(linear, data) == set()


@pytest.mark.slow
def test_square_beating_masked_gradients_is_flagged(linear, data):
    assert "square-beats-white-box" in _attacked(Around(linear, TWISTS["masked-gradients"]), data)


@pytest.mark.slow
def test_pgd_far_above_autoattack_is_flagged(linear, data):
    """Logits scaled by 1e4 saturate cross-entropy (PGD's loss); AutoAttack's DLR loss is scale-free."""
    assert "pgd-above-autoattack" in _attacked(Around(linear, lambda f, x: f(x) * 1e4), data)


def test_flags_do_not_leak_from_one_model_to_the_next(linear, data):
    """pyautoattack's dynamic-defence check counts calls process-wide; robbench's checks keep no state."""
    assert "randomized" in _flags(Around(linear, TWISTS["randomized"]), data)
    assert _flags(linear, data) & MODEL_BEHAVIOUR == set()


@pytest.mark.parametrize(
    "accuracies,expected",
    [
        ({0.1: 0.30, 0.2: 0.05, 0.4: 0.0}, set()),
        ({0.1: 0.30, 0.2: 0.40, 0.4: 0.0}, {"eps-not-monotone"}),
        ({0.1: 0.30, 0.2: 0.30, 0.4: 0.30}, {"eps-not-monotone", "no-collapse-at-large-eps"}),
        ({0.1: 0.50, 0.2: 0.30, 0.4: 0.20}, {"no-collapse-at-large-eps"}),
        ({0.1: 0.01, 0.2: 0.01, 0.4: 0.01}, set()),  # one example in a hundred: within PGD's slack
    ],
)
def test_eps_rule(accuracies, expected):
    assert {f.code for f in eps_flags(accuracies, 100)} == expected


@pytest.mark.parametrize(
    "eps,standard,radii",
    [(0.1, 0.1, (0.1, 0.2, 0.4)), (0.03, 0.1, (0.03, 0.06, 0.4)), (0.3, 0.1, (0.3, 0.6, 1.2)), (0.3, 0.5, (0.3, 0.6, 2.0))],
)
def test_collapse_radius_follows_the_dataset_scale_not_a_small_eps(eps, standard, radii):
    assert check_radii(eps, standard) == pytest.approx(radii)


def test_board_flags_and_the_record_keep_them(linear_submission, tmp_path):
    from robbench import evaluate

    record = evaluate(linear_submission, threat_models="linf", attacks=["pgd"], n_examples=20, device="cpu", seed=3)[0]
    codes = [f.code for f in record.flags]
    assert {"non-standard-seed", "non-standard-attacks"} <= set(codes) and "non-standard-subset" not in codes  # a subset is a marker
    assert "version-mismatch" not in codes
    assert {f.code for f in board_flags(record, BoardStandard(pyautoattack="9.9.9"))} >= {"version-mismatch"}
    again = read_record(write_record(record, tmp_path))
    assert again.flags == record.flags and all(isinstance(f, Flag) and f.message for f in again.flags)
    assert [str(f) for f in again.flags] == codes  # what a leaderboard cell shows


def test_model_that_detaches_its_input_gets_squares_result_and_the_masked_gradients_flag(linear, data):
    """No autograd path from input to logits: gradient attacks see a zero gradient, Square decides."""
    detached = Around(linear, lambda f, x: f(x.detach()))
    x, y = data
    outcome = run_attacks(
        detached.eval(), x, y, rules=AttackRules(LINF, (0.0, 1.0), 10, seed=0, device=CPU),
        attacks=[create_attack("pgd"), create_attack("autoattack")], batch_size=20,
    )
    stages = {s.name: s for a in outcome.attacks for s in a.stages}
    assert stages["square"].n_broken > 0
    assert outcome.robust_accuracy < outcome.attacks[0].accuracy  # Square's breaks count
    assert "masked-gradients" in _flags(detached, data)
    assert "square-beats-white-box" in {f.code for f in attack_flags(outcome.attacks, outcome.n_examples)}


@pytest.fixture(scope="module")
def pgd_at_model() -> nn.Module:
    from robbench.config import load_model_spec
    from robbench.loader import load_submission

    spec = load_model_spec(REPO / "submissions" / "fashion-mnist" / "small-cnn-pgd-at" / "model.yaml")
    return load_submission(spec).model.eval()


@pytest.mark.parametrize("eps", [0.03, 0.1])
def test_honest_robust_model_raises_no_eps_flag_at_a_small_non_standard_eps(pgd_at_model, eps):
    """The bundled PGD-AT model (trained at ε = 0.1) keeps ~70% at 0.12: the collapse check belongs at
    the dataset's scale (a multiple of its standard radius), not at 4·0.03."""
    x, y = get_dataset("fashion-mnist").load("test", 40)
    threat = LINF.with_eps(eps)
    flags = model_flags(pgd_at_model, x, y, threat=threat, value_range=(0.0, 1.0), seed=0, device=CPU,
                        standard_eps=LINF.eps)
    assert {f.code for f in flags} & MODEL_BEHAVIOUR == set(), [f.message for f in flags]


class UselessGradient(nn.Module):
    """Input quantisation (zero gradient) plus a tiny high-frequency term: a large, non-zero, useless gradient."""

    def __init__(self, linear: nn.Module):
        super().__init__()
        self.linear = linear
        self.mix = torch.randn(784, 10, generator=torch.Generator().manual_seed(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wobble = 1e-2 * torch.sin(1000 * x).flatten(1) @ self.mix  # at most ~0.3 per logit
        return self.linear(torch.round(x * 4) / 4) + wobble


def test_non_zero_but_useless_gradient_is_flagged_masked(linear, data):
    """Every gradient is non-zero, so the zero-gradient count misses it; a random step beats a step along it.
    The model check holds whichever attacks run (square-beats-white-box needs AutoAttack's Square)."""
    assert "masked-gradients" in _flags(UselessGradient(linear), data)
