"""AutoAttack (Croce & Hein, 2020), standard version, through the official ``pyautoattack``.

robbench runs AutoAttack's components itself, in AutoAttack's order and with its settings
(apgd-ce, apgd-t, fab-t, square; the same seed for every batch, as ``run_standard_evaluation``
does), so each component is one stage: progress, verification and survivor bookkeeping are
robbench's. Components that do not apply to the dataset are skipped and recorded:
targeted APGD uses the targeted DLR loss, which needs at least 4 classes, and the number of
target classes is capped at ``num_classes - 1``.

pyautoattack clamps every iterate to [0, 1]. For inputs with another range (or none), the model
is attacked through an exact affine change of variables that maps a box containing every
eps-ball of the batch onto [0, 1], with eps rescaled to match, so that clamp never binds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import RobbenchError
from . import ATTACKS, Attack, AttackRules, Report, Stage, with_input_gradient

STANDARD_COMPONENTS = ("apgd-ce", "apgd-t", "fab-t", "square")
_NORMS = {"Linf": "Linf", "L2": "L2"}


class _FromUnitBox(nn.Module):
    """``model(low + u·scale)``: lets pyautoattack's [0, 1] clamp stand for the real value range."""

    def __init__(self, model: nn.Module, low: torch.Tensor, scale: float, shape: tuple[int, ...]):
        super().__init__()
        self.model, self.low, self.scale, self.shape = model, low, scale, shape

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.model((self.low + u * self.scale).view(u.shape[0], *self.shape))


class _Counted(nn.Module):
    """``model(x)``, calling ``on_forward()`` first: pyautoattack's loops report no progress, their forwards do."""

    def __init__(self, model: nn.Module, on_forward):
        super().__init__()
        self.model, self.on_forward = model, on_forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.on_forward()
        return self.model(x)


def expected_forwards(adversary, component: str) -> int:
    """Forward passes ``component`` makes on a batch it breaks nothing of (counted on pyautoattack 0.2.0).

    The progress estimate within a batch; a batch whose examples break early ends sooner.
    """
    if component == "apgd-ce":
        return 1 + adversary.apgd.n_restarts * (adversary.apgd.n_iter + 1)
    if component == "apgd-t":
        apgd = adversary.apgd_targeted
        return 1 + apgd.n_target_classes * apgd.n_restarts * (apgd.n_iter + 2)
    if component == "fab-t":  # one restart, as _run_component sets
        return 1 + adversary.fab.n_target_classes * (2 * adversary.fab.n_iter + 3)
    return 3 + adversary.square.n_restarts * adversary.square.n_queries


def applicable_components(num_classes: int) -> tuple[list[str], dict[str, str]]:
    """The standard components that apply to ``num_classes``, and why the others were skipped."""
    skipped = {}
    if num_classes < 4:
        skipped["apgd-t"] = "targeted DLR loss needs at least 4 classes"
    if num_classes < 3:
        skipped["fab-t"] = "needs at least 2 target classes besides the true one"
    return [c for c in STANDARD_COMPONENTS if c not in skipped], skipped


@dataclass
class AutoAttackStandard(Attack):
    """AutoAttack, standard version (APGD-CE, APGD-T, FAB-T, Square) from pyautoattack."""

    version: str = "standard"

    def __post_init__(self) -> None:
        self.name = "autoattack"
        if self.version != "standard":
            raise RobbenchError(f"autoattack version {self.version!r} is not supported; use 'standard'")
        logging.getLogger("auto-attack").setLevel(logging.WARNING)  # robbench shows the progress

    def _adversary(self, rules: AttackRules, model: nn.Module, eps: float):
        from pyautoattack import AutoAttack

        adversary = AutoAttack(
            model, norm=_NORMS[rules.threat.norm], eps=eps, version="standard", seed=rules.seed,
            device=str(rules.device),
        )
        n_targets = min(9, rules.num_classes - 1)
        adversary.apgd_targeted.n_target_classes = n_targets
        adversary.fab.n_target_classes = n_targets
        return adversary

    def stages(self, model: nn.Module, rules: AttackRules) -> list[Stage]:
        components, _ = applicable_components(rules.num_classes)
        return [Stage(component, self._component(model, rules, component), reports_progress=True) for component in components]

    def _component(self, model: nn.Module, rules: AttackRules, component: str):
        threat = rules.threat

        def run(x: torch.Tensor, y: torch.Tensor, batch_seed: int, report: Report = lambda done: None) -> torch.Tensor:
            attacked, eps, to_unit, from_unit = with_input_gradient(model), threat.eps, None, None
            if rules.value_range != (0.0, 1.0):
                low, high = _box_for(x, threat.eps, rules.value_range)
                scale = high - low
                shape = tuple(x.shape[1:])
                attacked = _FromUnitBox(attacked, low, scale, shape)
                eps = threat.eps / scale
                to_unit = lambda t: _as_image((t - low) / scale)  # noqa: E731
                from_unit = lambda u: (low + u * scale).view(u.shape[0], *shape)  # noqa: E731
            forwards = [0]

            def on_forward() -> None:
                forwards[0] += 1
                report(min(1.0, forwards[0] / expected))

            adversary = self._adversary(rules, _Counted(attacked, on_forward), eps)
            expected = expected_forwards(adversary, component)
            x_in = to_unit(x) if to_unit else x
            x_adv = _run_component(adversary, component, x_in, y)
            return from_unit(x_adv) if from_unit else x_adv

        return run

    def config(self, rules: AttackRules) -> dict:
        components, skipped = applicable_components(rules.num_classes)
        return {
            "version": self.version,
            "components": components,
            "skipped_components": skipped,
            "seed": rules.seed,
            "n_target_classes": min(9, rules.num_classes - 1),
            "implementation": "pyautoattack",
        }


def _as_image(t: torch.Tensor) -> torch.Tensor:
    """pyautoattack's Square attack needs NCHW; a feature vector becomes a 1xD image."""
    return t if t.dim() == 4 else t.reshape(t.shape[0], 1, 1, -1)


def _box_for(x: torch.Tensor, eps: float, value_range: tuple[float, float] | None) -> tuple[torch.Tensor, float]:
    """A box holding every eps-ball around the batch (within the value range, when there is one)."""
    if value_range is not None:
        return torch.tensor(value_range[0], device=x.device, dtype=x.dtype), float(value_range[1] - value_range[0])
    low = float(x.min()) - eps
    high = float(x.max()) + eps
    return torch.tensor(low, device=x.device, dtype=x.dtype), high - low


def _run_component(adversary, component: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The same calls, with the same settings, that ``run_standard_evaluation`` makes per batch."""
    seed = adversary.get_seed()
    if component == "apgd-ce":
        adversary.apgd.loss = "ce"
        adversary.apgd.seed = seed
        return adversary.apgd.perturb(x, y)
    if component == "apgd-t":
        adversary.apgd_targeted.seed = seed
        return adversary.apgd_targeted.perturb(x, y)
    if component == "fab-t":
        adversary.fab.targeted = True
        adversary.fab.n_restarts = 1
        adversary.fab.seed = seed
        return adversary.fab.perturb(x, y)
    if component == "square":
        adversary.square.seed = seed
        return adversary.square.perturb(x, y)
    raise RobbenchError(f"unknown AutoAttack component {component!r}")


@ATTACKS.register("autoattack")
def autoattack(version: str = "standard") -> Attack:
    """AutoAttack standard (APGD-CE, APGD-T, FAB-T, Square), official pyautoattack"""
    return AutoAttackStandard(version=version)
