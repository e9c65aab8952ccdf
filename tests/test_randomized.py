"""Randomized models: the averaged prediction, the re-verification of breaks, and how records state both."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from robbench import benchmark
from robbench.attacks import AttackRules, create_attack
from robbench.evaluation import run_attacks
from robbench.randomized import AveragedPrediction, averaged, reverify
from robbench.threat_models import ThreatModel


class Cycling(torch.nn.Module):
    """Predicts the classes of ``cycle`` in turn, one per call, whatever the input: randomness with a known sequence."""

    def __init__(self, cycle: list[int], classes: int = 3):
        super().__init__()
        self.cycle, self.classes, self.calls = cycle, classes, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        label = self.cycle[self.calls % len(self.cycle)]
        self.calls += 1
        return torch.nn.functional.one_hot(torch.full((x.shape[0],), label), self.classes).float() * 10 + 0 * x.flatten(1)[:, :1]


class Noisy(torch.nn.Module):
    """A small MLP on inputs with Gaussian noise added at inference: a randomized defence."""

    def __init__(self, sigma: float = 0.3):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x + self.sigma * torch.randn_like(x))


def test_averaged_prediction_is_the_mean_softmax_of_k_draws():
    """Calls give classes 0, 0, 1 in turn: the mean softmax over 3 draws is (2/3, 1/3, 0) up to the logit scale."""
    x = torch.zeros(4, 2)
    out = AveragedPrediction(Cycling([0, 0, 1]), draws=3)(x)
    one_draw = torch.softmax(torch.tensor([10.0, 0.0, 0.0]), 0)
    expected = ((2 * one_draw + one_draw[[1, 0, 2]]) / 3).log()
    assert torch.allclose(out, expected.expand(4, 3), atol=1e-6)
    assert out.argmax(1).tolist() == [0, 0, 0, 0]


def test_one_draw_is_the_model_itself():
    model = Cycling([0])
    assert averaged(model, 1) is model


def test_reverification_counts_each_redraw():
    """Single draws cycle 1, 2, 0, 0 and the label is 0: of 2 breaks x 4 redraws, the four draws of class 1 or 2 are
    wrong, the four of class 0 are not: rate 1/2 exactly."""
    result = reverify(Cycling([1, 2, 0, 0]), torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), draws=1, redraws=4,
                      batch_size=8, device=torch.device("cpu"))
    assert (result.breaks, result.still_wrong, result.rate) == (2, 4, 0.5)
    averaged_model = AveragedPrediction(Cycling([1, 1, 0]), draws=3)  # always class 1 on average: every redraw wrong
    result = reverify(averaged_model, torch.zeros(3, 3), torch.zeros(3, dtype=torch.long), draws=3, redraws=5,
                      batch_size=2, device=torch.device("cpu"))
    assert (result.breaks, result.still_wrong, result.rate) == (3, 15, 1.0)


def test_no_breaks_no_rate():
    result = reverify(Cycling([0]), torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), draws=2, redraws=3,
                      batch_size=8, device=torch.device("cpu"))
    assert (result.breaks, result.rate) == (0, None)


@pytest.mark.slow
def test_a_randomized_models_record_states_draws_and_reverification(single_thread):
    """benchmark() of a noisy model: the record holds K, R and the rate; its identity depends on K."""
    records = {
        draws: benchmark(Noisy(), dataset="fashion-mnist", threat_model="linf", attacks="pgd(steps=5)", n_examples=20,
                         device="cpu", prediction_draws=draws, redraws=3)
        for draws in (1, 4)
    }
    for draws, record in records.items():
        assert record.config.prediction_draws == draws
        assert "randomized" in {flag.code for flag in record.flags}
        rev = record.reverification
        assert rev is not None and (rev.draws, rev.redraws) == (draws, 3)
        assert rev.breaks == int(record.evidence.broken().sum())
        assert rev.rate is None or 0 <= rev.rate <= 1
    assert records[1].config.key() != records[4].config.key()


def test_a_deterministic_runs_identity_is_unchanged_by_the_draws_field(single_thread):
    """Records from before prediction_draws (and escalation) existed keep their run id: the key leaves out their defaults."""
    record = benchmark(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)), dataset="fashion-mnist",
                       threat_model="linf", attacks=[], n_examples=8, device="cpu")
    assert record.config.prediction_draws == 1 and record.reverification is None
    dump = record.config.model_dump(mode="json")
    del dump["prediction_draws"], dump["escalation"]
    old_key = hashlib.sha256(json.dumps(dump, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert record.config.key() == old_key


@pytest.mark.slow
def test_autoattack_rand_runs_eot_apgd_ce_and_dlr(single_thread):
    torch.manual_seed(0)
    model = Noisy(sigma=0.1)
    x = torch.rand(12, 1, 28, 28)
    with torch.no_grad():
        y = AveragedPrediction(model, 20)(x).argmax(1)
    rules = AttackRules(ThreatModel(name="linf", norm="Linf", eps=0.3), (0.0, 1.0), 10)
    attack = create_attack("autoattack", version="rand")
    assert attack.config(rules)["eot_iter"] == 20 and attack.config(rules)["components"] == ["apgd-ce", "apgd-dlr"]
    stage = attack.stages(model, rules)[0]
    x_adv = stage.run(x.clone(), y, 0)
    assert float((x_adv - x).abs().max()) <= 0.3 + 1e-6 and float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    outcome = run_attacks(AveragedPrediction(model, 8), x, y, rules=rules, attacks=[create_attack("apgd", iterations=10, eot_iter=2)],
                          batch_size=12)
    assert outcome.robust_accuracy < outcome.clean_accuracy  # at ε = 0.3 the averaged classifier breaks
