"""From a submission to records: ``evaluate(model.yaml)`` (lm-evaluation-harness's ``simple_evaluate``).

The run's identity is built once per threat model, as a ``RunConfig``: the resume state is keyed by
its digest and the record embeds it, so what is resumed is exactly what is recorded. The attacks
themselves run in the engine, ``robbench.evaluation``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import torch

from . import distributed
from .adversarial import digest, encode
from .adaptive import Budget, addressed_flags, escalated_flags, round_plan
from .attacks import Attack, AttackRules
from .config import ModelSpec
from .digests import data_digest
from .errors import RobbenchError
from .evaluation import Outcome, ProgressFactory, auto_batch_size, ensure_eval_mode, run_attacks
from .flags import board_flags, evaluation_checks
from .loader import LoadedModel, load_submission
from .progress import LineProgress
from .progress_state import StateFile
from .randomized import averaged, reverify
from .results import AdversarialExamples, AttackSpec, EscalationOf, EvalRecord, Examples, RunConfig, Versions
from .run_options import RunOptions
from .store import ADVERSARIAL_SUFFIX, check_name_owner, read_record, run_folder, state_path, write_records
from .runtime import describe_device, seed_everything, versions
from .threat_models import get_threat_model, select_threat_models
from .threads import ensure_threads
from .zoo import model_spec


def evaluate(
    model_yaml: "str | Path | ModelSpec | LoadedModel",
    options: RunOptions | None = None,
    *,
    threat_models: "str | list[str]" = "all",
    eps: float | None = None,
    progress: ProgressFactory | None = None,
    **option_values: Any,
) -> list[EvalRecord]:
    """Evaluate a submission under its threat models; one record per threat model, then its escalations.

    ``model_yaml``: a model.yaml, a committed submission's name, an ``hf://`` reference, a ``ModelSpec``,
    or a ``LoadedModel`` already built and loaded (``robbench.benchmark``: a model in memory).

    ``options``: the run's ``RunOptions``; ``option_values`` (``attacks``, ``n_examples``, ``batch_size``,
    ``device``, ``seed``, ``data_dir``, ``results_dir``) build one, or change the one given.
    ``threat_models``: ``"all"`` (the spec's list, else the dataset's standard set) or names.
    ``eps`` evaluates a single threat model at another radius, marked non-standard.
    Progress goes to ``progress`` (default: plain lines on stderr, ``robbench.progress.LineProgress``), after one
    line saying what runs; the threads follow the command line's policy (``robbench.threads.ensure_threads``).
    With a ``results_dir``, progress is saved there after every batch (a rerun of a killed evaluation
    continues it) and the records, with their adversarial-example files, are written there,
    together, at the end. ``batch_size="auto"`` is ``auto_batch_size``; the record holds the number.

    With ``adaptive`` (a ``robbench.adaptive.Budget``), each threat model's run is followed by the
    escalations its reliability flags call for, each a record of its own after the run's. A stored
    record of the same protocol run (``SAME_RUN``: weights, examples, seed, threat model and attack
    configurations; device, batch size and versions may differ) is continued instead of run again.
    """
    runs = evaluate_runs(model_yaml, RunOptions.of(options, **option_values), threat_models=threat_models, eps=eps,
                         progress=progress)
    return [run.record for run in runs]


@dataclass(frozen=True)
class Run:
    """One record of ``evaluate_runs``, with what it was run on: the evaluated inputs and the attacks' outcome."""

    record: EvalRecord
    x: torch.Tensor  # the evaluated inputs, on the CPU
    outcome: Outcome | None  # None: a stored run that was continued, not run here

    def adversarial_inputs(self) -> torch.Tensor:
        """The evaluated inputs with every verified adversarial example in its example's place (AutoAttack's
        ``x_adv``): row i is example i's adversarial input where an attack broke it, else example i itself."""
        if self.outcome is None:
            raise RobbenchError(f"run {self.record.config.run_id} was read from the store, not run; its adversarial "
                                "examples are in its .adv.npz file")
        aligned = self.x.clone()
        aligned[self.outcome.adversarial_index] = self.outcome.adversarial_x.to(aligned.dtype)
        return aligned


def evaluate_runs(model_yaml: "str | Path | ModelSpec | LoadedModel", options: RunOptions, *,
                  threat_models: "str | list[str]" = "all", eps: float | None = None,
                  progress: ProgressFactory | None = None) -> list[Run]:
    """``evaluate``, each record with its inputs and outcome (``robbench.benchmark`` returns adversarial inputs)."""
    ensure_threads()
    progress = progress or LineProgress()
    in_memory = isinstance(model_yaml, LoadedModel)
    spec = model_yaml.spec if in_memory else model_spec(model_yaml)
    attack_objects, seed = options.create_attacks(), options.seed
    torch_device = distributed.world().device(options.torch_device())  # cuda:LOCAL_RANK under torchrun
    loaded = model_yaml if in_memory else load_submission(spec, options.data_dir)
    results = options.results_dir
    if results is not None:  # before an hour of attacks, not after
        check_name_owner(results, spec.name, loaded.checkpoint.sha256, loaded.checkpoint.repo)
    threats = select_threat_models(loaded.dataset, threat_models, eps, spec.threat_models)
    x, y = loaded.dataset.load("test", options.n_examples)
    model = averaged(loaded.model.to(torch_device), options.prediction_draws)  # what "the prediction" is
    eval_notes = ensure_eval_mode(model)  # once: with several threat models, every record gets the note
    batch_size = options.batch_size
    if batch_size == "auto":  # rank 0 probes its device; every rank must split the examples alike
        batch_size = distributed.world().on_main(lambda: auto_batch_size(model, x[:1], torch_device, int(x.shape[0])))
    common = {
        "name": spec.name, "dataset": loaded.dataset.name, "dataset_params": loaded.dataset.params,
        "data_sha256": data_digest(x, y),
        "examples": Examples(split=loaded.split, start=0, stop=int(x.shape[0]), test_size=loaded.dataset.test_size),
        "architecture": spec.architecture, "architecture_kwargs": spec.architecture_kwargs,
        "normalization": spec.normalization, "checkpoint": loaded.checkpoint, "seed": seed,
        "batch_size": batch_size, "device": distributed.world().describe(describe_device(torch_device)),
        "versions": Versions(**versions()), "prediction_draws": options.prediction_draws,
    }
    if hasattr(progress, "say"):  # one line before the first stage: what runs, on what, with what
        progress.say(
            f"evaluating {spec.name} on {int(x.shape[0]):,} {loaded.dataset.name} {loaded.split} examples under "
            f"{', '.join(f'{t.name} {t.eps:g}' for t in threats)} with {', '.join(a.name for a in attack_objects)}, "
            f"on {common['device']}, batches of {batch_size}; {len(threats)} threat model(s), each its own stages"
        )
    runs: list[Run] = []
    written, payloads, states = [], [], []

    def keep(record: EvalRecord, payload: bytes | None, state: StateFile | None, outcome: Outcome) -> None:
        runs.append(Run(record, x, outcome))
        written.append(record)
        payloads.append(payload)
        states.append(state)

    for threat in threats:
        rules = AttackRules.for_dataset(loaded.dataset, threat, seed=seed, device=torch_device)
        config = RunConfig(
            **common, threat_model=threat,
            attacks=[AttackSpec(name=attack.name, config=attack.config(rules)) for attack in attack_objects],
        )
        stored = _stored_protocol_run(results, config) if options.adaptive is not None and results is not None else None
        if stored is not None:
            runs.append(Run(stored, x, None))
        else:
            record, payload, state, outcome = _run(config, attack_objects, model, rules, loaded, x, y, batch_size,
                                                   progress, results)
            record = _with_flags(record, model, rules, loaded, x, y, eval_notes)
            keep(_with_reverification(record, outcome, model, y, options.redraws, batch_size, rules.device), payload, state,
                 outcome)
        if options.adaptive is not None:
            for escalated in _escalate(runs[-1].record, options.adaptive, common, model, rules, loaded, x, y, batch_size,
                                       progress, results):
                keep(*escalated)
    if results is not None and distributed.is_main_process():  # every rank holds the records; rank 0 writes
        write_records(written, results, payloads)
        for state in states:
            state.remove()
    return runs


def _adversarial_file(outcome: Outcome, config: RunConfig) -> bytes:
    """The encoded file: test-set indices (evaluated positions offset by the first example) and inputs."""
    index = outcome.adversarial_index.numpy() + config.examples.start
    return encode(index, outcome.adversarial_x.numpy())


def _run(config: RunConfig, attacks: list[Attack], model: torch.nn.Module, rules: AttackRules, loaded: LoadedModel,
         x: torch.Tensor, y: torch.Tensor, batch_size: int, progress: ProgressFactory | None, results: Path | None,
         earlier: torch.Tensor | None = None, notes: tuple[str, ...] = ()
         ) -> tuple[EvalRecord, bytes | None, StateFile | None, Outcome]:
    """One run of ``attacks`` (resumable under ``results``), as a record with the board's flags only, its
    adversarial-example file, its state and its outcome; ``earlier``: examples the runs it continues broke."""
    state = StateFile(state_path(results, config), config.key(), loaded.dataset.input_shape) if results else None
    seed_everything(config.seed)
    started = time.perf_counter()
    outcome = run_attacks(model, x, y, rules=rules, attacks=attacks, batch_size=batch_size, progress=progress,
                          state=state, earlier=earlier)
    wall_time = state.elapsed_s() if state is not None else time.perf_counter() - started
    payload = _adversarial_file(outcome, config) if results is not None else None
    adversarial = None
    if payload is not None:
        adversarial = AdversarialExamples(file=f"{config.run_id}{ADVERSARIAL_SUFFIX}", sha256=digest(payload),
                                          count=int(outcome.adversarial_index.numel()))
    record = EvalRecord(
        config=config,
        metadata=loaded.spec.metadata,
        parameter_count=loaded.parameter_count,
        clean_accuracy=outcome.clean_accuracy,
        robust_accuracy=outcome.robust_accuracy,
        attacks=outcome.attacks,
        evidence=outcome.evidence,
        adversarial_examples=adversarial,
        notes=[*notes, *outcome.notes],
        wall_time_s=round(wall_time, 3),
        timestamp=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    )
    return record.model_copy(update={"flags": board_flags(record)}), payload, state, outcome


def _with_flags(record: EvalRecord, model: torch.nn.Module, rules: AttackRules, loaded: LoadedModel, x: torch.Tensor,
                y: torch.Tensor, eval_notes: list[str]) -> EvalRecord:
    """A protocol run's record with the reliability flags (``robbench.flags``, as ``verify`` re-derives them) and the
    evaluation's notes."""
    standard_eps = get_threat_model(loaded.dataset, record.threat_model.name).eps  # the collapse check's scale
    flags = evaluation_checks(model, x, y, record.attacks, threat=rules.threat, value_range=rules.value_range,
                              seed=record.seed, device=rules.device, standard_eps=standard_eps).flags
    return record.model_copy(update={"flags": [*flags, *record.flags], "notes": [*eval_notes, *record.notes]})


def _with_reverification(record: EvalRecord, outcome: Outcome, model: torch.nn.Module, y: torch.Tensor, redraws: int,
                         batch_size: int, device: torch.device) -> EvalRecord:
    """A randomized model's (or an averaged prediction's) breaks, each re-checked ``redraws`` times (``robbench.randomized``)."""
    if record.config.prediction_draws == 1 and not any(flag.code == "randomized" for flag in record.flags):
        return record
    reverification = reverify(model, outcome.adversarial_x, y[outcome.adversarial_index],
                              draws=record.config.prediction_draws, redraws=redraws, batch_size=batch_size, device=device)
    return record.model_copy(update={"reverification": reverification})


def _stored_protocol_run(results: Path, config: RunConfig) -> EvalRecord | None:
    """The newest stored record of the run ``config`` describes, whatever the device, batch size or versions:
    an adaptive evaluation continues it rather than spending the protocol's hours again."""
    def same_run(record: EvalRecord) -> bool:
        other = record.config
        return other.escalation is None and all(getattr(other, key) == getattr(config, key) for key in SAME_RUN)

    stored = []
    for path in sorted((results / run_folder(config.dataset, config.threat_model, config.name)).glob("*.json")):
        try:
            stored.append(read_record(path))
        except RobbenchError:
            continue
    matching = [record for record in stored if same_run(record)]
    return max(matching, key=lambda record: record.timestamp) if matching else None


#: what makes a stored record the same protocol run for ``--adaptive``
SAME_RUN = ("dataset_params", "data_sha256", "threat_model", "examples", "attacks", "checkpoint", "seed",
            "architecture", "architecture_kwargs", "normalization")


def _escalate(board: EvalRecord, budget: Budget, common: dict, model: torch.nn.Module, rules: AttackRules,
              loaded: LoadedModel, x: torch.Tensor, y: torch.Tensor, batch_size: int, progress: ProgressFactory | None,
              results: Path | None) -> Iterator[tuple[EvalRecord, bytes | None, StateFile | None, Outcome]]:
    """The escalation runs ``board``'s reliability flags call for, round by round (``robbench.adaptive``)."""
    flags = escalated_flags(flag.code for flag in board.flags)
    broken = torch.from_numpy(board.evidence.broken() | board.evidence.broken_earlier())
    correct = torch.from_numpy(board.evidence.clean_correct())
    continues, started, skipped = [board.config.run_id], time.perf_counter(), []
    for round_number in range(1, budget.rounds + 1):
        added = 0
        for escalation in round_plan(flags, rules.threat.norm, round_number):
            left = int((correct & ~broken).sum())
            if left == 0 or (budget.seconds is not None and time.perf_counter() - started >= budget.seconds):
                return
            attack = escalation.create(round_number)
            try:
                attack.stages(model, rules)  # e.g. transfer from a model without removable preprocessing
            except RobbenchError as exc:
                skipped.append(f"{escalation.spec(round_number)} was not run: {exc}")
                continue
            addressed = addressed_flags(escalation, flags)
            config = RunConfig(
                **common, threat_model=rules.threat,
                attacks=[AttackSpec(name=attack.name, config=attack.config(rules))],
                escalation=EscalationOf(continues=list(continues), flags=addressed, round=round_number),
            )
            note = (f"escalation round {round_number} for {', '.join(addressed)}: {escalation.why}; it attacked only the "
                    f"{left} examples the runs it continues left (budget: {budget.describe()})")
            record, payload, state, outcome = _run(config, [attack], model, rules, loaded, x, y, batch_size, progress,
                                                   results, earlier=broken, notes=(note, *skipped))
            skipped = []
            newly = torch.from_numpy(record.evidence.broken())
            broken, added = broken | newly, added + int(newly.sum())
            continues.append(config.run_id)
            yield record, payload, state, outcome
        if added == 0:
            return
