"""Progress bars move within a batch (per attack step, per forward of AutoAttack's components), labelled once."""

from __future__ import annotations

from collections import defaultdict

import pytest

from robbench import evaluate


def test_every_stage_advances_within_a_batch_and_sums_to_its_examples(linear_submission):
    totals, steps = {}, defaultdict(list)

    def progress(description: str, total: int):
        totals[description] = total
        return steps[description].append

    evaluate(linear_submission, threat_models="linf", attacks=["pgd", "autoattack"], n_examples=20, batch_size=500,
             device="cpu", progress=progress)
    assert list(totals)[:2] == ["pgd", "autoattack: apgd-ce"]  # one label per bar: not "pgd: pgd"
    for name in ("pgd", "autoattack: apgd-ce"):
        moves = [step for step in steps[name] if step > 0]
        assert totals[name] > 0 and len(moves) > 10, (name, steps[name])  # one batch, many moves
        assert sum(moves) == pytest.approx(totals[name]) and min(steps[name]) >= 0
