"""benchmarks/attack_libraries.py: every row attacks, and is scored on, the model in eval mode."""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.attack_libraries import QueryCounter, run_one


def test_a_library_that_restores_training_mode_cannot_turn_dropout_on_for_later_rows():
    """torchattacks ends an attack with ``model.train()`` when the module it was given was in training mode; a
    counter created in training mode then switched the model's dropout on (2026-12-06: Square 98 % vs 74 %)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Dropout(0.9)).eval()
    x, y = torch.rand(64, 4), torch.zeros(64, dtype=torch.long)
    seen = []

    def restores_the_given_mode(counter: QueryCounter) -> torch.Tensor:
        seen.append(counter.training)
        counter.train(counter.training)  # what torchattacks does after its attack, recursively
        return x

    rows = [run_one("row", restores_the_given_mode, model, x, y, "Linf", 0.1) for _ in range(2)]
    assert seen == [False, False] and not model[2].training
    with torch.no_grad():
        expected = float((model(x).argmax(1) == y).float().mean())
    assert [row["robust_accuracy"] for row in rows] == [expected, expected]  # scored without dropout: deterministic


def test_a_row_is_scored_in_eval_mode_whatever_mode_the_library_leaves():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Dropout(0.9)).eval()
    x, y = torch.rand(64, 4), torch.zeros(64, dtype=torch.long)

    def leaves_training_on(counter: QueryCounter) -> torch.Tensor:
        counter.train()
        return x

    row = run_one("row", leaves_training_on, model, x, y, "Linf", 0.1)
    with torch.no_grad():
        assert not model[2].training and row["robust_accuracy"] == float((model(x).argmax(1) == y).float().mean())
