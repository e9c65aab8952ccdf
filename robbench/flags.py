"""Reliability flags: reasons a robustness number may overstate the truth, raised in every evaluation.

These are robbench's own checks, not pyautoattack's ``checks`` module (whose dynamic-defence check
keeps a process-wide counter that is never reset, so one model would flag every later one): each
check here is a function of one evaluation only. Codes are stable; leaderboards show flagged
results marked, never hidden.

=========================  =====================================================================
code                       raised when
=========================  =====================================================================
randomized                 two identical forward passes on the sample give different outputs
softmax-output             the outputs are probabilities, not logits
masked-gradients           over 10% of the correctly classified sample has a zero cross-entropy
                           input gradient (AutoAttack's criterion, per example), or a gradient
                           that does not point uphill: a random step of ε raises the loss more
                           than a step of ε along it (a large but useless gradient)
eps-not-monotone           PGD robust accuracy on the sample rises with ε, or does not fall
                           from ε to the collapse radius
no-collapse-at-large-eps   PGD robust accuracy on the sample is above 10% at the collapse
                           radius: 4× the threat model's standard radius (4× ε if larger)
square-beats-white-box     Square (black-box) lowers robust accuracy by more than 0.2 points
                           after the gradient attacks (AutoAttack's own alarm)
pgd-above-autoattack       AutoAttack, run after PGD, lowers robust accuracy by more than
                           5 points
non-standard-seed          seed other than 0              } the board's standard, BOARD:
non-standard-attacks       attacks other than pgd,        } seed 0, attacks pgd then
                           autoattack                     } autoattack, this release's
version-mismatch           another robbench/pyautoattack  } robbench and pyautoattack
=========================  =====================================================================

Model checks use the first ``SAMPLE_SIZE`` evaluated examples, so they cost a few PGD runs on
a hundred examples at most. The ε checks run PGD at ε, 2ε and the collapse radius, which is tied
to the dataset's scale (its standard radius), not to the evaluated ε: at a small non-standard ε,
4ε is well inside the radius an honest robust model was trained for.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import __version__
from .attacks import derive_seed
from .attacks.geometry import ascent_direction, project
from .attacks.pgd import pgd_perturb, pgd_step_size
from .attacks.verify import allowed_inputs, classified_correctly
from .results import EvalRecord, Flag
from .runtime import pinned_version, seed_everything
from .threat_models import ThreatModel

SAMPLE_SIZE = 100
COLLAPSE_FACTOR = 4  # the collapse radius, in standard radii (or in ε, when ε is larger)
PGD_STEPS = 20
RANDOMNESS_TOLERANCE = 1e-4  # relative output difference between identical passes
PROBABILITY_TOLERANCE = 1e-4
MASKED_FRACTION = 0.1
MONOTONE_SLACK = 0.01  # PGD is not exact: one example in a hundred may survive a larger ε
COLLAPSE_ACCURACY = 0.1  # "near zero" at the collapse radius
SQUARE_ALARM = 0.002  # AutoAttack's check_square_sr: 0.2 points
PGD_GAP = 0.05


@dataclass(frozen=True)
class BoardStandard:
    """What an entry on a leaderboard is expected to be; anything else is flagged, not refused."""

    seed: int = 0
    attacks: tuple[str, ...] = ("pgd", "autoattack")
    robbench: str = __version__
    pyautoattack: str | None = field(default_factory=lambda: pinned_version("pyautoattack"))


BOARD = BoardStandard()


class StageLike(Protocol):
    name: str
    n_broken: int


class AttackLike(Protocol):
    name: str
    accuracy: float
    stages: Sequence[StageLike]


@dataclass(frozen=True)
class ModelChecks:
    """What the model checks found: the flags, and which sample examples PGD broke at ε itself.

    ``broken_at_eps``: positions among the first ``SAMPLE_SIZE`` examples whose PGD-20 iterate at ε
    is a verified adversarial example (inside the ball and the range, misclassified). ``robbench verify``
    re-runs these checks and holds a record that counts one of them robust to be untrue.
    ``broken_inputs``: those iterates, in the same order (a randomized model's break is re-verified).
    """

    flags: list[Flag]
    broken_at_eps: list[int] = field(default_factory=list)
    broken_inputs: torch.Tensor | None = None


def model_flags(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, threat: ThreatModel, value_range: tuple[float, float] | None,
    seed: int, device: torch.device, standard_eps: float | None = None,
) -> list[Flag]:
    """Flags about the model's behaviour, from the first ``SAMPLE_SIZE`` examples (``model_checks``' flags)."""
    return model_checks(model, x, y, threat=threat, value_range=value_range, seed=seed, device=device,
                        standard_eps=standard_eps).flags


def model_checks(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    threat: ThreatModel,
    value_range: tuple[float, float] | None,
    seed: int,
    device: torch.device,
    standard_eps: float | None = None,
) -> ModelChecks:
    """Flags about the model's behaviour, from the first ``SAMPLE_SIZE`` examples, and PGD's breaks at ε there.

    ``standard_eps``: the standard radius of ``threat``'s norm on this dataset (default: ``threat.eps``).
    """
    x, y = x[:SAMPLE_SIZE].to(device), y[:SAMPLE_SIZE].to(device)
    with torch.no_grad():
        first, second = model(x), model(x)
    flags = []
    if _differ(first, second):
        flags.append(Flag(code="randomized", message="two identical forward passes gave different outputs; "
                          "a randomized defence needs an attack that averages over its randomness: rerun with "
                          "--prediction-draws K and --attacks 'autoattack(version=rand)' (EOT; docs/attacks.md)"))
    if _are_probabilities(first):
        flags.append(Flag(code="softmax-output", message="the model outputs probabilities, not logits; "
                          "attacks on softmax outputs can fail from saturation"))
    correct = first.argmax(1) == y
    positions = correct.nonzero().squeeze(1).cpu()
    x, y = x[correct], y[correct]
    if x.shape[0] == 0:
        return ModelChecks(flags)
    grad = _input_gradient(model, x, y)
    if grad is None:
        return ModelChecks(flags + [Flag(code="masked-gradients", message="the outputs do not depend on the input "
                                         "through autograd; gradient attacks cannot work on this model")])
    per_example = grad.flatten(1).abs().sum(1)
    zero = int(((per_example == 0) | ~torch.isfinite(per_example)).sum())
    not_uphill = _not_uphill(model, x, y, grad, threat, value_range, seed)
    if zero > MASKED_FRACTION * x.shape[0]:
        flags.append(Flag(code="masked-gradients", message=f"{zero} of {x.shape[0]} correctly classified sample "
                          "examples have a zero (or non-finite) input gradient; gradient attacks cannot move them"))
    elif not_uphill > MASKED_FRACTION * x.shape[0]:
        flags.append(Flag(code="masked-gradients", message=f"on {not_uphill} of {x.shape[0]} correctly classified "
                          "sample examples a random step of ε raises the loss more than a step of ε along the input "
                          "gradient; the gradient does not point uphill, so gradient attacks are blind there"))
    sample = correct.numel()
    radii = check_radii(threat.eps, threat.eps if standard_eps is None else standard_eps)
    runs = {r: _pgd_survivors(model, x, y, threat.model_copy(update={"eps": r}), value_range, seed) for r in radii}
    accuracies = {r: int(alive.sum()) / sample for r, (alive, _) in runs.items()}
    alive, x_adv = runs[threat.eps]
    broken = ~alive.cpu()
    return ModelChecks(flags + eps_flags(accuracies, sample), positions[broken].tolist(), x_adv.cpu()[broken])


def evaluation_checks(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: Sequence[AttackLike], *, threat: ThreatModel,
    value_range: tuple[float, float] | None, seed: int, device: torch.device, standard_eps: float,
) -> ModelChecks:
    """Every reliability check of an evaluation of ``x, y`` (its first examples, then what ``attacks`` achieved).

    Seeded from the recorded seed alone, so ``robbench verify`` re-derives the same flags from the record.
    """
    seed_everything(derive_seed(seed, "flags"))
    checks = model_checks(model, x, y, threat=threat, value_range=value_range, seed=seed, device=device,
                          standard_eps=standard_eps)
    return replace(checks, flags=checks.flags + attack_flags(attacks, int(x.shape[0])))


def check_radii(eps: float, standard_eps: float) -> tuple[float, ...]:
    """ε, 2ε and the collapse radius (``COLLAPSE_FACTOR`` standard radii, or ε's when larger), ascending."""
    collapse = COLLAPSE_FACTOR * max(eps, standard_eps)
    return tuple(sorted({eps, min(2 * eps, collapse), collapse}))


def eps_flags(accuracies: dict[float, float], sample: int) -> list[Flag]:
    """From PGD robust accuracy by radius: it must fall as ε grows, to near zero at the largest (the collapse radius)."""
    radii = sorted(accuracies)
    described = ", ".join(f"{100 * accuracies[r]:.0f}% at ε = {r:g}" for r in radii)
    smallest, largest = accuracies[radii[0]], accuracies[radii[-1]]
    rises = any(accuracies[b] > accuracies[a] + MONOTONE_SLACK for a, b in zip(radii, radii[1:]))
    flags = []
    if rises or MONOTONE_SLACK < smallest <= largest:
        flags.append(Flag(code="eps-not-monotone", message=f"PGD robust accuracy on {sample} examples: {described}; "
                          "it should fall as ε grows"))
    if largest > COLLAPSE_ACCURACY:
        flags.append(Flag(code="no-collapse-at-large-eps", message=f"PGD robust accuracy is still "
                          f"{100 * largest:.0f}% at the collapse radius ε = {radii[-1]:g} ({sample} examples); "
                          "an honest model is near 0% there"))
    return flags


def attack_flags(attacks: Sequence[AttackLike], n_examples: int) -> list[Flag]:
    """Flags from what each attack achieved after the ones before it."""
    flags = []
    white_box_ran = False
    for attack in attacks:
        for stage in attack.stages:
            if stage.name == "square" and white_box_ran and stage.n_broken > SQUARE_ALARM * n_examples:
                flags.append(Flag(code="square-beats-white-box", message=f"Square, a black-box attack, broke "
                                  f"{stage.n_broken} of {n_examples} examples the gradient attacks left "
                                  f"(-{100 * stage.n_broken / n_examples:.2f} points); gradients may be masked"))
            white_box_ran = white_box_ran or stage.name != "square"
    names = [a.name for a in attacks]
    if "pgd" in names and "autoattack" in names[names.index("pgd") :]:
        pgd, autoattack = attacks[names.index("pgd")], attacks[names.index("autoattack")]
        if pgd.accuracy - autoattack.accuracy > PGD_GAP:
            flags.append(Flag(code="pgd-above-autoattack", message=f"PGD robust accuracy {100 * pgd.accuracy:.2f}% "
                              f"is far above AutoAttack's {100 * autoattack.accuracy:.2f}%; PGD alone would "
                              "overstate robustness"))
    return flags


#: flags that say how an evaluation departs from the board's standard; every other flag is a reason
#: to doubt the number (a reliability problem), which boards mark with ⚠. A subset of the test set
#: is neither: the boards mark it with † and show its confidence interval.
BOARD_DEPARTURES = frozenset({"non-standard-seed", "non-standard-attacks", "version-mismatch"})


def is_reliability_flag(code: str) -> bool:
    return code not in BOARD_DEPARTURES


def board_flags(record: EvalRecord, board: BoardStandard = BOARD) -> list[Flag]:
    """Where the evaluation departs from the board's standard."""
    flags = []
    if record.seed != board.seed:
        flags.append(Flag(code="non-standard-seed", message=f"seed {record.seed}; the board's standard is {board.seed}"))
    attacks = tuple(a.name for a in record.attacks)
    if attacks != board.attacks:
        flags.append(Flag(code="non-standard-attacks", message=f"attacks {', '.join(attacks)}; "
                          f"the board's standard is {', '.join(board.attacks)}"))
    versions = record.versions
    if (versions.robbench, versions.pyautoattack) != (board.robbench, board.pyautoattack):
        flags.append(Flag(code="version-mismatch", message=f"robbench {versions.robbench}, pyautoattack "
                          f"{versions.pyautoattack}; the board's standard is robbench {board.robbench}, "
                          f"pyautoattack {board.pyautoattack}"))
    return flags


def _differ(first: torch.Tensor, second: torch.Tensor) -> bool:
    scale = first.abs().amax().clamp_min(1e-12)
    return bool(((first - second).abs().amax() / scale > RANDOMNESS_TOLERANCE) | (first.argmax(1) != second.argmax(1)).any())


def _are_probabilities(outputs: torch.Tensor) -> bool:
    in_unit = bool((outputs >= -PROBABILITY_TOLERANCE).all() and (outputs <= 1 + PROBABILITY_TOLERANCE).all())
    return in_unit and bool(((outputs.sum(1) - 1).abs() <= PROBABILITY_TOLERANCE * outputs.shape[1]).all())


def _input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """The cross-entropy gradient with respect to the input; None when there is no gradient path at all."""
    x = x.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    return torch.autograd.grad(loss, x, allow_unused=True)[0] if loss.requires_grad else None


def _not_uphill(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, grad: torch.Tensor, threat: ThreatModel,
    value_range: tuple[float, float] | None, seed: int,
) -> int:
    """On how many examples a random step of ε raises the loss more than one step of ε along ``grad`` (FGSM).

    An honest model's gradient wins by a wide margin (to first order a random step changes the loss by
    about nothing); a masked one (quantised input plus a high-frequency term) does no better than chance.
    """
    generator = torch.Generator(device=x.device).manual_seed(derive_seed(seed, "flags", "uphill"))
    random = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)

    def loss_after(direction: torch.Tensor) -> torch.Tensor:
        moved = project(x + threat.eps * ascent_direction(direction, threat.norm), x, threat.norm, threat.eps, value_range)
        with torch.no_grad():
            return F.cross_entropy(model(moved), y, reduction="none")

    return int((loss_after(random) > loss_after(grad)).sum())


def _pgd_survivors(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
    value_range: tuple[float, float] | None, seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which of (x, y) survive a PGD-20 at ``threat`` (a misclassified iterate outside the ball survives), and the
    iterates; seeded."""
    generator = torch.Generator(device=x.device).manual_seed(derive_seed(seed, "flags", f"pgd-{threat.eps!r}"))
    x_adv = pgd_perturb(
        model, x, y, norm=threat.norm, eps=threat.eps, steps=PGD_STEPS, step_size=pgd_step_size(threat.eps, PGD_STEPS),
        value_range=value_range, generator=generator,
    )
    with torch.no_grad():
        return classified_correctly(model(x_adv), y) | ~allowed_inputs(x_adv, x, threat, value_range), x_adv
