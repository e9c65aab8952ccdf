"""The evaluation loop: clean pass, then each attack stage on the examples that survived so far.

Robust accuracy is the fraction of examples classified correctly before and after every attack.
Each attack runs only on the survivors of the ones before it, so its recorded accuracy is the
accuracy under it *and every earlier attack* (for the first attack, its own accuracy). Every
example counted as broken has been re-run through the model and verified.

Progress is one status per example (see ``robbench.progress_state``): it becomes the record's
per-example evidence, from which every count derives, and the verified adversarial input of
every broken example is kept for the record's adversarial-example file. With a state file both
are saved after every batch, so a killed run continues where it stopped and ends with the same
record. This module is the engine only; ``robbench.pipeline`` turns a submission into records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from . import distributed
from .attacks import Attack, AttackRules, Stage, derive_seed
from .attacks.verify import verified_successes
from .errors import RobbenchError, exception_summary
from .evidence import AttackResult, Evidence
from .progress_state import Found, Position, StateFile, alive_at, fresh_status

#: ``progress(description, total)`` returns ``advance(n)``; the CLI passes rich progress bars
ProgressFactory = Callable[[str, int], Callable[[int], None]]

#: what a model's forward may raise on inputs it cannot handle (user code: reported, not a robbench bug)
MODEL_ERRORS = (RuntimeError, ValueError, TypeError, IndexError)

#: ``batch_size="auto"`` off CUDA: CPU memory rarely binds, and bigger batches do not run faster there
CPU_BATCH_SIZE = 500
#: ``batch_size="auto"`` on CUDA tries powers of two from this one up to twice the number of examples
PROBE_START, PROBE_LIMIT = 32, 32768


@dataclass
class Outcome:
    """What the attacks found: per-example evidence, the adversarial inputs, and the totals derived from it."""

    evidence: Evidence
    adversarial_index: torch.Tensor  # positions (in the evaluated examples) of every broken example, sorted
    adversarial_x: torch.Tensor  # their verified adversarial inputs, on the CPU
    notes: list[str] = field(default_factory=list)

    @property
    def n_examples(self) -> int:
        return self.evidence.n

    @property
    def clean_accuracy(self) -> float:
        return self.evidence.clean_accuracy()

    @property
    def robust_accuracy(self) -> float:
        return self.evidence.robust_accuracy()

    @property
    def attacks(self) -> list[AttackResult]:
        return self.evidence.attack_results()

    @property
    def robust_mask(self) -> torch.Tensor:
        """Per example: still correct after every attack."""
        return torch.from_numpy(self.evidence.survived())


def _no_progress(description: str, total: int) -> Callable[[int], None]:
    return lambda n: None


def checked_logits(model: nn.Module, x: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """``model(x)``, refusing a model that cannot be evaluated honestly, with a one-line reason."""
    original = x.clone()
    try:
        logits = model(x)
    except torch.OutOfMemoryError:
        raise  # not the model's fault: reported with the batch size to use (run_attacks)
    except MODEL_ERRORS as exc:
        raise RobbenchError(
            f"the model failed on test inputs of shape {tuple(x.shape)} ({exception_summary(exc)}); "
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
    rules: AttackRules,
    attacks: Sequence[Attack],
    batch_size: int,
    progress: ProgressFactory | None = None,
    state: StateFile | None = None,
    earlier: torch.Tensor | None = None,
) -> Outcome:
    """Clean pass, then every stage of every attack on ``model``'s survivors; resumes from ``state`` when it fits.

    ``rules`` are the run's (threat model, value range, classes, seed, device): what ``robbench.pipeline``
    builds once per threat model and records. ``attacks=[]`` is a clean pass alone.

    ``earlier``: per example, broken by a run this one continues (an escalation, ``robbench.adaptive``);
    such an example, if classified correctly, is marked ``EARLIER`` and not attacked.
    """
    progress = progress or _no_progress
    notes = ensure_eval_mode(model)
    n = x.shape[0]
    if n == 0:
        raise RobbenchError("no examples to evaluate; pass a positive number of examples")
    device = rules.device
    try:
        predictions = distributed.world().all_predictions(
            lambda a, b: predict(model, x[a:b], batch_size, device, rules.num_classes), n, batch_size)
    except torch.OutOfMemoryError as exc:
        raise _out_of_memory(device, f"classifying batches of {batch_size}", batch_size) from exc
    correct = predictions == y
    plan = [(attack, stage) for attack in attacks for stage in attack.stages(model, rules)]
    resumed = distributed.world().from_main(state.load(correct, len(plan)) if state is not None and distributed.is_main_process() else None)
    status, position, found = resumed or (fresh_status(correct, earlier), Position(0, 0), Found())
    for number, (attack, stage) in enumerate(plan):
        if number >= position.stage:
            first_batch = position.batch if number == position.stage else 0
            try:
                _run_stage(number, len(plan), attack, stage, first_batch, status, found, model, x, y, rules, batch_size,
                           progress, state)
            except torch.OutOfMemoryError as exc:
                raise _out_of_memory(device, f"in {attack.name}: {stage.name} with batches of {batch_size}", batch_size) from exc
    evidence = Evidence.from_codes(status.numpy(), [f"{attack.name}/{stage.name}" for attack, stage in plan])
    index, x_adv = found.arrays(x.shape[1:])
    return Outcome(evidence, index, x_adv, notes)


def _out_of_memory(device: torch.device, doing: str, batch_size: int) -> RobbenchError:
    """The remedy is a smaller batch, chosen by the user: a batch's seed depends on its examples, so
    re-splitting one silently would give a record that no ``--batch-size`` reproduces."""
    return RobbenchError(f"{device} ran out of memory {doing}; rerun with --batch-size {max(1, batch_size // 2)}")


def _run_stage(
    number: int, stages: int, attack: Attack, stage: Stage, first_batch: int, status: torch.Tensor, found: Found,
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, rules: AttackRules, batch_size: int, progress: ProgressFactory,
    state: StateFile | None,
) -> None:
    """Stage ``number`` (in run order, of ``stages``) on its survivors, from ``first_batch``; marks what it broke in
    ``status`` and keeps each broken example's verified adversarial input in ``found``."""
    survivors = alive_at(status, number).nonzero().squeeze(1)
    batches = list(survivors.split(batch_size)) if survivors.numel() else []  # split() of nothing gives one empty batch
    name = attack.name if stage.name == attack.name else f"{attack.name}: {stage.name}"
    advance = progress(f"stage {number + 1} of {stages}, {name}", int(survivors.numel()))
    advance(sum(int(b.numel()) for b in batches[:first_batch]))
    world = distributed.world()  # under torchrun, batch i of the stage is rank i's (mod size); see robbench.distributed
    round_found = Found()
    for batch_number in range(first_batch, len(batches)):
        index = batches[batch_number]
        shown = [0.0]  # of this batch's examples, on the bar: stages that report move it within the batch

        def report(fraction: float) -> None:
            step = fraction * index.numel() - shown[0]
            if step > 0:
                advance(step)
                shown[0] += step

        if world.owns(batch_number - first_batch):
            x_batch, y_batch = x[index].to(rules.device), y[index].to(rules.device)
            batch_seed = derive_seed(rules.seed, attack.name, stage.name, int(index[0]))
            x_adv = stage.run(x_batch.clone(), y_batch, batch_seed, **({"report": report} if stage.reports_progress else {})).detach()
            with torch.inference_mode():
                logits = model(x_adv.clone())  # the model cannot alter what is verified
            broken = verified_successes(
                stage.name, logits, x_adv, x_batch, y_batch, rules.threat, rules.value_range, example_ids=index
            ).cpu()
            status[index[broken]] = number
            round_found.add(index[broken], x_adv[broken.to(x_adv.device)].cpu())
        advance(int(index.numel()) - shown[0])
        if world.round_ends(batch_number - first_batch, len(batches) - first_batch):
            world.merge_status(status)
            round_found = Found.merged(world.gather(round_found))
            found.update(round_found)
            if state is not None and world.is_main:
                state.save(status, Position(number, batch_number + 1), round_found)
            round_found = Found()
