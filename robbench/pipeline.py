"""From a submission to records: ``evaluate(model.yaml)`` (lm-evaluation-harness's ``simple_evaluate``).

The run's identity is built once per threat model, as a ``RunConfig``: the resume state is keyed by
its digest and the record embeds it, so what is resumed is exactly what is recorded. The attacks
themselves run in the engine, ``robbench.evaluation``.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from . import distributed
from .adversarial import digest, encode
from .attacks import AttackContext, derive_seed
from .config import DEFAULT_N_EXAMPLES, ModelSpec
from .digests import data_digest
from .evaluation import Outcome, ProgressFactory, auto_batch_size, ensure_eval_mode, run_attacks
from .flags import attack_flags, board_flags, model_flags
from .loader import LoadedModel, load_submission
from .progress_state import StateFile
from .results import AdversarialExamples, AttackSpec, EvalRecord, Examples, RunConfig, Versions
from .store import ADVERSARIAL_SUFFIX, check_name_owner, state_path, write_records
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
) -> list[EvalRecord]:
    """Evaluate a submission under its threat models; one record per threat model.

    ``model_yaml``: a model.yaml, a committed submission's name, an ``hf://`` reference, a ``ModelSpec``,
    or a ``LoadedModel`` already built and loaded (``robbench.benchmark``: a model in memory).

    ``threat_models``: ``"all"`` (the spec's list, else the dataset's standard set) or names.
    ``eps`` evaluates a single threat model at another radius, marked non-standard.
    ``results_dir``: progress is saved there after every batch (a rerun of a killed evaluation
    continues it) and the records, with their adversarial-example files, are written there,
    together, at the end. ``batch_size``: a number, or ``"auto"`` (``auto_batch_size``; the
    record holds the number).
    """
    in_memory = isinstance(model_yaml, LoadedModel)
    spec = model_yaml.spec if in_memory else model_spec(model_yaml)
    attack_objects, chosen_device = check_run_options(attacks, n_examples, batch_size, device, seed)
    torch_device = distributed.world().device(chosen_device)  # cuda:LOCAL_RANK under torchrun
    loaded = model_yaml if in_memory else load_submission(spec, data_dir)
    results = Path(results_dir) if results_dir is not None else None
    if results is not None:  # before an hour of attacks, not after
        check_name_owner(results, spec.name, loaded.checkpoint.sha256, loaded.checkpoint.repo)
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
    records, payloads, states = [], [], []
    for threat in threats:
        context = AttackContext(model, threat, loaded.dataset.value_range, loaded.dataset.num_classes, seed, torch_device)
        config = RunConfig(
            **common, threat_model=threat,
            attacks=[AttackSpec(name=attack.name, config=attack.config(context)) for attack in attack_objects],
        )
        state = StateFile(state_path(results, config), config.key(), loaded.dataset.input_shape) if results else None
        seed_everything(seed)
        started = time.perf_counter()
        outcome = run_attacks(model, x, y, attacks=attack_objects, batch_size=batch_size, context=context,
                              progress=progress, state=state)
        wall_time = state.elapsed_s() if state is not None else time.perf_counter() - started
        payload = _adversarial_file(outcome, config) if results is not None else None
        records.append(_record(config, loaded, outcome, context, x, y, eval_notes, wall_time, payload))
        payloads.append(payload)
        states.append(state)
    if results is not None and distributed.is_main_process():  # every rank holds the records; rank 0 writes
        write_records(records, results, payloads)
        for state in states:
            state.remove()
    return records


def _adversarial_file(outcome: Outcome, config: RunConfig) -> bytes:
    """The encoded file: test-set indices (evaluated positions offset by the first example) and inputs."""
    index = outcome.adversarial_index.numpy() + config.examples.start
    return encode(index, outcome.adversarial_x.numpy())


def _record(config: RunConfig, loaded: LoadedModel, outcome: Outcome, context: AttackContext, x: torch.Tensor,
            y: torch.Tensor, eval_notes: list[str], wall_time: float, payload: bytes | None) -> EvalRecord:
    seed_everything(derive_seed(config.seed, "flags"))
    standard_eps = get_threat_model(loaded.dataset, config.threat_model.name).eps  # the collapse check's scale
    flags = model_flags(context.model, x, y, threat=context.threat, value_range=context.value_range,
                        seed=config.seed, device=context.device, standard_eps=standard_eps)
    flags += attack_flags(outcome.attacks, outcome.n_examples)
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
        notes=[*eval_notes, *outcome.notes],
        flags=flags,
        wall_time_s=round(wall_time, 3),
        timestamp=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    )
    return record.model_copy(update={"flags": [*flags, *board_flags(record)]})
