"""Defence models that fool the standard protocol, and the attacks written for each (Tramèr et al. 2020).

A test plugin, not an installed one: ``register()`` adds the four defences to robbench's architecture
registry for the test session, each wrapped around a linear classifier (``linear``'s layout, under
``model.``), so a checkpoint of the linear model's weights is a checkpoint of every defence. A linear
base keeps the suite fast and gives two defences an exact answer: the saturating head and the
randomized transformation leave the linear model's decisions unchanged (up to the transformation's
1e-3 wobble), so their true robust accuracy is the linear model's, which is computable exactly.

==================  ==========================================  =======================================
defence             what fools the standard protocol            reference attack (written for it)
==================  ==========================================  =======================================
quantized           rounding the input to a few levels: the     BPDA: PGD through the identity in place
                    input gradient is zero almost everywhere    of the rounding (straight-through)
opened              a 3x3 morphological opening on a detached  BPDA: PGD through the identity in place
                    input (as from another library): no        of the filter
                    gradient path at all
random-phase        x + (a/k)·sin(k·x + φ), φ fresh every       EOT: PGD on the logits averaged over
                    call: a 1e-3 change of the input, but a     many draws of φ (the random factor
                    random factor 1 + a·cos(...) on every       averages to 1)
                    gradient component (most signs are noise)
saturating          logits scaled by 1000: softmax is one-hot   logit rescaling: PGD on the logits
                    in float32, so cross-entropy has a zero     divided by the scale
                    gradient on every confident example
==================  ==========================================  =======================================
"""

from __future__ import annotations

import math
import torch
import torch.nn.functional as F
from torch import nn

from robbench.attacks.pgd import pgd_perturb, pgd_step_size
from robbench.attacks.verify import classified_correctly
from robbench.models import ARCHITECTURES
from robbench.models.linear import linear
from robbench.threat_models import ThreatModel

QUANTIZATION_LEVELS = 2  # x -> round(2x)/2: pixels in {0, 0.5, 1}
PHASE_AMPLITUDE = 8.0  # the random gradient factor 1 + a·cos(.) is positive barely more often than not
PHASE_FREQUENCY = 4000.0  # the input moves by at most a/k = 2e-3
LOGIT_SCALE = 1000.0


class _Defended(nn.Module):
    """``head(model(preprocess(x)))`` around a linear classifier held as ``model`` (its weights under ``model.``)."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        self.model = linear(input_shape, num_classes)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def head(self, logits: torch.Tensor) -> torch.Tensor:
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.model(self.preprocess(x)))


class _WithoutPreprocessing(nn.Module):
    def __init__(self, defence: _Defended):
        super().__init__()
        self.defence = defence

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.defence.head(self.defence.model(x))


class _Preprocessed(_Defended):
    """A defence by input preprocessing; like a plugin would, it exposes the network behind it (the convention of
    the ``transfer`` attack's ``self-without-preprocessing`` surrogate)."""

    def without_preprocessing(self) -> nn.Module:
        return _WithoutPreprocessing(self)


class Quantized(_Preprocessed):
    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * QUANTIZATION_LEVELS) / QUANTIZATION_LEVELS


class Opened(_Preprocessed):
    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """A 3x3 morphological opening (erode, then dilate) on a detached copy: what autograd sees of a filter
        run in another library. (A median filter is the classic, but ten times slower to run Square through.)"""
        eroded = -F.max_pool2d(-x.detach(), 3, stride=1, padding=1)
        return F.max_pool2d(eroded, 3, stride=1, padding=1)


class RandomPhase(_Preprocessed):
    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        phase = torch.rand(x.shape, device=x.device, dtype=x.dtype) * (2 * math.pi)
        return x + PHASE_AMPLITUDE / PHASE_FREQUENCY * torch.sin(PHASE_FREQUENCY * x + phase)


class Saturating(_Defended):
    def head(self, logits: torch.Tensor) -> torch.Tensor:
        return LOGIT_SCALE * logits


DEFENCES: dict[str, type[_Defended]] = {
    "test-quantized": Quantized,
    "test-opened": Opened,
    "test-random-phase": RandomPhase,
    "test-saturating": Saturating,
}


def register() -> None:
    """Add the defences to the architecture registry (idempotent)."""
    for name, cls in DEFENCES.items():
        if name not in ARCHITECTURES._entries:
            ARCHITECTURES.register(name, description=f"test defence: {cls.__name__}")(cls)


def defended(name: str, base: nn.Module) -> _Defended:
    """Defence ``name`` around a copy of the linear classifier ``base``, in eval mode."""
    first = base[1]
    model = DEFENCES[name]((1, 28, 28), first.out_features)
    model.model.load_state_dict(base.state_dict())
    return model.eval()


# --------------------------------------------------------------------------------------------
# the reference attacks: each knows its defence, which no general-purpose attack does


class _StraightThrough(nn.Module):
    """The defence's forward, with the identity's gradient through its preprocessing (BPDA, Athalye et al. 2018)."""

    def __init__(self, model: _Defended):
        super().__init__()
        self.defence = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            moved = self.defence.preprocess(x) - x
        return self.defence.head(self.defence.model(x + moved))


class _ExpectationOverTransformation(nn.Module):
    """Logits averaged over ``samples`` draws of the defence's randomness (EOT, Athalye et al. 2018)."""

    def __init__(self, model: _Defended, samples: int):
        super().__init__()
        self.defence, self.samples = model, samples

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        repeated = x.repeat(self.samples, *([1] * (x.dim() - 1)))
        return self.defence(repeated).view(self.samples, x.shape[0], -1).mean(0)


class _Rescaled(nn.Module):
    def __init__(self, model: Saturating):
        super().__init__()
        self.defence = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.defence(x) / LOGIT_SCALE


def attack_model(name: str, model: _Defended, eot_samples: int = 200) -> nn.Module:
    """What the reference attack differentiates for defence ``name``."""
    if name in ("test-quantized", "test-opened"):
        return _StraightThrough(model)
    if name == "test-random-phase":
        return _ExpectationOverTransformation(model, eot_samples)
    return _Rescaled(model)


def reference_robust(name: str, model: _Defended, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *,
                     steps: int = 100, restarts: int = 5, eot_samples: int = 200, seed: int = 0) -> torch.Tensor:
    """Per example: still correct after the defence's own attack (PGD on ``attack_model``, restarts on the
    survivors), every break checked on the defence itself, one forward pass each as robbench verifies."""
    surrogate = attack_model(name, model, eot_samples)
    generator = torch.Generator().manual_seed(seed)
    robust = classify(model, x, y)
    for _ in range(restarts):
        index = robust.nonzero().squeeze(1)
        if index.numel() == 0:
            break
        x_adv = pgd_perturb(surrogate, x[index], y[index], norm=threat.norm, eps=threat.eps, steps=steps,
                            step_size=pgd_step_size(threat.eps, steps), value_range=(0.0, 1.0), generator=generator,
                            keep_first_success=False)
        robust[index] = classify(model, x_adv, y[index])
    return robust


def classify(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return classified_correctly(model(x), y)
