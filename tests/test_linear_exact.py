"""For a linear classifier the L-inf robust accuracy is computable exactly; AutoAttack must hit it."""

from __future__ import annotations

import pytest

import torch

from robbench import evaluate
from robbench.checkpoints import read_state_dict

from .helpers import exact_linf_robust


@pytest.mark.slow
def test_autoattack_equals_exact_linear_robust_accuracy(linear_submission):
    n = 200
    (record,) = evaluate(linear_submission, threat_models="linf", attacks=["autoattack"], n_examples=n, device="cpu")
    state = read_state_dict(linear_submission.parent / "model.safetensors")
    from robbench import load_dataset

    x, y = load_dataset("fashion-mnist", n=n)
    exact = exact_linf_robust(state["1.weight"], state["1.bias"], x, y, eps=0.1)
    assert 0 < exact.sum() < record.clean_accuracy * n  # a real test: some, not all, correct points survive
    assert record.robust_accuracy == int(exact.sum()) / n


def test_pgd_never_reports_below_the_exact_value(linear_submission):
    """An attack can only find real adversarial examples: PGD's accuracy is an upper bound of the exact one."""
    n = 200
    (record,) = evaluate(linear_submission, threat_models="linf", attacks=["pgd"], n_examples=n, device="cpu")
    state = read_state_dict(linear_submission.parent / "model.safetensors")
    from robbench import load_dataset

    x, y = load_dataset("fashion-mnist", n=n)
    assert record.robust_accuracy >= int(exact_linf_robust(state["1.weight"], state["1.bias"], x, y, 0.1).sum()) / n
