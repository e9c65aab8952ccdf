"""Progress bars move within a batch (per attack step, per forward of AutoAttack's components), labelled once."""

from __future__ import annotations

from collections import defaultdict

import pytest

from robbench import evaluate


@pytest.mark.slow
def test_every_stage_advances_within_a_batch_and_sums_to_its_examples(linear_submission):
    totals, steps = {}, defaultdict(list)

    def progress(description: str, total: int):
        totals[description] = total
        return steps[description].append

    evaluate(linear_submission, threat_models="linf", attacks=["pgd", "autoattack"], n_examples=20, batch_size=500,
             device="cpu", progress=progress)
    stages = len(totals)
    first, second = f"stage 1 of {stages}, pgd", f"stage 2 of {stages}, autoattack: apgd-ce"
    assert list(totals)[:2] == [first, second]  # one label per bar: not "pgd: pgd"
    for name in (first, second):
        moves = [step for step in steps[name] if step > 0]
        assert totals[name] > 0 and len(moves) > 10, (name, steps[name])  # one batch, many moves
        assert sum(moves) == pytest.approx(totals[name]) and min(steps[name]) >= 0


def test_line_progress_prints_a_line_per_tenth_or_per_30_seconds_with_an_eta():
    import io

    from robbench.progress import LineProgress

    now = [0.0]
    out = io.StringIO()
    advance = LineProgress(out, clock=lambda: now[0])("stage 1 of 2, pgd", 1000)
    for _ in range(40):  # 25 examples a second for 40 s: 1,000 examples, a tenth every 4 s
        now[0] += 1
        advance(25)
    lines = out.getvalue().splitlines()
    assert lines[0] == "robbench: stage 1 of 2, pgd: 1,000 examples"
    assert lines[1] == "robbench: stage 1 of 2, pgd: 100/1,000 (10 %), 4 s elapsed, eta 36 s"
    assert len(lines) == 1 + 9 + 1 and lines[-1] == "robbench: stage 1 of 2, pgd: done, 1,000 examples in 40 s"
    advance(0)  # a late advance after the end says nothing more
    slow = io.StringIO()
    advance = LineProgress(slow, clock=lambda: now[0])("autoattack: square", 10_000)
    now[0] += 31
    advance(1)  # far from a tenth, but 30 s went by
    assert slow.getvalue().splitlines()[1].startswith("robbench: autoattack: square: 1/10,000 (0 %), 31 s elapsed, eta 86 h")


def test_benchmark_in_python_prints_progress_lines_on_stderr(capfd):
    """``robbench.benchmark`` from a script whose stderr is not a terminal: a line saying what runs, then lines per stage."""
    import torch

    import robbench

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    robbench.benchmark(model, dataset="fashion-mnist", threat_model="linf", attacks=["pgd"], n_examples=20, device="cpu")
    err = capfd.readouterr().err.splitlines()
    assert err[0].startswith("robbench: evaluating in-memory-model on 20 fashion-mnist test examples under linf 0.1 with pgd, on cpu (")
    assert any(line.startswith("robbench: stage 1 of 1, pgd: ") and "examples" in line for line in err[1:])
