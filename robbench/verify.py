"""``robbench verify RECORD``: re-check a record's numbers in seconds, without re-running any attack.

It loads the checkpoint (its SHA-256 must be the record's), the evaluated test examples (their
digest must be the record's), and the record's adversarial-example file (its digest must be the
one the record names), then confirms:

- the clean pass: the model misclassifies exactly the examples the evidence says it does;
- every saved example: finite, inside the ε-ball around its test image and inside the value
  range (the tolerances the evaluation used), and misclassified, with finite logits;
- the saved examples are exactly the ones the evidence says some attack broke.

The robust accuracy is then the evidence's, and every total in the record derives from the
evidence (``read_record`` refuses a record whose totals disagree). A check failing is a finding
about the record, not a usage error: the command prints the verdict and exits 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .adversarial import decode, file_sha256
from .attacks.verify import allowed_inputs
from .config import ModelSpec, load_model_spec
from .digests import data_digest
from .errors import RobbenchError
from .evaluation import ensure_eval_mode, predict
from .loader import load_submission
from .results import EvalRecord
from .store import adversarial_path, read_record
from .runtime import resolve_device
from .zoo import submission_named


@dataclass(frozen=True)
class Failure:
    """One failed check: the test index it concerns (``None`` for a check on the whole record or file) and why."""

    index: int | None
    message: str

    def __str__(self) -> str:
        return self.message if self.index is None else f"test index {self.index}: {self.message}"

    def sort_key(self) -> int:
        """Failures on the whole record or file first, then by test index."""
        return -1 if self.index is None else self.index


@dataclass
class Verdict:
    """What ``verify_record`` found: how many saved breaks it confirmed and every check that failed."""

    n_examples: int
    confirmed: int = 0  # saved examples that passed every check
    failures: list[Failure] = field(default_factory=list)  # sorted by ``Failure.sort_key`` once verification ends

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        text = f"{self.n_examples:,} examples: {self.confirmed:,} breaks confirmed, {len(self.failures):,} failed"
        return text + (f"; first: {self.failures[0]}" if self.failures else "")

    def fail(self, message: str, index: int | None = None) -> None:
        """Record a failed check, on test example ``index`` or (``None``) on the whole record or file."""
        self.failures.append(Failure(index, message))


def verify_record(record_file: Path, model_yaml: Path | None = None, *, submissions_dir: Path = Path("submissions"),
                  data_dir: str | None = None, device: str = "auto", batch_size: int = 500) -> Verdict:
    """Re-check ``record_file`` against its checkpoint, test examples and saved adversarial examples.

    Raises ``RobbenchError`` where the record cannot be checked at all (no saved examples, other weights,
    other dataset parameters, an adversarial-example file that cannot be read); every check that runs and fails is a ``Failure`` in the returned verdict.
    """
    record = read_record(record_file)
    verdict = Verdict(record.n_examples)
    if record.adversarial_examples is None:
        raise RobbenchError(f"{record_file}: the record has no saved adversarial examples; re-run `robbench evaluate` "
                            "with --results-dir to get a verifiable record")
    spec = (load_model_spec(model_yaml) if model_yaml else
            submission_named(record.name, submissions_dir, record.dataset, fix="pass --model path/to/model.yaml"))
    loaded = load_submission(_pinned(spec, record), data_dir)
    if loaded.dataset.params != record.dataset_params:
        raise RobbenchError(f"the dataset parameters differ from the record's ({record.dataset_params}); "
                            "pass the model.yaml the record was made from")
    start, stop = record.examples.start, record.examples.stop
    x, y = loaded.dataset.load("test", stop)
    x, y = x[start:], y[start:]
    if data_digest(x, y) != record.config.data_sha256:
        verdict.fail(f"test examples {start}..{stop} differ from the evaluated ones (data SHA-256)")
        return verdict
    file = adversarial_path(record_file)
    if not file.exists():
        verdict.fail(f"{file.name} is missing")
        return verdict
    if file_sha256(file) != record.adversarial_examples.sha256:
        verdict.fail(f"{file.name} is not the file the record names (SHA-256 differs)")
        return verdict  # never decode a file the record does not name
    index, x_adv = decode(file, loaded.dataset.input_shape, record.adversarial_examples.count)

    torch_device = resolve_device(device)
    model = loaded.model.to(torch_device)
    ensure_eval_mode(model)
    correct = (predict(model, x, batch_size, torch_device, loaded.dataset.num_classes) == y).numpy()
    evidence_correct = record.evidence.clean_correct()
    for position in np.flatnonzero(correct != evidence_correct):
        said = "correctly" if evidence_correct[position] else "wrongly"
        verdict.fail(f"the record says it is {said} classified clean; it is not", int(start + position))

    claimed = set((np.flatnonzero(record.evidence.broken()) + start).tolist())
    saved = index.tolist()
    for test_index in sorted(claimed - set(saved)):
        verdict.fail("the record counts it broken but saved no adversarial example", test_index)
    for test_index in sorted(set(saved) - claimed):
        verdict.fail("an adversarial example is saved but the record does not count it broken", test_index)
    if len(set(saved)) != len(saved):
        verdict.fail("the file saves an example twice")

    keep = np.array([i in claimed and start <= i < stop for i in saved], dtype=bool)
    positions = index[keep] - start
    candidates = torch.from_numpy(x_adv[keep])
    for begin in range(0, len(positions), batch_size):
        part = positions[begin : begin + batch_size]
        _check_batch(model, candidates[begin : begin + batch_size], x[part], y[part], part + start, record,
                     loaded.dataset.value_range, torch_device, verdict)
    verdict.failures.sort(key=Failure.sort_key)
    return verdict


def _check_batch(model: torch.nn.Module, x_adv: torch.Tensor, x: torch.Tensor, y: torch.Tensor, test_index: np.ndarray,
                 record: EvalRecord, value_range: tuple[float, float] | None, device: torch.device,
                 verdict: Verdict) -> None:
    allowed = allowed_inputs(x_adv, x, record.threat_model, value_range)
    with torch.inference_mode():
        logits = model(x_adv.to(device)).float().cpu()
    finite = torch.isfinite(logits).all(1)
    misclassified = finite & (logits.argmax(1) != y)
    for i, number in enumerate(test_index.tolist()):
        if not allowed[i]:
            verdict.fail(f"the saved example lies outside the {record.threat_model.norm} "
                         f"ball of radius {record.threat_model.eps:g} or the value range", number)
        elif not finite[i]:
            verdict.fail("the model's logits on the saved example are not finite", number)
        elif not misclassified[i]:
            verdict.fail("the model classifies the saved example correctly", number)
        else:
            verdict.confirmed += 1


def _pinned(spec: ModelSpec, record: EvalRecord) -> ModelSpec:
    """The spec with the record's checkpoint digest pinned, so other weights are refused before any check."""
    if spec.sha256 not in (None, record.checkpoint.sha256):
        raise RobbenchError(f"the model.yaml pins sha256 {spec.sha256}, the record was made with {record.checkpoint.sha256}")
    return spec.model_copy(update={"sha256": record.checkpoint.sha256})  # keeps the folder checkpoints resolve against

