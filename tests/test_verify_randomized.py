"""``robbench verify`` on a randomized model's record with K > 1 prediction draws (``robbench.randomized``).

The model: Fashion-MNIST's linear classifier behind Gaussian input noise (``NoisyLinear``), evaluated with
``prediction_draws = K`` and ``redraws = R``. An honest record must pass verify; a record whose K or
re-verification rate is edited must fail naming the field; a counted break that the K-pass averaged
prediction never gets wrong again must be reported.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from robbench.adversarial import decode, digest, encode
from robbench.models import ARCHITECTURES
from robbench.models.linear import linear
from robbench.store import adversarial_path, relative_record_path, read_record
from robbench.verify import verify_record

from .helpers import fit_linear_fashion_mnist, write_submission

DRAWS, REDRAWS, N_EXAMPLES = 8, 10, 40
NOISE = 0.25  # per-pixel input noise: single passes disagree near the boundary; K = 8 averages it down


class NoisyLinear(nn.Module):
    """The linear classifier on ``x + NOISE · N(0, 1)``, fresh noise every pass: a randomized defence."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        self.model = linear(input_shape, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x + NOISE * torch.randn_like(x))


@pytest.fixture(scope="module")
def honest(tmp_path_factory, single_thread) -> tuple[Path, Path]:
    """(model.yaml, record file) of an honest K = 8 evaluation of ``NoisyLinear`` with PGD at L-inf 0.1."""
    from robbench.pipeline import evaluate

    if "test-noisy-linear" not in ARCHITECTURES._entries:
        ARCHITECTURES.register("test-noisy-linear", description="test: a linear model behind input noise")(NoisyLinear)
    folder = tmp_path_factory.mktemp("noisy")
    base = fit_linear_fashion_mnist()
    state = {f"model.{key}": value for key, value in base.state_dict().items()}
    submission = write_submission(folder / "model", "fmnist-noisy-linear", "test-noisy-linear", state)
    # APGD with EOT, the attack for a randomized model: plain PGD's early stop on one noisy pass leaves survivors
    # the flag check's PGD breaks in every redraw, and verify rightly fails that record
    [record] = evaluate(submission, threat_models="linf", attacks="apgd(eot_iter=4,iterations=50)", n_examples=N_EXAMPLES,
                        device="cpu", batch_size=N_EXAMPLES, prediction_draws=DRAWS, redraws=REDRAWS,
                        results_dir=folder / "results")
    return submission, folder / "results" / relative_record_path(record)


def _copy(record_file: Path, folder: Path, edit) -> Path:
    """The record (and its adversarial-example file) copied into ``folder`` with ``edit(data)`` applied to its JSON."""
    folder.mkdir(parents=True, exist_ok=True)
    data = json.loads(record_file.read_text())
    edit(data)
    copy = folder / record_file.name
    copy.write_text(json.dumps(data))
    adversarial = adversarial_path(record_file)
    (folder / adversarial.name).write_bytes(adversarial.read_bytes())
    return copy


def test_an_honest_k_draw_record_of_a_randomized_model_passes_verify(honest):
    submission, record_file = honest
    record = read_record(record_file)
    rev = record.reverification
    assert "randomized" in {flag.code for flag in record.flags}
    assert record.config.prediction_draws == DRAWS and rev is not None and (rev.draws, rev.redraws) == (DRAWS, REDRAWS)
    assert rev.breaks == int(record.evidence.broken().sum()) >= 10  # enough breaks for the rate to mean something
    verdict = verify_record(record_file, submission)
    assert verdict.ok, verdict.summary()
    assert verdict.confirmed + len(verdict.not_reverified) == rev.breaks
    # the clean pass re-run with the record's seed and batches draws what the evaluation drew: no verdict differs
    assert not [note for note in verdict.notes if "clean verdict" in note], verdict.notes


def _failures(verdict) -> list[str]:
    return [failure.message for failure in verdict.failures]


@pytest.mark.parametrize("field", ["config", "reverification"])
def test_an_edited_number_of_draws_fails_naming_the_field(honest, tmp_path, field):
    """K edited in the configuration (or in the reverification): the two no longer agree."""
    submission, record_file = honest

    def edit(data):
        (data["config"] if field == "config" else data["reverification"])["prediction_draws" if field == "config" else "draws"] = 3

    verdict = verify_record(_copy(record_file, tmp_path, edit), submission)
    said, averaged = (3, DRAWS) if field == "config" else (DRAWS, 3)
    assert (f"config.prediction_draws: the record says {said}; its reverification averaged {averaged} passes per "
            "prediction") in _failures(verdict)


def test_an_edited_reverification_rate_fails_naming_the_field(honest, tmp_path):
    """The rate (with its count, so the record still reads) claimed far from what the saved breaks give."""
    submission, record_file = honest
    rev = read_record(record_file).reverification
    claimed = 0 if rev.rate > 0.5 else rev.breaks * rev.redraws

    def edit(data):
        data["reverification"].update(still_wrong=claimed, rate=claimed / (rev.breaks * rev.redraws))

    [failure] = [m for m in _failures(verify_record(_copy(record_file, tmp_path, edit), submission))
                 if m.startswith("reverification.rate")]
    assert f"the record says {claimed / (rev.breaks * rev.redraws):.3f} ({claimed} of {rev.breaks * rev.redraws})" in failure
    assert "Fisher's exact test" in failure

    def inconsistent(data):
        data["reverification"]["rate"] = 0.5 if rev.rate != 0.5 else 0.25

    assert any(m.startswith("reverification.rate: ") and "is not still_wrong / (breaks · redraws)" in m
               for m in _failures(verify_record(_copy(record_file, tmp_path / "second", inconsistent), submission)))


def test_a_randomized_record_without_its_reverification_fails(honest, tmp_path):
    submission, record_file = honest
    verdict = verify_record(_copy(record_file, tmp_path, lambda data: data.pop("reverification")), submission)
    assert any(m.startswith("reverification: the record has none") for m in _failures(verdict))


def test_a_break_that_does_not_re_verify_under_k_draws_is_reported(honest, tmp_path):
    """One saved break replaced by its clean image (which the averaged prediction gets right), the file's digest
    updated: by a single pass the record would merely look lucky; its K-pass redraws never get it wrong."""
    submission, record_file = honest
    record = read_record(record_file)
    index, x_adv = decode(adversarial_path(record_file), (1, 28, 28), record.adversarial_examples.count)
    from robbench import load_dataset

    x, y = load_dataset("fashion-mnist", n=N_EXAMPLES)
    model = NoisyLinear((1, 28, 28), 10)
    model.model.load_state_dict(fit_linear_fashion_mnist().state_dict())
    with torch.no_grad():  # the break whose clean image the noiseless model classifies with the largest margin
        logits = model.model(x[torch.from_numpy(index)])
    margin = logits.gather(1, y[torch.from_numpy(index)][:, None])[:, 0] - logits.topk(2, 1).values[:, 1]
    forged = int(margin.argmax())
    assert float(margin[forged]) > 0
    x_adv = x_adv.copy()
    x_adv[forged] = x[index[forged]].numpy()
    payload = encode(index, x_adv)
    folder = tmp_path / "forged"

    def edit(data):
        data["adversarial_examples"]["sha256"] = digest(payload)

    copy = _copy(record_file, folder, edit)
    adversarial_path(copy).write_bytes(payload)
    verdict = verify_record(copy, submission)
    assert verdict.not_reverified == [int(index[forged])]
    assert verdict.confirmed == record.reverification.breaks - 1
    assert any(note.startswith(f"1 break(s) did not re-verify: the averaged prediction of {DRAWS} passes classified "
                               f"each correctly in all {REDRAWS} fresh draws (test indices {int(index[forged])})")
               for note in verdict.notes)


def test_same_rate_p_is_fishers_exact_test():
    """Wikipedia's example of Fisher's exact test ("Fisher's exact test", the dieting table: 1 of 10 against 11 of
    14): two-sided p = 0.002759."""
    from robbench.stats import same_rate_p

    assert same_rate_p(1, 10, 11, 14) == pytest.approx(0.002759, abs=5e-6)
    assert same_rate_p(7, 10, 7, 10) == 1.0


class _WrongEvery(nn.Module):
    """Class 1 on every ``period``-th call, class 0 otherwise, whatever the input (the labels are 0)."""

    def __init__(self, period: int):
        super().__init__()
        self.period, self.calls = period, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        label = 1 if self.calls % self.period == 0 else 0
        return torch.nn.functional.one_hot(torch.full((x.shape[0],), label), 10).float() * 10


@pytest.mark.parametrize("period, redraws, fails", [(1, None, True), (2, None, True), (1, 10, True), (2, 10, False)])
def test_a_flag_check_break_of_a_randomized_survivor_counts_only_if_every_redraw_is_wrong(monkeypatch, period, redraws,
                                                                                          fails):
    """The flag check's PGD 'breaks' 3 of 40 claimed survivors (over the 5 % allowance). A deterministic record fails
    on them; on a randomized one (``redraws``) they count only when every fresh prediction is wrong there."""
    from types import SimpleNamespace

    from robbench import consistency
    from robbench.data import get_dataset
    from robbench.flags import ModelChecks

    from .helpers import make_record

    record = make_record("m", status="+" * 40, test_size=10_000)
    monkeypatch.setattr(consistency, "evaluation_checks", lambda *args, **kwargs: ModelChecks(
        [], [3, 7, 11], torch.zeros(3, 1, 28, 28)))
    x, y = torch.zeros(40, 1, 28, 28), torch.zeros(40, dtype=torch.long)
    found, borderline = consistency.flag_failures(record, _WrongEvery(period), x, y,
                                                  SimpleNamespace(dataset=get_dataset("fashion-mnist")),
                                                  torch.device("cpu"), redraws)
    survivors = [failure.index for failure in found if failure.index is not None]
    assert (survivors, borderline) == (([3, 7, 11], []) if fails else ([], []))
