"""``robbench tradeoff``: Theorem 2.1 of Tsipras et al. (2019), its closed forms and measured classifiers."""

from __future__ import annotations

import json
import math

import pytest
import torch

from robbench.errors import RobbenchError
from robbench.reports import tradeoff_page
from robbench.reports.common import write_report
from robbench.reports.tradeoff import (
    TradeoffConfig,
    TradeoffResult,
    _check_bound,
    bound_table,
    closed_forms,
    normal_cdf,
    robust_accuracy_bound,
    run,
)
from robbench.reports.tradeoff_page import render_png


@pytest.fixture(scope="module")
def result() -> TradeoffResult:
    """The default run (d = 100, p = 0.9, eta = 0.3, eps = 0.6; 10 000 test samples), a few seconds."""
    return run(TradeoffConfig())


def _by_name(result: TradeoffResult) -> dict:
    return {c.name: c for c in result.classifiers}


def test_bound_numbers_for_p_09():
    assert robust_accuracy_bound(0.9, 0.95) == pytest.approx(0.45, abs=1e-12)
    assert robust_accuracy_bound(0.9, 0.99) == pytest.approx(0.09, abs=1e-12)
    assert robust_accuracy_bound(0.9, 0.90) == pytest.approx(0.90, abs=1e-12)  # sign(x1): on the line
    assert robust_accuracy_bound(0.95, 0.99) == pytest.approx(0.19, abs=1e-12)
    rows = {(r.p, r.standard_accuracy): r for r in bound_table((0.9, 0.95), (0.9, 0.95, 0.99))}
    assert rows[(0.9, 0.95)].robust_accuracy_bound == pytest.approx(0.45, abs=1e-12)
    assert rows[(0.9, 0.99)].robust_accuracy_bound == pytest.approx(0.09, abs=1e-12)
    assert rows[(0.95, 0.9)].vacuous and not rows[(0.9, 0.99)].vacuous
    with pytest.raises(RobbenchError):
        robust_accuracy_bound(0.4, 0.9)


@pytest.mark.slow
def test_default_report_includes_the_p_09_rows(result):
    rows = {(r.p, r.standard_accuracy): r.robust_accuracy_bound for r in result.bound["table"]}
    assert rows[(0.9, 0.95)] == pytest.approx(0.45, abs=1e-12)
    assert rows[(0.9, 0.99)] == pytest.approx(0.09, abs=1e-12)


def test_closed_forms():
    assert normal_cdf(0.0) == 0.5
    assert normal_cdf(3.0) == pytest.approx(0.9986501019683699, rel=1e-12)
    assert normal_cdf(-3.0) == pytest.approx(1 - 0.9986501019683699, rel=1e-9)  # erfc keeps the tail accurate
    forms = closed_forms(d=100, p=0.9, eta=0.3, eps=0.6)
    assert forms["robust-feature"].standard_accuracy == forms["robust-feature"].robust_accuracy == 0.9
    # the mean of d unit-variance features has standard deviation 1/sqrt(d): Phi(eta*sqrt(d)) = Phi(3)
    assert forms["averaging"].standard_accuracy == pytest.approx(normal_cdf(3.0))
    assert forms["averaging"].robust_accuracy == pytest.approx(normal_cdf(-3.0))
    assert closed_forms(d=4, p=0.9, eta=1.5, eps=3.0)["robust-feature"].robust_accuracy == 0.0  # eps >= 1 flips x1


@pytest.mark.slow
def test_measured_closed_form_classifiers_match_the_formulas(result):
    n = result.config["n_test"]
    eta, d, p, eps = result.dataset["eta"], result.dataset["d"], result.dataset["p"], result.threat_model["eps"]
    assert eps == pytest.approx(2 * eta)
    expected = {
        "robust-feature": (p, p),
        "averaging": (normal_cdf(eta * math.sqrt(d)), normal_cdf((eta - eps) * math.sqrt(d))),
    }
    classifiers = _by_name(result)
    for name, (standard, robust) in expected.items():
        c = classifiers[name]
        for measured, q in ((c.standard_accuracy, standard), (c.robust_accuracy, robust)):
            assert abs(measured - q) <= 4 * math.sqrt(q * (1 - q) / n) + 1e-3, (name, measured, q)
        assert all(check.ok for check in c.closed_form.values())
    assert result.checks.closed_forms_match
    # sign(x1) cannot be moved by eps = 0.6 < 1: its robust accuracy is its standard accuracy, exactly
    assert classifiers["robust-feature"].robust_accuracy == classifiers["robust-feature"].standard_accuracy


@pytest.mark.slow
def test_attack_reaches_the_exact_worst_case_of_every_linear_model(result):
    for c in result.classifiers:
        assert c.robust_accuracy == c.robust_accuracy_exact, c.name
    assert result.checks.attack_short_of_exact == []


@pytest.mark.slow
def test_no_classifier_violates_the_bound(result):
    trained = [c for c in result.classifiers if c.kind != "closed-form"]
    assert [c.train_eps_over_eta for c in trained] == [0.0, 0.5, 1.0, 1.5, 2.0]
    for c in result.classifiers:
        assert not c.bound.violates, c.name
        # the same check by hand: robust <= p/(1-p)·(1 - standard) + sampling slack
        p = result.dataset["p"]
        assert c.robust_accuracy <= p / (1 - p) * (1 - c.standard_accuracy) + c.bound.allowed_excess
    assert result.checks.bound_violations == []
    assert result.checks.passed


def test_bound_check_can_fail():
    everything = torch.ones(1000, dtype=torch.bool)
    assert _check_bound(everything, everything, p=0.9, z=4.0, slack=1e-3).violates  # 100% / 100%: far above
    clean = torch.arange(1000) < 990  # 99% standard accuracy: the bound is 9%
    assert _check_bound(clean, torch.arange(1000) < 50, p=0.9, z=4.0, slack=1e-3).violates is False
    assert _check_bound(clean, torch.arange(1000) < 500, p=0.9, z=4.0, slack=1e-3).violates


@pytest.mark.slow
def test_adversarial_training_trades_standard_for_robust_accuracy(result):
    classifiers = _by_name(result)
    standard, robust = classifiers["standard"], classifiers["pgd-at-2eta"]
    p, n = result.dataset["p"], result.config["n_test"]
    # standard training leans on the weak features: accurate, and broken by eps = 2·eta
    assert standard.standard_accuracy > 0.99 and standard.robust_accuracy < 0.02
    # adversarial training at eps = 2·eta drops them and becomes sign(x1): robust, less accurate
    assert robust.standard_accuracy < standard.standard_accuracy - 0.05
    assert robust.robust_accuracy > standard.robust_accuracy + 0.5
    assert abs(robust.robust_accuracy - p) <= 4 * math.sqrt(p * (1 - p) / n) + 1e-3
    assert robust.weights["weak_l1"] < 0.01 * standard.weights["weak_l1"]
    # along the training radius, standard accuracy never rises and robust accuracy never falls
    trained = [c for c in result.classifiers if c.kind != "closed-form"]
    assert all(a.standard_accuracy >= b.standard_accuracy for a, b in zip(trained, trained[1:]))
    assert all(a.robust_accuracy <= b.robust_accuracy for a, b in zip(trained, trained[1:]))


@pytest.mark.slow
def test_json_markdown_and_png(result, tmp_path):
    markdown, png, path = write_report(tradeoff_page, result, tmp_path / "reports" / "tradeoff.md", tmp_path / "out" / "tradeoff.json")
    loaded = json.loads(path.read_text(encoding="utf-8"))
    assert [c["name"] for c in loaded["classifiers"]] == [c.name for c in result.classifiers]
    assert loaded["classifiers"][0]["bound"]["violates"] is result.classifiers[0].bound.violates
    assert loaded["bound"]["factor"] == pytest.approx(9.0)

    text = markdown.read_text(encoding="utf-8")
    assert png == markdown.parent / "tradeoff.png"
    assert "](tradeoff.png)" in text and "| 0.9 | 95.00 | 45.00 |" in text and "| 0.9 | 99.00 | 9.00 |" in text
    assert "No classifier violates the bound" in text
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and b"Software" not in data
    assert render_png(result) == data  # deterministic bytes


def test_deterministic_for_a_seed_and_restores_threads():
    threads = torch.get_num_threads()
    small = dict(n_train=200, n_test=500, steps=20, train_eps=(0.0, 2.0), bound_ps=(0.9,), bound_standards=(0.95,))
    first, second = run(TradeoffConfig(seed=3, **small)), run(TradeoffConfig(seed=3, **small))
    first.wall_time_s = second.wall_time_s = 0.0
    assert first == second
    assert torch.get_num_threads() == threads
    with pytest.raises(RobbenchError):
        run(TradeoffConfig(p=0.4, **small))
    with pytest.raises(RobbenchError, match=r"^TradeoffConfig: key 'train_eps': training radii are non-negative multiples of eta"):
        run(TradeoffConfig(train_eps=(-1.0,), n_test=10))


@pytest.mark.slow
def test_png_speaks_in_percent_like_its_page(result, monkeypatch):
    captured = []
    monkeypatch.setattr(tradeoff_page, "png_bytes", lambda figure: captured.append(figure) or b"")
    render_png(result)
    (axes,) = captured[0].axes
    for axis in (axes.xaxis, axes.yaxis):
        labels = [axis.get_major_formatter()(tick) for tick in axis.get_majorticklocs()]
        assert labels and all(label.endswith("%") for label in labels)
    assert axes.yaxis.get_major_formatter()(0.45) == "45%"
