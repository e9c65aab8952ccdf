"""From a submission to records: ``evaluate(model.yaml)`` (lm-evaluation-harness's ``simple_evaluate``).

The run's identity is built once per threat model, as a ``RunConfig``: the resume state is keyed by
its digest and the record embeds it, so what is resumed is exactly what is recorded. The attacks
themselves run in the engine, ``robbench.evaluation``.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import torch

from . import distributed
from .adversarial import digest, encode
from .adaptive import Budget, addressed_flags, escalated_flags, round_plan
from .attacks import Attack, AttackContext, derive_seed
from .config import DEFAULT_N_EXAMPLES, ModelSpec
from .digests import data_digest
from .errors import RobbenchError
from .evaluation import Outcome, ProgressFactory, auto_batch_size, ensure_eval_mode, run_attacks
from .flags import attack_flags, board_flags, model_flags
from .loader import LoadedModel, load_submission
from .progress_state import StateFile
from .results import (
    ADVERSARIAL_SUFFIX, AdversarialExamples, AttackSpec, EscalationOf, EvalRecord, Examples, RunConfig, Versions,
    check_name_owner, read_record, run_folder, state_path, write_records,
)
from .run_options import check_run_options
from .runtime import describe_device, seed_everything, versions
from .threat_models import get_threat_model, select_threat_models
from .zoo import model_spec


def evaluate(
    model_yaml: "str | Path | ModelSpec | LoadedModel",
    *,
    threat_models: "str | list[str]" = "all",
    attacks: "tuple[str, ...] | list[str]" = ("pgd", "autoattack"),
    n_examples: int | None = DEFAULT_N_EXAMPLES,
    batch_size: "int | str" = "auto",
    device: str = "auto",
    seed: int = 0,
    eps: float | None = None,
    data_dir: str | None = None,
    progress: ProgressFactory | None = None,
    results_dir: "str | Path | None" = None,
    adaptive: Budget | None = None,
) -> list[EvalRecord]:
    """Evaluate a submission under its threat models; one record per threat model, then its escalations.

    ``model_yaml``: a model.yaml, a committed submission's name, an ``hf://`` reference, a ``ModelSpec``,
    or a ``LoadedModel`` already built and loaded (``robbench.benchmark``: a model in memory).

    ``threat_models``: ``"all"`` (the spec's list, else the dataset's standard set) or names.
    ``eps`` evaluates a single threat model at another radius, marked non-standard.
    ``results_dir``: progress is saved there after every batch (a rerun of a killed evaluation
    continues it) and the records, with their adversarial-example files, are written there,
    together, at the end. ``batch_size``: a number, or ``"auto"`` (``auto_batch_size``; the
    record holds the number).

    ``adaptive``: after each threat model's run, the escalations its reliability flags call for
    (``robbench.adaptive``), within this budget, each a record of its own after the run's. A stored
    record of the same protocol run (same weights, examples, seed, threat model and attack
    configurations) is continued instead of run again.
    """
    in_memory = isinstance(model_yaml, LoadedModel)
    spec = model_yaml.spec if in_memory else model_spec(model_yaml)
    attack_objects, chosen_device = check_run_options(attacks, n_examples, batch_size, device, seed)
    torch_device = distributed.world().device(chosen_device)  # cuda:LOCAL_RANK under torchrun
    loaded = model_yaml if in_memory else load_submission(spec, data_dir)
    results = Path(results_dir) if results_dir is not None else None
    if results is not None:  # before an hour of attacks, not after
        check_name_owner(results, spec.name, loaded.checkpoint)
    threats = select_threat_models(loaded.dataset, threat_models, eps, spec.threat_models)
    x, y = loaded.dataset.load("test", n_examples)
    model = loaded.model.to(torch_device)
    eval_notes = ensure_eval_mode(model)  # once: with several threat models, every record gets the note
    if batch_size == "auto":  # rank 0 probes its device; every rank must split the examples alike
        batch_size = distributed.world().on_main(lambda: auto_batch_size(model, x[:1], torch_device, int(x.shape[0])))
    common = {
        "name": spec.name, "dataset": loaded.dataset.name, "dataset_params": loaded.dataset.params,
        "data_sha256": data_digest(x, y),
        "examples": Examples(start=0, stop=int(x.shape[0]), test_size=loaded.dataset.test_size),
        "architecture": spec.architecture, "architecture_kwargs": spec.architecture_kwargs,
        "normalization": spec.normalization, "checkpoint": loaded.checkpoint, "seed": seed,
        "batch_size": batch_size, "device": distributed.world().describe(describe_device(torch_device)),
        "versions": Versions(**versions()),
    }
    records, new, payloads, states = [], [], [], []
    for threat in threats:
        context = AttackContext(model, threat, loaded.dataset.value_range, loaded.dataset.num_classes, seed, torch_device)
        config = RunConfig(
            **common, threat_model=threat,
            attacks=[AttackSpec(name=attack.name, config=attack.config(context)) for attack in attack_objects],
        )
        record = _stored_protocol_run(results, config) if adaptive is not None and results is not None else None
        if record is None:
            record, payload, state = _run(config, attack_objects, context, loaded, x, y, batch_size, progress, results)
            record = _with_flags(record, context, loaded, x, y, eval_notes)
            new.append(record), payloads.append(payload), states.append(state)
        records.append(record)
        if adaptive is not None:
            for escalated, payload, state in _escalate(record, adaptive, common, context, loaded, x, y, batch_size,
                                                       progress, results):
                records.append(escalated), new.append(escalated), payloads.append(payload), states.append(state)
    if results is not None and distributed.is_main_process():  # every rank holds the records; rank 0 writes
        write_records(new, results, payloads)
        for state in states:
            state.remove()
    return records


def _adversarial_file(outcome: Outcome, config: RunConfig) -> bytes:
    """The encoded file: test-set indices (evaluated positions offset by the first example) and inputs."""
    index = outcome.adversarial_index.numpy() + config.examples.start
    return encode(index, outcome.adversarial_x.numpy())


def _run(config: RunConfig, attacks: list[Attack], context: AttackContext, loaded: LoadedModel, x: torch.Tensor,
         y: torch.Tensor, batch_size: int, progress: ProgressFactory | None, results: Path | None,
         earlier: torch.Tensor | None = None, notes: tuple[str, ...] = ()) -> tuple[EvalRecord, bytes | None, StateFile | None]:
    """One run of ``attacks`` (resumable under ``results``), as a record without flags, its adversarial-example
    file and its state; ``earlier``: examples the runs it continues broke (``run_attacks``)."""
    state = StateFile(state_path(results, config), config.key(), loaded.dataset.input_shape) if results else None
    seed_everything(config.seed)
    started = time.perf_counter()
    outcome = run_attacks(context.model, x, y, attacks=attacks, batch_size=batch_size, context=context,
                          progress=progress, state=state, earlier=earlier)
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
    return record.model_copy(update={"flags": board_flags(record)}), payload, state


def _with_flags(record: EvalRecord, context: AttackContext, loaded: LoadedModel, x: torch.Tensor, y: torch.Tensor,
                eval_notes: list[str]) -> EvalRecord:
    """A protocol run's record with the reliability flags (``robbench.flags``) and the evaluation's notes."""
    seed_everything(derive_seed(record.seed, "flags"))
    standard_eps = get_threat_model(loaded.dataset, record.threat_model.name).eps  # the collapse check's scale
    flags = model_flags(context.model, x, y, threat=context.threat, value_range=context.value_range,
                        seed=record.seed, device=context.device, standard_eps=standard_eps)
    flags += attack_flags(record.attacks, record.n_examples)
    return record.model_copy(update={"flags": [*flags, *record.flags], "notes": [*eval_notes, *record.notes]})


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


def _escalate(board: EvalRecord, budget: Budget, common: dict, context: AttackContext, loaded: LoadedModel,
              x: torch.Tensor, y: torch.Tensor, batch_size: int, progress: ProgressFactory | None,
              results: Path | None) -> Iterator[tuple[EvalRecord, bytes | None, StateFile | None]]:
    """The escalation runs ``board``'s reliability flags call for, round by round (``robbench.adaptive``)."""
    flags = escalated_flags(flag.code for flag in board.flags)
    broken = torch.from_numpy(board.evidence.broken() | board.evidence.broken_earlier())
    correct = torch.from_numpy(board.evidence.clean_correct())
    continues, started = [board.config.run_id], time.perf_counter()
    for round_number in range(1, budget.rounds + 1):
        added, skipped = 0, []
        for escalation in round_plan(flags, context.threat.norm, round_number):
            left = int((correct & ~broken).sum())
            if left == 0 or (budget.seconds is not None and time.perf_counter() - started >= budget.seconds):
                return
            attack = escalation.create(round_number)
            try:
                attack.stages(context)  # e.g. transfer from a model without removable preprocessing
            except RobbenchError as exc:
                skipped.append(f"{escalation.spec(round_number)} was not run: {exc}")
                continue
            addressed = addressed_flags(escalation, flags)
            config = RunConfig(
                **common, threat_model=context.threat,
                attacks=[AttackSpec(name=attack.name, config=attack.config(context))],
                escalation=EscalationOf(continues=list(continues), flags=addressed, round=round_number),
            )
            note = (f"escalation round {round_number} for {', '.join(addressed)}: {escalation.why}; it attacked only the "
                    f"{left} examples the runs it continues left (budget: {budget.describe()})")
            record, payload, state = _run(config, [attack], context, loaded, x, y, batch_size, progress, results,
                                          earlier=broken, notes=(note, *skipped))
            skipped = []
            newly = torch.from_numpy(record.evidence.broken())
            broken, added = broken | newly, added + int(newly.sum())
            continues.append(config.run_id)
            yield record, payload, state
        if added == 0:
            return
