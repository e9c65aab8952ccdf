"""The evaluation loop: clean pass, then each attack stage on the examples that survived so far.

Robust accuracy is the fraction of examples classified correctly before and after every attack.
Each attack runs only on the survivors of the ones before it, so its recorded accuracy is the
accuracy under it *and every earlier attack* (for the first attack, its own accuracy). Every
example counted as broken has been re-run through the model and verified.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from .attacks import Attack, AttackContext, derive_seed
from .attacks.verify import verified_successes
from .errors import RobbenchError
from .threat_models import ThreatModel

if TYPE_CHECKING:
    from .config import ModelSpec
    from .results import EvalRecord

#: ``progress(description, total)`` returns ``advance(n)``; the CLI passes rich progress bars
ProgressFactory = Callable[[str, int], Callable[[int], None]]


@dataclass
class StageOutcome:
    name: str
    n_attacked: int
    n_broken: int
    accuracy: float  # correct under this stage and every earlier one


@dataclass
class AttackOutcome:
    name: str
    config: dict
    stages: list[StageOutcome]
    accuracy: float  # correct under this attack and every earlier one


@dataclass
class Outcome:
    n_examples: int
    clean_accuracy: float
    robust_accuracy: float
    attacks: list[AttackOutcome] = field(default_factory=list)
    robust_mask: torch.Tensor | None = None  # per example: still correct after every attack
    notes: list[str] = field(default_factory=list)


def _fraction(mask: torch.Tensor) -> float:
    """Exact count / n in float64 (not a float32 mean), so records show 0.56, not 0.5600000023841858."""
    return int(mask.sum()) / mask.numel()


def _no_progress(description: str, total: int) -> Callable[[int], None]:
    return lambda n: None


def predict(model: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """Predicted labels, batched, without autograd bookkeeping."""
    predictions = []
    with torch.inference_mode():
        for start in range(0, x.shape[0], batch_size):
            logits = model(x[start : start + batch_size].to(device))
            predictions.append(logits.argmax(1).cpu())
    return torch.cat(predictions) if predictions else torch.empty(0, dtype=torch.long)


def run_attacks(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    threat: ThreatModel,
    value_range: tuple[float, float] | None,
    num_classes: int,
    attacks: list[Attack],
    batch_size: int,
    device: torch.device,
    seed: int,
    progress: ProgressFactory | None = None,
) -> Outcome:
    progress = progress or _no_progress
    notes = []
    if model.training:
        notes.append("the model was in training mode; it was evaluated in eval mode")
    model.eval()
    n = x.shape[0]
    if n == 0:
        raise RobbenchError("no examples to evaluate; check --n-examples")
    robust = predict(model, x, batch_size, device) == y
    clean_accuracy = _fraction(robust)
    context = AttackContext(model, threat, value_range, num_classes, seed, device)
    outcomes = []
    for attack in attacks:
        stage_outcomes = []
        for stage in attack.stages(context):
            survivors = robust.nonzero().squeeze(1)
            advance = progress(f"{attack.name}: {stage.name}", int(survivors.numel()))
            broken_total = 0
            for start in range(0, survivors.numel(), batch_size):
                index = survivors[start : start + batch_size]
                x_batch, y_batch = x[index].to(device), y[index].to(device)
                batch_seed = derive_seed(seed, attack.name, stage.name, int(index[0]))
                x_adv = stage.run(x_batch.clone(), y_batch, batch_seed).detach()
                with torch.inference_mode():
                    logits = model(x_adv)
                broken = verified_successes(stage.name, logits, x_adv, x_batch, y_batch, threat, value_range).cpu()
                robust[index[broken]] = False
                broken_total += int(broken.sum())
                advance(int(index.numel()))
            stage_outcomes.append(
                StageOutcome(stage.name, int(survivors.numel()), broken_total, _fraction(robust))
            )
        outcomes.append(
            AttackOutcome(attack.name, attack.config(context), stage_outcomes, _fraction(robust))
        )
    return Outcome(n, clean_accuracy, _fraction(robust), outcomes, robust, notes)


def evaluate(
    model_yaml: "str | Path | ModelSpec",
    *,
    threat_models: "str | list[str]" = "all",
    attacks: "tuple[str, ...] | list[str]" = ("pgd", "autoattack"),
    n_examples: int | None = None,
    batch_size: int = 500,
    device: str = "auto",
    seed: int = 0,
    eps: float | None = None,
    data_dir: str | None = None,
    progress: ProgressFactory | None = None,
) -> "list[EvalRecord]":
    """Evaluate a submission under its threat models; one record per threat model.

    ``threat_models``: ``"all"`` (the spec's list, else the dataset's standard set) or names.
    ``eps`` evaluates a single threat model at another radius, marked non-standard.
    """
    from .attacks import create_attack
    from .config import ModelSpec, load_model_spec
    from .loader import load_submission
    from .results import AttackRecord, Checkpoint, EvalRecord, Examples, StageRecord, ThreatModelRecord, Versions
    from .runtime import describe_device, resolve_device, seed_everything, versions
    from .threat_models import get_threat_model, standard_threat_models

    spec = model_yaml if isinstance(model_yaml, ModelSpec) else load_model_spec(model_yaml)
    if batch_size < 1:
        raise RobbenchError(f"--batch-size must be positive, got {batch_size}")
    attack_objects = [create_attack(name) for name in attacks]
    torch_device = resolve_device(device)
    loaded = load_submission(spec, data_dir)
    dataset = loaded.dataset
    if threat_models == "all":
        names = spec.threat_models or sorted(standard_threat_models(dataset))
    else:
        names = [threat_models] if isinstance(threat_models, str) else list(threat_models)
    threats = [get_threat_model(dataset, name) for name in names]
    if eps is not None:
        if len(threats) != 1:
            raise RobbenchError("--eps applies to one threat model; pass --threat-model NAME as well")
        threats = [threats[0].with_eps(eps)]
    x, y = dataset.load("test", n_examples)
    model = loaded.model.to(torch_device)

    records = []
    for threat in threats:
        seed_everything(seed)
        started = time.perf_counter()
        outcome = run_attacks(
            model, x, y, threat=threat, value_range=dataset.value_range, num_classes=dataset.num_classes,
            attacks=attack_objects, batch_size=batch_size, device=torch_device, seed=seed, progress=progress,
        )
        records.append(
            EvalRecord(
                name=spec.name,
                dataset=dataset.name,
                dataset_params=dataset.params,
                threat_model=ThreatModelRecord(name=threat.name, norm=threat.norm, eps=threat.eps, standard=threat.standard),
                examples=Examples(start=0, stop=outcome.n_examples, test_size=dataset.test_size),
                n_examples=outcome.n_examples,
                clean_accuracy=outcome.clean_accuracy,
                robust_accuracy=outcome.robust_accuracy,
                attacks=[
                    AttackRecord(
                        name=a.name, accuracy=a.accuracy, config=a.config,
                        stages=[StageRecord(**vars(s)) for s in a.stages],
                    )
                    for a in outcome.attacks
                ],
                architecture=spec.architecture,
                architecture_kwargs=spec.architecture_kwargs,
                parameter_count=loaded.parameter_count,
                metadata=spec.metadata,
                checkpoint=Checkpoint(path=spec.checkpoint, sha256=loaded.sha256),
                seed=seed,
                batch_size=batch_size,
                device=describe_device(torch_device),
                versions=Versions(**versions()),
                notes=outcome.notes,
                wall_time_s=round(time.perf_counter() - started, 3),
                timestamp=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            )
        )
    return records
