"""The evaluation loop: clean pass, then each attack stage on the examples that survived so far.

Robust accuracy is the fraction of examples classified correctly before and after every attack.
Each attack runs only on the survivors of the ones before it, so its recorded accuracy is the
accuracy under it *and every earlier attack* (for the first attack, its own accuracy). Every
example counted as broken has been re-run through the model and verified.

Progress is one status per example (see ``robbench.progress_state``): the stage counts of the
record derive from it, and with a state file it is saved after every batch, so ``evaluate`` with
a ``results_dir`` continues a killed run where it stopped and ends with the same record.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from . import distributed
from .attacks import Attack, AttackContext, Stage, derive_seed
from .attacks.verify import verified_successes
from .errors import RobbenchError
from .progress_state import CLEAN_WRONG, Position, StateFile, alive_at, fresh_status
from .threat_models import ThreatModel

if TYPE_CHECKING:
    from .config import ModelSpec
    from .loader import LoadedModel
    from .results import EvalRecord

#: ``progress(description, total)`` returns ``advance(n)``; the CLI passes rich progress bars
ProgressFactory = Callable[[str, int], Callable[[int], None]]

#: what a model's forward may raise on inputs it cannot handle (user code: reported, not a robbench bug)
MODEL_ERRORS = (RuntimeError, ValueError, TypeError, IndexError)

#: ``batch_size="auto"`` off CUDA: CPU memory rarely binds, and bigger batches do not run faster there
CPU_BATCH_SIZE = 500
#: ``batch_size="auto"`` on CUDA tries powers of two from this one up to twice the number of examples
PROBE_START, PROBE_LIMIT = 32, 32768


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


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def checked_logits(model: nn.Module, x: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """``model(x)``, refusing a model that cannot be evaluated honestly, with a one-line reason."""
    original = x.clone()
    try:
        logits = model(x)
    except torch.OutOfMemoryError:
        raise  # not the model's fault: reported with the batch size to use (run_attacks)
    except MODEL_ERRORS as exc:
        raise RobbenchError(
            f"the model failed on test inputs of shape {tuple(x.shape)} ({_first_line(exc)}); "
            "check 'architecture' and 'architecture_kwargs'"
        ) from exc
    if not isinstance(logits, torch.Tensor):
        raise RobbenchError(f"the model returned a {type(logits).__name__}, not a tensor of logits")
    classes = logits.shape[1] if logits.dim() == 2 else None
    if logits.dim() != 2 or logits.shape[0] != x.shape[0] or (num_classes is not None and classes != num_classes):
        expected = f"({x.shape[0]}, {num_classes if num_classes is not None else 'classes'})"
        raise RobbenchError(
            f"the model returned outputs of shape {tuple(logits.shape)} for {x.shape[0]} inputs, expected logits of "
            f"shape {expected}; check the model's number of classes"
        )
    if not torch.equal(x, original):
        raise RobbenchError(
            "the model changes its input in place; attacks and verification need it unchanged, so clone it in forward"
        )
    non_finite = int((~torch.isfinite(logits)).any(1).sum())
    if non_finite:
        raise RobbenchError(f"the model returned NaN or Inf logits on {non_finite} clean test inputs")
    if any(module.training for module in model.modules()):
        raise RobbenchError(
            "the model switches itself to training mode when called; robbench evaluates models in eval mode only"
        )
    return logits


def predict(
    model: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device, num_classes: int | None = None
) -> torch.Tensor:
    """Predicted labels, batched, without autograd bookkeeping; every batch goes through ``checked_logits``."""
    predictions = []
    with torch.inference_mode():
        for start in range(0, x.shape[0], batch_size):
            logits = checked_logits(model, x[start : start + batch_size].to(device), num_classes)
            predictions.append(logits.argmax(1).cpu())
    return torch.cat(predictions) if predictions else torch.empty(0, dtype=torch.long)


def largest_fitting_batch(fits: Callable[[int], bool], limit: int, start: int = PROBE_START) -> int:
    """The largest power of two from ``start`` up to ``limit`` (``limit`` itself when smaller) that ``fits``; 0 if none."""
    best, size = 0, min(start, limit)
    while fits(size):
        best = size
        if size >= limit:
            break
        size = min(2 * size, limit)
    return best


def auto_batch_size(model: nn.Module, example: torch.Tensor, device: torch.device, n_examples: int) -> int:
    """A batch size that fills the device: half the largest batch whose input-gradient pass fits.

    The probe is one forward and backward to the input, what every attack step does; the half
    leaves room for what some steps need beyond it (FAB's two-class Jacobians, APGD's iterates,
    the allocator's fragmentation). Off CUDA it is ``CPU_BATCH_SIZE``. The record holds the size
    chosen, so ``--batch-size N`` reproduces the run anywhere.
    """
    if device.type != "cuda":
        return CPU_BATCH_SIZE
    limit = min(2 * n_examples, PROBE_LIMIT)  # half of it is a batch of every example

    def fits(size: int) -> bool:
        try:
            x = example.expand(size, *example.shape[1:]).to(device).clone().requires_grad_(True)
            torch.autograd.grad(model(x).float().logsumexp(1).sum(), x)
            return True
        except torch.OutOfMemoryError:
            return False
        finally:
            torch.cuda.empty_cache()

    largest = largest_fitting_batch(fits, limit)
    if largest == 0:
        raise RobbenchError(f"not even {min(PROBE_START, limit)} inputs fit in {device} memory for one gradient pass; pass a smaller --batch-size")
    return min(n_examples, max(1, largest // 2))


def ensure_eval_mode(model: nn.Module) -> list[str]:
    """Put every module in eval mode, even one whose ``train()`` ignores ``False``; a note when any was not."""
    was_training = any(module.training for module in model.modules())
    model.eval()
    for module in model.modules():
        module.training = False
    return ["the model was in training mode; it was evaluated in eval mode"] if was_training else []


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
    state: StateFile | None = None,
) -> Outcome:
    """Clean pass, then every stage of every attack on the survivors; resumes from ``state`` when it fits."""
    progress = progress or _no_progress
    notes = ensure_eval_mode(model)
    n = x.shape[0]
    if n == 0:
        raise RobbenchError("no examples to evaluate; check --n-examples")
    try:
        correct = distributed.world().all_predictions(lambda a, b: predict(model, x[a:b], batch_size, device, num_classes), n, batch_size) == y
    except torch.OutOfMemoryError as exc:
        raise _out_of_memory(device, f"classifying batches of {batch_size}", batch_size) from exc
    context = AttackContext(model, threat, value_range, num_classes, seed, device)
    plan = [(attack, attack.stages(context)) for attack in attacks]
    flat = [(attack, stage) for attack, stages in plan for stage in stages]
    resumed = distributed.world().from_main(state.load(correct, len(flat)) if state is not None and distributed.is_main_process() else None)
    status, position = resumed or (fresh_status(correct), Position(0, 0))
    for number, (attack, stage) in enumerate(flat):
        if number >= position.stage:
            first_batch = position.batch if number == position.stage else 0
            try:
                _run_stage(number, attack, stage, first_batch, status, x, y, context, batch_size, progress, state)
            except torch.OutOfMemoryError as exc:
                raise _out_of_memory(device, f"in {attack.name}: {stage.name} with batches of {batch_size}", batch_size) from exc
    return _outcome(plan, status, context, notes)


def _out_of_memory(device: torch.device, doing: str, batch_size: int) -> RobbenchError:
    """The remedy is a smaller batch, chosen by the user: a batch's seed depends on its examples, so
    re-splitting one silently would give a record that no ``--batch-size`` reproduces."""
    return RobbenchError(f"{device} ran out of memory {doing}; rerun with --batch-size {max(1, batch_size // 2)}")


def _run_stage(
    number: int, attack: Attack, stage: Stage, first_batch: int, status: torch.Tensor, x: torch.Tensor,
    y: torch.Tensor, context: AttackContext, batch_size: int, progress: ProgressFactory, state: StateFile | None,
) -> None:
    """Stage ``number`` (in run order) on its survivors, from ``first_batch``; marks what it broke in ``status``."""
    survivors = alive_at(status, number).nonzero().squeeze(1)
    batches = list(survivors.split(batch_size)) if survivors.numel() else []  # split() of nothing gives one empty batch
    advance = progress(attack.name if stage.name == attack.name else f"{attack.name}: {stage.name}", int(survivors.numel()))
    advance(sum(int(b.numel()) for b in batches[:first_batch]))
    world = distributed.world()  # under torchrun, batch i of the stage is rank i's (mod size); see robbench.distributed
    for batch_number in range(first_batch, len(batches)):
        index = batches[batch_number]
        shown = [0.0]  # of this batch's examples, on the bar: stages that report move it within the batch

        def report(fraction: float) -> None:
            step = fraction * index.numel() - shown[0]
            if step > 0:
                advance(step)
                shown[0] += step

        if world.owns(batch_number - first_batch):
            x_batch, y_batch = x[index].to(context.device), y[index].to(context.device)
            batch_seed = derive_seed(context.seed, attack.name, stage.name, int(index[0]))
            x_adv = stage.run(x_batch.clone(), y_batch, batch_seed, **({"report": report} if stage.reports_progress else {})).detach()
            with torch.inference_mode():
                logits = context.model(x_adv.clone())  # the model cannot alter what is verified
            broken = verified_successes(stage.name, logits, x_adv, x_batch, y_batch, context.threat, context.value_range)
            status[index[broken.cpu()]] = number
        advance(int(index.numel()) - shown[0])
        if world.round_ends(batch_number - first_batch, len(batches) - first_batch):
            world.merge_status(status)
            if state is not None and world.is_main:
                state.save(status, Position(number, batch_number + 1))


def _outcome(
    plan: list[tuple[Attack, list[Stage]]], status: torch.Tensor, context: AttackContext, notes: list[str]
) -> Outcome:
    """Every count of the record, from the per-example status."""
    attack_outcomes = []
    number = 0
    for attack, stages in plan:
        stage_outcomes = []
        for stage in stages:
            stage_outcomes.append(
                StageOutcome(
                    stage.name, int(alive_at(status, number).sum()), int((status == number).sum()),
                    _fraction(alive_at(status, number + 1)),
                )
            )
            number += 1
        accuracy = _fraction(alive_at(status, number))
        attack_outcomes.append(AttackOutcome(attack.name, attack.config(context), stage_outcomes, accuracy))
    robust = alive_at(status, number)
    return Outcome(status.numel(), _fraction(status != CLEAN_WRONG), _fraction(robust), attack_outcomes, robust, notes)


def data_digest(x: torch.Tensor, y: torch.Tensor) -> str:
    """SHA-256 of the evaluated examples, so a saved state is never resumed on other data."""
    digest = hashlib.sha256()
    for tensor in (x, y):
        digest.update(tensor.contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def evaluate(
    model_yaml: "str | Path | ModelSpec | LoadedModel",
    *,
    threat_models: "str | list[str]" = "all",
    attacks: "tuple[str, ...] | list[str]" = ("pgd", "autoattack"),
    n_examples: int | None = None,
    batch_size: "int | str" = "auto",
    device: str = "auto",
    seed: int = 0,
    eps: float | None = None,
    data_dir: str | None = None,
    progress: ProgressFactory | None = None,
    results_dir: "str | Path | None" = None,
) -> "list[EvalRecord]":
    """Evaluate a submission under its threat models; one record per threat model.

    ``threat_models``: ``"all"`` (the spec's list, else the dataset's standard set) or names.
    ``eps`` evaluates a single threat model at another radius, marked non-standard.
    ``results_dir``: progress is saved there after every batch (a rerun of a killed evaluation
    continues it) and the records are written there, together, at the end.
    ``batch_size``: a number, or ``"auto"`` (``auto_batch_size``; the record holds the number).
    """
    from .attacks import create_attack
    from .flags import attack_flags, board_flags, model_flags
    from .loader import LoadedModel, load_submission
    from .progress_state import config_key, state_path
    from .results import AttackRecord, EvalRecord, Examples, StageRecord, ThreatModelRecord, Versions, write_records
    from .runtime import describe_device, resolve_device, seed_everything, versions
    from .threat_models import get_threat_model, standard_threat_models
    from .zoo import model_spec

    in_memory = isinstance(model_yaml, LoadedModel)  # robbench.benchmark: a model already built and loaded
    spec = model_yaml.spec if in_memory else model_spec(model_yaml)  # a model.yaml, a submission's name or an hf:// ref
    if batch_size != "auto" and not (isinstance(batch_size, int) and batch_size >= 1):
        raise RobbenchError(f"--batch-size must be a positive integer or 'auto', got {batch_size!r}")
    if not 0 <= seed < 2**63:
        raise RobbenchError(f"--seed must be between 0 and 2**63 - 1, got {seed}")
    attack_objects = [create_attack(name) for name in attacks]
    torch_device = distributed.world().device(resolve_device(device))  # cuda:LOCAL_RANK under torchrun
    loaded = model_yaml if in_memory else load_submission(spec, data_dir)
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
    eval_notes = ensure_eval_mode(model)  # once: with several threat models, every record gets the note
    if batch_size == "auto":  # rank 0 probes its device; every rank must split the examples alike
        batch_size = distributed.world().on_main(lambda: auto_batch_size(model, x[:1], torch_device, int(x.shape[0])))
    run_versions = versions()
    device_text = distributed.world().describe(describe_device(torch_device))
    digest = data_digest(x, y) if results_dir is not None else ""

    records, states = [], []
    for threat in threats:
        state = None
        if results_dir is not None:
            context = AttackContext(model, threat, dataset.value_range, dataset.num_classes, seed, torch_device)
            key = config_key({
                "checkpoint_sha256": loaded.checkpoint.sha256, "architecture": spec.architecture,
                "architecture_kwargs": spec.architecture_kwargs,
                "normalization": spec.normalization.model_dump() if spec.normalization else None,
                "dataset": dataset.name, "dataset_params": dataset.params, "data_sha256": digest,
                "threat_model": [threat.name, threat.norm, threat.eps],
                "attacks": [[a.name, a.config(context)] for a in attack_objects],
                "n_examples": int(x.shape[0]), "batch_size": batch_size, "seed": seed, "versions": run_versions,
                "device": device_text,
            })
            state = StateFile(state_path(Path(results_dir), dataset.name, threat.slug, spec.name), key)
        seed_everything(seed)
        started = time.perf_counter()
        outcome = run_attacks(
            model, x, y, threat=threat, value_range=dataset.value_range, num_classes=dataset.num_classes,
            attacks=attack_objects, batch_size=batch_size, device=torch_device, seed=seed, progress=progress,
            state=state,
        )
        seed_everything(derive_seed(seed, "flags"))
        flags = model_flags(model, x, y, threat=threat, value_range=dataset.value_range, seed=seed, device=torch_device)
        flags += attack_flags(outcome.attacks, outcome.n_examples)
        wall_time = state.elapsed_s() if state is not None else time.perf_counter() - started
        record = EvalRecord(
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
            checkpoint=loaded.checkpoint,
            seed=seed,
            batch_size=batch_size,
            device=device_text,
            versions=Versions(**run_versions),
            notes=[*eval_notes, *outcome.notes],
            flags=flags,
            wall_time_s=round(wall_time, 3),
            timestamp=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        )
        records.append(record.model_copy(update={"flags": [*flags, *board_flags(record)]}))
        states.append(state)
    if results_dir is not None and distributed.is_main_process():  # every rank holds the records; rank 0 writes
        write_records(records, Path(results_dir))
        for state in states:
            state.remove()
    return records
