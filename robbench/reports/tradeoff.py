"""``robbench tradeoff``: Theorem 2.1 of Tsipras et al. (2019), "Robustness May Be at Odds with Accuracy".

On the ``tsipras`` distribution (y uniform in {-1, +1}; x1 = y with probability p, else -y;
x2..x_{d+1} ~ N(eta·y, 1)) an L-inf adversary with eps >= 2·eta can move the weak features to the
other class's mean. Theorem 2.1: any classifier with standard accuracy >= 1 - delta has robust
accuracy <= p/(1 - p)·delta.

This module

* states the bound for chosen p and standard accuracies (p = 0.9: 95% standard -> robust < 45%,
  99% standard -> robust < 9%);
* evaluates, with robbench's own attacks (``run_attacks``), the two classifiers of the paper as
  hand-set ``nn.Linear(d + 1, 2)`` models and checks their Monte-Carlo accuracies against the
  closed forms: sign(x1) has standard = robust accuracy = p (for eps < 1); sign(mean of
  x2..x_{d+1}) has standard accuracy Phi(eta·sqrt(d)) and robust accuracy Phi((eta - eps)·sqrt(d))
  (the mean of d unit-variance features has variance 1/d; the paper's display drops it);
* trains linear classifiers by standard training and by PGD adversarial training (robbench's
  ``pgd_perturb``) at several training radii, evaluates each at the theorem's eps = 2·eta, and
  checks every one against the bound, with the sampling error of a finite test set as slack;
* for every linear model also computes the exact worst-case robust accuracy (a linear model's
  worst L-inf perturbation is known in closed form), so a PGD that fell short would show.

Everything is deterministic for a seed. ``run(TradeoffConfig(...))`` returns a ``TradeoffResult``;
``tradeoff_page`` renders it (markdown, PNG, console summary) and ``common.write_report`` writes it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Sequence

import torch
from pydantic import Field, field_validator
from torch import nn

from ..attacks.pgd import pgd_step_size
from ..errors import RobbenchError
from ..run_options import attack_requests
from ..threat_models import ThreatModel
from .common import ReportConfig, StudyHeader, one_thread, paper

PAPER = paper("Theorem 2.1")

DEFAULT_BOUND_PS = (0.9, 0.95)
DEFAULT_BOUND_STANDARDS = (0.9, 0.95, 0.99)
#: training radii as multiples of eta; 0 is standard training
DEFAULT_TRAIN_EPS = (0.0, 0.5, 1.0, 1.5, 2.0)
#: standard deviations of sampling error allowed before a measurement counts as a mismatch
DEFAULT_Z = 4.0
#: absolute slack added to every sampling tolerance (float32 ties, tiny counts)
DEFAULT_SLACK = 1e-3


# --------------------------------------------------------------------------- closed forms


def normal_cdf(z: float) -> float:
    """Phi(z), the standard normal CDF, via math.erfc (accurate in both tails)."""
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def bound_factor(p: float) -> float:
    """p / (1 - p): the factor of Theorem 2.1."""
    if not 0.5 <= p < 1:
        raise RobbenchError(f"Theorem 2.1 needs 0.5 <= p < 1, got p={p}")
    return p / (1.0 - p)


def robust_accuracy_bound(p: float, standard_accuracy: float) -> float:
    """p/(1-p)·delta with delta = 1 - standard accuracy (unclipped: above 1 the bound says nothing)."""
    if not 0 <= standard_accuracy <= 1:
        raise RobbenchError(f"a standard accuracy is in [0, 1], got {standard_accuracy}")
    return bound_factor(p) * (1.0 - standard_accuracy)


@dataclass
class BoundRow:
    p: float
    standard_accuracy: float
    delta: float
    factor: float
    robust_accuracy_bound: float
    vacuous: bool  # the bound is 1 or more: it says nothing


def bound_table(ps: Sequence[float], standards: Sequence[float]) -> list[BoundRow]:
    rows = []
    for p in ps:
        for standard in standards:
            raw = robust_accuracy_bound(p, standard)
            rows.append(BoundRow(p, standard, 1.0 - standard, bound_factor(p), raw, raw >= 1.0))
    return rows


@dataclass
class ClosedForm:
    """Population accuracies of a hand-set classifier, with the formulas they come from."""

    rule: str
    standard_accuracy: float
    robust_accuracy: float
    standard_formula: str
    robust_formula: str


def closed_forms(d: int, p: float, eta: float, eps: float) -> dict[str, ClosedForm]:
    """Population standard and robust accuracies of the two classifiers of the paper."""
    return {
        # |x1| = 1: a perturbation below 1 cannot flip its sign; at eps >= 1 the adversary always can
        "robust-feature": ClosedForm(
            "sign(x1)", p, p if eps < 1 else 0.0, "p", "p (eps < 1)" if eps < 1 else "0 (eps >= 1)",
        ),
        "averaging": ClosedForm(
            f"sign(mean of x2..x{d + 1})", normal_cdf(eta * math.sqrt(d)), normal_cdf((eta - eps) * math.sqrt(d)),
            "Phi(eta*sqrt(d))", "Phi((eta-eps)*sqrt(d))",
        ),
    }


def sampling_tolerance(q: float, n: int, z: float = DEFAULT_Z, slack: float = DEFAULT_SLACK) -> float:
    """How far a Monte-Carlo accuracy over n samples may sit from its true value q."""
    return z * math.sqrt(max(q * (1.0 - q), 0.0) / n) + slack


# --------------------------------------------------------------------------- linear models


def linear_model(direction: torch.Tensor, bias: float = 0.0) -> nn.Linear:
    """``nn.Linear(D, 2)`` whose logit difference (class 1 minus class 0) is ``direction·x + bias``."""
    direction = direction.detach().to(torch.float32).flatten()
    model = nn.Linear(direction.numel(), 2)
    with torch.no_grad():
        model.weight.copy_(torch.stack([-direction / 2, direction / 2]))
        model.bias.copy_(torch.tensor([-bias / 2, bias / 2]))
    return model.eval()


def exact_linf_robust(model: nn.Linear, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Per example: correct at the worst point of the eps L-inf ball (unbounded inputs), in float64.

    The logit difference g = v·x + c moves by at most eps·||v||_1 over the ball. ``argmax`` breaks a
    tie towards class 0, so class 1 needs g > 0 everywhere and class 0 needs g <= 0 everywhere.
    """
    w, b = model.weight.detach().double().cpu(), model.bias.detach().double().cpu()
    v, c = w[1] - w[0], float(b[1] - b[0])
    g = x.double() @ v + c
    reach = eps * float(v.abs().sum())
    return torch.where(y == 1, g - reach > 0, g + reach <= 0)


def train_linear(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    threat: ThreatModel | None,
    steps: int,
    lr: float,
    attack_steps: int,
    seed: int,
    device: torch.device,
) -> nn.Linear:
    """Full-batch Adam (cosine-decayed learning rate) on robbench's training methods: ``pgd-at`` at
    ``threat``'s radius, or ``standard`` training when ``threat`` is None.

    The adversarial examples come from the training methods' PGD (random start, the last iterate,
    step 2.5·eps/steps). The weights start at zero, so the run depends on the seed only through
    the PGD random starts.
    """
    from ..training.methods import AdversarySettings
    from ..training.steps import train_steps

    x, y = x.to(device), y.to(device)
    model = nn.Linear(x.shape[1], 2).to(device)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    adversary = None if threat is None else AdversarySettings(
        threat=threat, steps=attack_steps, step_size=pgd_step_size(threat.eps, attack_steps), value_range=None,
    )
    return train_steps(
        model, x, y, method="standard" if threat is None else "pgd-at", adversary=adversary,
        optimizer=torch.optim.Adam(model.parameters(), lr=lr), steps=steps, lr=lr,
        attack_generator=torch.Generator(device=device).manual_seed(seed),
    )


# --------------------------------------------------------------------------- the study


class TradeoffConfig(ReportConfig):
    """``robbench tradeoff``'s settings (the defaults are the committed report's).

    ``train_eps`` are training radii as multiples of eta (0: standard training). Robust accuracy
    is measured at the theorem's radius eps = 2·eta (the registered ``tsipras/linf`` threat model)
    with ``attacks`` run in order on the survivors. ``p`` is the dataset's (0.5 < p < 1); every
    ``bound_ps`` lies in Theorem 2.1's range, 0.5 <= p < 1.
    """

    d: int = Field(default=100, ge=1)
    p: float = Field(default=0.9, gt=0.5, lt=1)
    eta: float | None = Field(default=None, gt=0, allow_inf_nan=False)  # None: 3/sqrt(d)
    n_train: int = Field(default=2000, ge=1)
    n_test: int = Field(default=10_000, ge=2)
    train_eps: tuple[float, ...] = DEFAULT_TRAIN_EPS
    steps: int = Field(default=200, ge=1)
    lr: float = Field(default=0.05, gt=0)
    attack_steps: int = Field(default=10, ge=1)
    attacks: str | tuple[str, ...] = ("pgd",)  # attack specs (``robbench.run_options``), e.g. "pgd,autoattack"
    bound_ps: tuple[Annotated[float, Field(ge=0.5, lt=1)], ...] = DEFAULT_BOUND_PS
    bound_standards: tuple[Annotated[float, Field(ge=0, le=1)], ...] = DEFAULT_BOUND_STANDARDS
    seed: int = Field(default=0, ge=0)
    device: str = "cpu"
    batch_size: int = Field(default=5000, ge=1)
    z: float = Field(default=DEFAULT_Z, gt=0)
    slack: float = Field(default=DEFAULT_SLACK, ge=0)

    @field_validator("train_eps")
    @classmethod
    def _distinct_non_negative_radii(cls, radii: tuple[float, ...]) -> tuple[float, ...]:
        if not radii or any(not math.isfinite(f) or f < 0 for f in radii):
            raise ValueError("training radii are non-negative multiples of eta, at least one")
        if len(set(radii)) != len(radii):
            raise ValueError("training radii repeat")
        return radii

    @field_validator("attacks")
    @classmethod
    def _some_attack(cls, attacks: "str | tuple[str, ...]") -> "str | tuple[str, ...]":
        if not attack_requests(attacks):  # a malformed spec is refused by attack_requests itself
            raise ValueError("no attack; pass e.g. pgd or pgd,autoattack")
        return attacks


@dataclass
class BoundCheck:
    """Robust accuracy against p/(1-p)·(1 - standard accuracy), measured on the same examples."""

    value: float
    value_clipped: float
    margin: float  # >= 0: the point estimate is under the bound
    standard_error: float
    allowed_excess: float
    exceeds_point_estimate: bool
    violates: bool


@dataclass
class ClosedFormCheck:
    formula: str
    expected: float
    measured: float
    tolerance: float
    ok: bool


@dataclass
class Classifier:
    """One classifier: how it was made, and what it measures."""

    name: str
    label: str
    kind: str  # closed-form | standard | adversarial
    rule: str
    train_eps: float | None
    train_eps_over_eta: float | None
    standard_accuracy: float
    robust_accuracy: float
    attack_accuracies: dict[str, float]
    robust_accuracy_exact: float
    attack_gap: float  # an attack can only overstate robust accuracy; > 0 means it missed adversarial examples
    bound: BoundCheck
    weights: dict[str, float]
    notes: list[str]
    closed_form: dict[str, ClosedFormCheck] | None = None


@dataclass
class Checks:
    closed_forms_match: bool
    bound_violations: list[str]
    above_bound_point_estimate: list[str]
    attack_short_of_exact: list[str]
    passed: bool


@dataclass
class TradeoffResult(StudyHeader):
    bound: dict[str, Any]
    closed_forms: dict[str, ClosedForm]
    test_sample: dict[str, Any]
    classifiers: list[Classifier]
    checks: Checks
    wall_time_s: float = field(default=0.0)


def _check_bound(clean: torch.Tensor, robust: torch.Tensor, p: float, z: float, slack: float) -> BoundCheck:
    """Per example t = robust - k·(1 - clean); the bound says E[t] <= 0.

    A violation is a mean of t above ``z`` standard errors of that mean (plus ``slack``): a
    classifier on the bound line in population (sign(x1) is exactly on it) lands above it on half
    of all test sets.
    """
    k = bound_factor(p)
    n = clean.numel()
    t = robust.double() - k * (1.0 - clean.double())
    standard, robust_acc = int(clean.sum()) / n, int(robust.sum()) / n
    value = k * (1.0 - standard)
    se = float(t.std(unbiased=True)) / math.sqrt(n) if n > 1 else 0.0
    allowed = z * se + slack
    return BoundCheck(value, min(1.0, value), value - robust_acc, se, allowed, robust_acc > value, robust_acc - value > allowed)


def _weights(model: nn.Linear) -> dict[str, float]:
    w, b = model.weight.detach().double().cpu(), model.bias.detach().double().cpu()
    v = w[1] - w[0]
    return {
        "x1": float(v[0]),
        "weak_l1": float(v[1:].abs().sum()),
        "weak_sum": float(v[1:].sum()),
        "bias": float(b[1] - b[0]),
    }


def run(config: TradeoffConfig) -> TradeoffResult:
    """Bound table, closed-form classifiers and trained linear classifiers on ``tsipras``; every number.

    On the CPU the work runs on one thread (``one_thread``).
    """
    from ..runtime import resolve_device

    device = resolve_device(config.device)
    with one_thread(device):
        return _run(config, device)


def _run(config: TradeoffConfig, device: torch.device) -> TradeoffResult:
    from ..attacks import AttackRules, derive_seed
    from ..data import get_dataset
    from ..evaluation import predict, run_attacks
    from ..runtime import describe_device, seed_everything
    from ..threat_models import get_threat_model

    started = time.perf_counter()
    c = config
    train_eps = [float(f) for f in c.train_eps]
    test_set = get_dataset("tsipras", d=c.d, p=c.p, eta=c.eta, n=c.n_test, seed=c.seed)
    train_set = get_dataset("tsipras", d=c.d, p=c.p, eta=c.eta, n=c.n_train, seed=c.seed)
    eta = float(test_set.params["eta"])
    threat = get_threat_model(test_set, "linf")  # eps = 2·eta
    eps = threat.eps
    x_test, y_test = test_set.load("test")
    x_train, y_train = train_set.load("train")
    attacks = [request.create() for request in attack_requests(c.attacks)]
    rules = AttackRules.for_dataset(test_set, threat, seed=c.seed, device=device)
    forms = closed_forms(c.d, c.p, eta, eps)
    n = c.n_test

    def measure(model: nn.Linear, **how: Any) -> Classifier:
        model = model.to(device).eval()
        seed_everything(c.seed)
        outcome = run_attacks(model, x_test, y_test, rules=rules, attacks=attacks, batch_size=c.batch_size)
        clean = predict(model, x_test, c.batch_size, device) == y_test
        exact = int((exact_linf_robust(model, x_test, y_test, eps) & clean).sum()) / n
        return Classifier(
            **how, standard_accuracy=outcome.clean_accuracy, robust_accuracy=outcome.robust_accuracy,
            attack_accuracies={a.name: a.accuracy for a in outcome.attacks}, robust_accuracy_exact=exact,
            attack_gap=outcome.robust_accuracy - exact, bound=_check_bound(clean, outcome.robust_mask.cpu(), c.p, c.z, c.slack),
            weights=_weights(model), notes=outcome.notes,
        )

    classifiers = []
    hand_set = {
        "robust-feature": torch.cat([torch.ones(1), torch.zeros(c.d)]),
        "averaging": torch.cat([torch.zeros(1), torch.full((c.d,), 1.0 / c.d)]),
    }
    for name, direction in hand_set.items():
        form = forms[name]
        entry = measure(linear_model(direction), name=name, label=form.rule, kind="closed-form", rule=form.rule,
                        train_eps=None, train_eps_over_eta=None)
        entry.closed_form = {}
        for key, formula in (("standard_accuracy", form.standard_formula), ("robust_accuracy", form.robust_formula)):
            expected, measured = getattr(form, key), getattr(entry, key)
            tolerance = sampling_tolerance(expected, n, c.z, c.slack)
            entry.closed_form[key] = ClosedFormCheck(formula, expected, measured, tolerance, abs(measured - expected) <= tolerance)
        classifiers.append(entry)

    for factor in train_eps:
        train_radius = factor * eta
        model = train_linear(
            x_train, y_train, threat=threat.model_copy(update={"eps": train_radius}) if factor > 0 else None, steps=c.steps, lr=c.lr,
            attack_steps=c.attack_steps, seed=derive_seed(c.seed, "tradeoff-train", f"{factor:g}"), device=device,
        )
        classifiers.append(measure(
            model,
            name="standard" if factor == 0 else f"pgd-at-{factor:g}eta",
            label="standard training" if factor == 0 else f"PGD-AT, ε = {factor:g}η",
            kind="standard" if factor == 0 else "adversarial",
            rule="linear, cross-entropy" + ("" if factor == 0 else f" on PGD examples at eps = {factor:g}*eta"),
            train_eps=train_radius,
            train_eps_over_eta=factor,
        ))

    closed_ok = all(check.ok for e in classifiers if e.closed_form for check in e.closed_form.values())
    violations = [e.name for e in classifiers if e.bound.violates]
    attack_short = [e.name for e in classifiers if e.attack_gap > 0]
    return TradeoffResult(
        paper=PAPER,
        dataset={"name": "tsipras", "d": c.d, "p": c.p, "eta": eta},
        threat_model={"name": threat.name, "norm": threat.norm, "eps": eps, "eps_over_eta": eps / eta},
        config={
            "n_train": c.n_train,
            "n_test": n,
            "train_eps_over_eta": train_eps,
            "steps": c.steps,
            "lr": c.lr,
            "optimizer": "adam, full batch, cosine decay, zero init",
            "train_attack_steps": c.attack_steps,
            "train_attack_step_size_over_eps": pgd_step_size(1.0, c.attack_steps),
            "attacks": [{"name": a.name, "config": a.config(rules)} for a in attacks],
            "seed": c.seed,
            "z": c.z,
            "slack": c.slack,
            "batch_size": c.batch_size,
            "device": describe_device(device),
        },
        bound={
            "statement": "standard accuracy >= 1 - delta implies robust accuracy <= p/(1-p)*delta, for L-inf eps >= 2*eta",
            "factor": bound_factor(c.p),
            "table": bound_table(c.bound_ps, c.bound_standards),
        },
        closed_forms=forms,
        test_sample={
            "n": n,
            # the realised p: how often x1 carries the label on this test set
            "x1_agreement": int(((x_test[:, 0] > 0).long() == y_test).sum()) / n,
            "class_1_fraction": int(y_test.sum()) / n,
        },
        classifiers=classifiers,
        checks=Checks(closed_ok, violations, [e.name for e in classifiers if e.bound.exceeds_point_estimate],
                      attack_short, closed_ok and not violations and not attack_short),
        wall_time_s=round(time.perf_counter() - started, 3),
    )
