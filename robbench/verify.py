"""``robbench verify RECORD``: re-check everything a record claims, at two levels.

**Consistency** (seconds, always): it loads the checkpoint (its SHA-256 must be the record's), the
evaluated test examples (their digest must be the record's) and the record's adversarial-example
file (its digest must be the one the record names), then confirms:

- every claim that can be re-derived is (``robbench.consistency``): the threat model, the test-set
  size and range, the submission, the attacks' configurations and stages, every reliability flag;
- the clean pass: the model misclassifies exactly the examples the evidence says it does;
- every saved example: finite, inside the ε-ball around its test image and inside the value
  range (the tolerances the evaluation used), and misclassified, with finite logits;
- the saved examples are exactly the ones the evidence says some attack broke.

A **randomized** model's record (flagged ``randomized``; ``robbench.randomized``) states probabilities,
not facts, and is checked as such. The clean pass is re-run as the evaluation ran it (its seed, its
batches), and a verdict that still differs only fails when none of ``redraws`` fresh averaged
predictions agrees with the record. Each saved break is predicted ``redraws`` more times (the
record's number); a break no redraw gets wrong is reported (``Verdict.not_reverified``, a note: the
record counted it by its definition, wrong at its run, so it is that much luck), and the verifier's
count of wrong redraws must agree with the record's ``reverification`` (``robbench.consistency``).

Every total in the record derives from the evidence (``read_record`` refuses a record whose totals
disagree), so what remains unproven is that the survivors survive: **replay** (``replay=N`` or
``"all"``, minutes; ``robbench.replay``) attacks claimed survivors again.

A check failing is a finding about the record, not a usage error: the command prints the verdict
and exits 1. A record that cannot be checked at all (its data, checkpoint or adversarial-example
file absent or unreadable) raises ``RobbenchError``; the command reports it and goes on.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .adversarial import decode, file_sha256
from .attacks.verify import allowed_inputs
from .config import ModelSpec
from .consistency import Failure, flag_failures, record_failures, reverification_failures
from .digests import data_digest
from .errors import RobbenchError
from .evaluation import ensure_eval_mode, predict
from .loader import LoadedModel, load_submission
from .randomized import averaged, wrong_counts
from .run_options import DEFAULT_REDRAWS
from .results import EvalRecord
from .store import adversarial_path, read_record, run_folder, write_record
from .runtime import resolve_device, seed_everything
from .threads import MAX_THREADS, threads_set
from .zoo import model_spec, submission_named

@dataclass
class Verdict:
    """What ``verify_record`` found: how many saved breaks it confirmed and every check that failed."""

    n_examples: int
    confirmed: int = 0  # saved examples that passed every check
    failures: list[Failure] = field(default_factory=list)  # sorted by ``Failure.sort_key`` once verification ends
    replayed: int = 0  # claimed survivors (or, with ``replay="all"``, examples) attacked again
    replay_seed: int | None = None
    written: Path | None = None  # the new run holding the breaks a replay found
    notes: list[str] = field(default_factory=list)  # findings that fail nothing (borderline examples)
    not_reverified: list[int] = field(default_factory=list)  # a randomized model's saved breaks no redraw got wrong
    threads: tuple[int, int] | None = None  # (the record's CPU threads, verified on; the process's) where they differ

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        text = f"{self.n_examples:,} examples"
        if self.threads:
            used, default = self.threads
            text += f" (on the record's {used} CPU thread{'s' * (used != 1)}, not this process's {default})"
        text += f": {self.confirmed:,} breaks confirmed"
        if self.not_reverified:
            text += f", {len(self.not_reverified):,} not re-verified"
        if self.replay_seed is not None:
            text += f", {self.replayed:,} replayed (--replay-seed {self.replay_seed})"
        elif self.replayed:
            text += f", {self.replayed:,} re-run as recorded"
        text += f", {len(self.failures):,} failed"
        text += f"; first: {self.failures[0]}" if self.failures else ""
        text += f"; the breaks found are a new run: {self.written}" if self.written else ""
        return text + "".join(f"; note: {note}" for note in self.notes)

    def fail(self, message: str, index: int | None = None) -> None:
        """Record a failed check, on test example ``index`` or (``None``) on the whole record or file."""
        self.failures.append(Failure(index, message))


def new_replay_seed() -> int:
    """A replay seed the verifier picks, never the record's: unpredictable to whoever wrote the record."""
    return secrets.randbelow(2**31)


def verify_record(record_file: Path, model: "str | Path | None" = None, *, submissions_dir: Path = Path("submissions"),
                  data_dir: str | None = None, device: str = "auto", batch_size: int = 500,
                  replay: "int | Literal['all'] | None" = None, replay_seed: int | None = None,
                  results_dir: Path | None = None, threads: int | None = None) -> Verdict:
    """Re-check ``record_file`` against its checkpoint, test examples and saved adversarial examples.

    ``model``: a model.yaml or ``hf://`` reference; by default the submission the record names (a
    hub-evaluated record: the model.yaml at the commit it pins; else ``submissions_dir``'s of that name).
    ``replay``: also attack this many claimed survivors again (``robbench.replay``), chosen with
    ``replay_seed`` (default: a fresh one, in the verdict), or ``"all"``: re-run the evaluation. A
    replay's breaks are written as a new run into ``results_dir`` (default: the results folder
    that holds ``record_file``, when it lies in one). ``threads``: torch CPU threads to verify on; by default a CPU
    record's own (``EvalRecord.cpu_threads``), since CPU float rounding moves with the thread count and a
    borderline example verified on other threads can flip; restored afterwards.

    Raises ``RobbenchError`` where the record cannot be checked at all (no saved examples, other weights,
    other dataset parameters, data or an adversarial-example file that cannot be read); every check
    that runs and fails is a ``Failure`` in the returned verdict.
    """
    record = read_record(record_file)
    if record.examples.user_supplied:
        raise RobbenchError(f"{record_file}: evaluated on user-supplied tensors (data SHA-256 {record.config.data_sha256[:12]}…), "
                            "which a record does not hold; verify cannot check it without them")
    torch_device = resolve_device(device)
    process_threads = torch.get_num_threads()
    count = _record_threads(record, torch_device, threads)
    with threads_set(count):
        verdict = _verify(record, record_file, model, submissions_dir, data_dir, torch_device, batch_size, replay,
                          replay_seed, results_dir)
    if threads is None and count not in (None, process_threads):
        verdict.threads = (count, process_threads)
    return verdict


def _record_threads(record: EvalRecord, device: torch.device, requested: int | None) -> int | None:
    """The CPU threads to verify on: ``requested``, else the record's own (its float rounding), else as set (None)."""
    if requested is not None or device.type != "cpu" or record.cpu_threads is None:
        return requested
    if not 1 <= record.cpu_threads <= MAX_THREADS:
        raise RobbenchError(f"the record names {record.cpu_threads} CPU threads (config.device {record.device!r}); "
                            f"pass --threads N (1 to {MAX_THREADS})")
    return record.cpu_threads


def _verify(record: EvalRecord, record_file: Path, model: "str | Path | None", submissions_dir: Path,
            data_dir: str | None, torch_device: torch.device, batch_size: int, replay: "int | Literal['all'] | None",
            replay_seed: int | None, results_dir: Path | None) -> Verdict:
    verdict = Verdict(record.n_examples)
    if record.adversarial_examples is None:
        raise RobbenchError(f"{record_file}: the record has no saved adversarial examples; re-run `robbench evaluate` "
                            "with --results-dir to get a verifiable record")
    loaded = load_submission(_pinned(_spec(record, model, submissions_dir), record), data_dir)
    if loaded.dataset.params != record.dataset_params:
        raise RobbenchError(f"the dataset parameters differ from the record's ({record.dataset_params}); "
                            "pass the model.yaml the record was made from")
    verdict.failures += record_failures(record, record_file, loaded)
    start, stop = record.examples.start, record.examples.stop
    x, y = loaded.dataset.load("test", stop)
    x, y = x[start:], y[start:]
    if x.shape[0] != record.n_examples or data_digest(x, y) != record.config.data_sha256:
        verdict.fail(f"test examples {start}..{stop} differ from the evaluated ones (data SHA-256)")
        return _sorted(verdict)
    file = adversarial_path(record_file)
    if not file.exists():
        verdict.fail(f"{file.name} is missing")
        return _sorted(verdict)
    if file_sha256(file) != record.adversarial_examples.sha256:
        verdict.fail(f"{file.name} is not the file the record names (SHA-256 differs)")
        return verdict  # never decode a file the record does not name
    index, x_adv = decode(file, loaded.dataset.input_shape, record.adversarial_examples.count)

    net = averaged(loaded.model.to(torch_device), record.config.prediction_draws)  # the prediction the record counted
    ensure_eval_mode(net)
    randomized = any(flag.code == "randomized" for flag in record.flags)  # the flag itself is re-derived below
    redraws = record.reverification.redraws if record.reverification is not None else DEFAULT_REDRAWS
    _check_clean(net, x, y, loaded.dataset.num_classes, record, batch_size, torch_device, verdict, randomized, redraws)

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
    still_wrong = 0
    for begin in range(0, len(positions), batch_size):
        part = positions[begin : begin + batch_size]
        still_wrong += _check_batch(net, candidates[begin : begin + batch_size], x[part], y[part], part + start, record,
                                    loaded.dataset.value_range, torch_device, verdict,
                                    redraws if record.reverification is not None else None, randomized)
    verdict.failures += reverification_failures(record, randomized, len(positions), still_wrong, redraws)
    if verdict.not_reverified:
        verdict.notes.append(
            f"{len(verdict.not_reverified)} break(s) did not re-verify: the averaged prediction of "
            f"{record.config.prediction_draws} passes classified each correctly in all {redraws} fresh draws (test "
            f"indices {', '.join(map(str, verdict.not_reverified))}); the record counts them by its definition (wrong "
            "at its run), so its robust accuracy is that much luck: evaluate with more --prediction-draws")
    found, borderline = flag_failures(record, net, x, y, loaded, torch_device, redraws if randomized else None)
    verdict.failures += found
    if borderline:
        verdict.notes.append(f"{len(borderline)} example(s) the record counts robust broke under the flag check's PGD "
                             f"at ε (test indices {', '.join(map(str, borderline))}); --replay records such breaks")
    if replay is not None:
        _replay(record, record_file, loaded, net, x, y, (index, x_adv), verdict, replay, replay_seed, results_dir,
                torch_device)
    return _sorted(verdict)


def _replay(record: EvalRecord, record_file: Path, loaded: LoadedModel, net: torch.nn.Module, x: torch.Tensor,
            y: torch.Tensor, saved: tuple[np.ndarray, np.ndarray], verdict: Verdict, count: "int | str",
            seed: int | None, results_dir: Path | None, device: torch.device) -> None:
    """Attack claimed survivors again (``robbench.replay``); breaks fail the record and become a new run."""
    from .replay import comparison_failures, replay_all, replay_run, replay_survivors, survivor_failures

    if verdict.failures:  # a record whose claims are already untrue is not worth minutes of attacks
        verdict.fail("replay skipped: the consistency checks failed")
        return
    if count == "all":
        outcome = replay_all(record, loaded, net, x, y, device)
        verdict.failures += comparison_failures(record, outcome)
    else:
        outcome = replay_survivors(record, loaded, net, x, y, int(count), new_replay_seed() if seed is None else seed,
                                   device)
        verdict.failures += survivor_failures(record, outcome)
    verdict.replayed = int(outcome.positions.size)
    if count != "all":
        verdict.replay_seed = outcome.seed
    if count != "all" and outcome.broken_positions.size:
        store = results_dir or results_folder_of(record_file, record)
        if store is None:
            verdict.fail("the breaks the replay found are not recorded: pass --results-dir to write them as a new run")
            return
        run, payload = replay_run(record, outcome, loaded, net, x, y, saved, device)
        verdict.written = write_record(run, store, payload)


def results_folder_of(record_file: Path, record: EvalRecord) -> Path | None:
    """The results folder ``record_file`` lies in (``<folder>/<dataset>/<threat>/<name>/``), or None."""
    folder = record_file.resolve().parent
    layout = run_folder(record.dataset, record.threat_model, record.name).parts
    return folder.parents[len(layout) - 1] if folder.parts[-len(layout):] == layout else None


def _sorted(verdict: Verdict) -> Verdict:
    verdict.failures.sort(key=Failure.sort_key)
    return verdict


def _spec(record: EvalRecord, model: "str | Path | None", submissions_dir: Path) -> ModelSpec:
    """The submission to verify against: the one given, the hub commit the record pins, or the local one of its name."""
    if model is not None:
        return model_spec(str(model), submissions_dir=submissions_dir)  # a str keeps hf:// whole
    if record.checkpoint.repo is not None:
        return model_spec(record.checkpoint.path)  # hf://...@<commit>/weights: the model.yaml beside them at that commit
    return submission_named(record.name, submissions_dir, record.dataset,
                            fix="pass --model path/to/model.yaml (or hf://ORG/REPO@REVISION)")


def _check_clean(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, record: EvalRecord,
                 batch_size: int, device: torch.device, verdict: Verdict, randomized: bool, redraws: int) -> None:
    """The clean pass against the evidence. A randomized model's is re-run as the evaluation ran it (its seed, its
    batches: the same draws on the same kind of device), and a verdict that still differs fails only when none of
    ``redraws`` fresh predictions gives the record's."""
    if randomized:
        seed_everything(record.seed)
        batch_size = record.batch_size
    correct = (predict(net, x, batch_size, device, num_classes) == y).numpy()
    evidence_correct = record.evidence.clean_correct()
    differ = np.flatnonzero(correct != evidence_correct)
    if randomized and differ.size:
        chosen = torch.from_numpy(differ)
        wrong = wrong_counts(net, x[chosen], y[chosen], redraws=redraws, batch_size=batch_size, device=device).numpy()
        reproduced = np.where(evidence_correct[differ], wrong < redraws, wrong > 0)
        if reproduced.any():
            verdict.notes.append(f"{int(reproduced.sum())} clean verdict(s) differ from the record's on a re-run with its "
                                 f"seed and agree on a fresh draw (test indices "
                                 f"{', '.join(str(record.examples.start + p) for p in differ[reproduced])}): borderline "
                                 "under the model's randomness")
        differ = differ[~reproduced]
    for position in differ:
        said = "correctly" if evidence_correct[position] else "wrongly"
        never = f" in any of {redraws} fresh predictions" if randomized else ""
        verdict.fail(f"the record says it is {said} classified clean; it is not{never}",
                     int(record.examples.start + position))


def _check_batch(model: torch.nn.Module, x_adv: torch.Tensor, x: torch.Tensor, y: torch.Tensor, test_index: np.ndarray,
                 record: EvalRecord, value_range: tuple[float, float] | None, device: torch.device,
                 verdict: Verdict, redraws: int | None, randomized: bool) -> int:
    """Check saved breaks; with ``redraws`` (a record with a reverification), each is also predicted that many more
    times. Returns the number of those redraws that were wrong."""
    allowed = allowed_inputs(x_adv, x, record.threat_model, value_range)
    with torch.inference_mode():
        logits = model(x_adv.to(device)).float().cpu()
    finite = torch.isfinite(logits).all(1)
    if redraws is None:
        wrong = (finite & (logits.argmax(1) != y)).long()
    else:
        wrong = finite * wrong_counts(model, x_adv, y, redraws=redraws, batch_size=x_adv.shape[0], device=device)
    for i, number in enumerate(test_index.tolist()):
        if not allowed[i]:
            verdict.fail(f"the saved example lies outside the {record.threat_model.norm} "
                         f"ball of radius {record.threat_model.eps:g} or the value range", number)
        elif not finite[i]:
            verdict.fail("the model's logits on the saved example are not finite", number)
        elif not wrong[i] and randomized:
            verdict.not_reverified.append(number)
        elif not wrong[i]:
            verdict.fail("the model classifies the saved example correctly" + (f" in all {redraws} redraws" if redraws else ""),
                         number)
        else:
            verdict.confirmed += 1
    return int(wrong.sum()) if redraws is not None else 0


def _pinned(spec: ModelSpec, record: EvalRecord) -> ModelSpec:
    """The spec with the record's checkpoint digest pinned, so other weights are refused before any check."""
    if spec.sha256 not in (None, record.checkpoint.sha256):
        raise RobbenchError(f"the model.yaml pins sha256 {spec.sha256}, the record was made with {record.checkpoint.sha256}")
    return spec.model_copy(update={"sha256": record.checkpoint.sha256})  # keeps the folder checkpoints resolve against

