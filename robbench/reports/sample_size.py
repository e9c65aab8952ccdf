"""``robbench sample-size``: Figure 1 of Tsipras et al. (2019), "Robustness May Be at Odds with Accuracy".

Standard (clean) test accuracy of standard and adversarially trained models as a function of the
training-set size. The paper's observation: with few training samples adversarial training can
*raise* standard accuracy (it acts as data augmentation), with many it *lowers* it (the robust
model gives up non-robust but useful features); the two curves cross.

Protocol (every choice is recorded in the result):

* Training subsets are nested and class-balanced: one seeded order of the training split that
  visits the classes round-robin; the subset of size n is its first n examples, so every larger
  set contains every smaller one.
* Every model, whatever n, gets the same number of SGD steps (``steps`` minibatches of
  ``min(batch_size, n)``; momentum, weight decay, cosine learning rate): a small set is not
  trained for less time than a large one, and the run time does not grow with n.
* The loss is robbench's ``standard`` method for eps = 0 and its ``pgd-at`` method (robbench's
  one PGD, ``attack_steps`` steps of 2.5·eps/attack_steps, random start) for eps > 0, taken from
  ``robbench.training.methods.METHODS``.
* Standard accuracy on the full test set and robust accuracy (PGD-20) at the dataset's standard
  radius on the first ``robust_examples`` test images, both through ``run_attacks``.
* Each AT-minus-standard difference carries the paired standard error of the test sample (both
  models are scored on the same images); with ``repeats`` > 1 the models are retrained with other
  seeds (same subsets) and the accuracies averaged.
* On the CPU every model trains on one thread, ``workers`` models at a time in separate processes;
  the result does not depend on the number of workers or cores.

``run(SampleSizeConfig.from_preset("cpu", ...))`` returns a ``SampleSizeResult``; ``sample_size_page``
renders it. Two presets: ``cpu`` (the default; 5 sizes x eps {0, 0.1}, 800 steps of 64, 7-step PGD, 2 workers;
see the README for its measured time on 2 cores) and ``gpu`` (7 sizes up to the full 60 000 x eps
{0, 0.1, 0.2}, 3000 steps of 128, 10-step PGD; about 75 s per adversarially trained model on an
H200, about 20 minutes in all). Any option overrides the preset's value.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable

import torch
from pydantic import Field, field_validator

from ..errors import RobbenchError
from .common import PRIVATE, ReportConfig, StudyHeader, paper

PAPER = paper("Figure 1")

#: PGD steps of the robust-accuracy measurement
ROBUST_PGD_STEPS = 20
#: standard errors a difference must exceed to count as a measured effect
DEFAULT_Z = 2.0


class SampleSizeConfig(ReportConfig):
    """``robbench sample-size``'s settings; ``preset`` gives the committed report's (``cpu``) or a GPU's.

    ``eps`` are training radii of the dataset's ``threat_model`` norm (0: standard training, required:
    the curve the others are compared with). Robust accuracy is always measured at the threat model's
    standard radius, so the rows are comparable.
    """

    preset: str = "cpu"
    sizes: tuple[Annotated[int, Field(ge=1)], ...] = (100, 300, 1000, 3000, 10000)
    eps: tuple[Annotated[float, Field(ge=0, allow_inf_nan=False)], ...] = (0.0, 0.1)
    steps: int = Field(default=800, ge=1)
    batch_size: int = Field(default=64, ge=1)
    attack_steps: int = Field(default=7, ge=1)
    robust_examples: int = Field(default=500, ge=1)
    repeats: int = Field(default=1, ge=1)
    device: str = "cpu"
    workers: int = Field(default=2, ge=1)
    dataset: str = "fashion-mnist"
    threat_model: str = "linf"
    architecture: str = "small-cnn"
    architecture_kwargs: dict[str, Any] | None = None
    lr: float = Field(default=0.05, gt=0)
    momentum: float = Field(default=0.9, ge=0)
    weight_decay: float = Field(default=5e-4, ge=0)
    n_test: int | None = Field(default=None, ge=1)
    seed: int = Field(default=0, ge=0)
    z: float = Field(default=DEFAULT_Z, gt=0)
    data_dir: str | None = None

    @classmethod
    def from_preset(cls, preset: str = "cpu", **overrides: Any) -> "SampleSizeConfig":
        """The preset's settings with every override that is not None applied."""
        if preset not in PRESETS:
            raise RobbenchError(f"{preset!r} is unknown; use {' or '.join(PRESETS)}", parameter="preset")
        return cls(**{**PRESETS[preset].model_dump(), **{k: v for k, v in overrides.items() if v is not None}})

    @field_validator("sizes")
    @classmethod
    def _distinct_sizes(cls, sizes: tuple[int, ...]) -> tuple[int, ...]:
        if not sizes or len(set(sizes)) != len(sizes):
            raise ValueError("training-set sizes must be distinct positive integers, at least one")
        return sizes

    @field_validator("eps")
    @classmethod
    def _distinct_radii_with_zero(cls, radii: tuple[float, ...]) -> tuple[float, ...]:
        if len(set(radii)) != len(radii):
            raise ValueError("training radii must be distinct")
        if 0.0 not in radii:
            raise ValueError("must include 0 (standard training), the curve the others are compared with")
        return radii


PRESETS: dict[str, SampleSizeConfig] = {
    # measured: about 20 minutes on 2 CPU cores (see the README)
    "cpu": SampleSizeConfig(),
    # for one GPU: up to the full training set, three radii, ~4x the steps, 10-step PGD
    "gpu": SampleSizeConfig(
        preset="gpu", sizes=(100, 300, 1000, 3000, 10000, 30000, 60000), eps=(0.0, 0.1, 0.2), steps=3000,
        batch_size=128, attack_steps=10, robust_examples=2000, device="auto", workers=1,
    ),
}


@dataclass
class Run:
    """One trained model: its (size, eps, repeat) cell and what it measures."""

    size: int
    eps: float
    repeat: int
    seed: int
    standard_accuracy: float
    robust_accuracy: float
    train_accuracy: float
    train_seconds: float
    seconds: float
    correct: torch.Tensor | None = field(default=None, metadata=PRIVATE)  # per test image


@dataclass
class Row:
    """Mean accuracies per training radius (keyed ``f"{eps:g}"``) at one training-set size."""

    size: int
    by_eps: dict[str, dict[str, float]]


@dataclass
class Comparison:
    size: int
    eps: float
    difference: float  # adversarial minus standard training, standard accuracy
    standard_error: float
    effect: str  # helps | costs | no measurable difference


@dataclass
class Verdict:
    eps: float
    helps_at_sizes: list[int]
    costs_at_sizes: list[int]
    helps_at_smallest: bool
    costs_at_largest: bool
    # the paper's picture: measurably better with the fewest samples, measurably worse with the most
    crossing_measured: bool
    crossing_size: float | None


@dataclass
class SampleSizeResult(StudyHeader):
    versions: dict[str, str]
    runs: list[Run]
    table: list[Row]
    comparisons: list[Comparison]
    verdict: list[Verdict]
    wall_time_s: float


# --------------------------------------------------------------------------- data and training


def nested_order(y: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
    """A seeded order of all indices whose every prefix is class-balanced (round-robin over classes).

    Within each class the order is a seeded permutation; the k-th example of every class comes
    before the (k+1)-th of any class. Prefixes of this order are the nested training subsets.
    """
    generator = torch.Generator().manual_seed(seed)
    rank = torch.empty_like(y)
    for c in range(num_classes):
        index = (y == c).nonzero().squeeze(1)
        rank[index[torch.randperm(index.numel(), generator=generator)]] = torch.arange(index.numel())
    class_position = torch.randperm(num_classes, generator=generator)
    key = rank * num_classes + class_position[y]
    return torch.argsort(key)


def _cell(config: SampleSizeConfig, size: int, radius: float, repeat: int, n_robust: int, device: str, threads: int | None) -> Run:
    """Train and measure the model of one (size, eps, repeat) cell; runs in a worker process or in-process.

    Everything it needs is in its (picklable) arguments, and it reloads the data itself, so where it
    runs does not change the result. On the CPU it runs on ``threads`` threads (1): the numbers then
    do not depend on the machine's core count or the number of workers.
    """
    from ..attacks import AttackRules, derive_seed
    from ..attacks.pgd import PGDAttack
    from ..data import get_dataset
    from ..evaluation import run_attacks
    from ..runtime import seed_everything
    from ..threat_models import get_threat_model
    from ..training.steps import train_new_model

    if threads:
        torch.set_num_threads(threads)
    torch_device = torch.device(device)
    data = get_dataset(config.dataset, **({"data_dir": config.data_dir} if config.data_dir else {}))
    threat = get_threat_model(data, config.threat_model)
    x_train, y_train = data.load("train")
    x_test, y_test = data.load("test", config.n_test)
    order = nested_order(y_train, data.num_classes, derive_seed(config.seed, "sample-size", "subsets"))
    index = order[:size]
    x_sub, y_sub = x_train[index], y_train[index]
    model_seed = derive_seed(config.seed, "sample-size", size, f"{radius:g}", repeat)
    started = time.perf_counter()
    model = train_new_model(
        x_sub, y_sub, dataset=data, architecture=config.architecture, architecture_kwargs=config.architecture_kwargs,
        threat=threat.with_eps(radius) if radius > 0 else None, steps=config.steps, batch_size=config.batch_size,
        lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, attack_steps=config.attack_steps,
        seed=model_seed, device=torch_device,
    )
    train_seconds = time.perf_counter() - started
    common = dict(rules=AttackRules.for_dataset(data, threat, seed=config.seed, device=torch_device), batch_size=500)
    clean = run_attacks(model, x_test, y_test, attacks=[], **common)
    fit = run_attacks(model, x_sub, y_sub, attacks=[], **common)
    seed_everything(config.seed)
    robust = run_attacks(model, x_test[:n_robust], y_test[:n_robust], attacks=[PGDAttack(steps=ROBUST_PGD_STEPS)], **common)
    return Run(
        size, radius, repeat, model_seed, clean.clean_accuracy, robust.robust_accuracy, fit.clean_accuracy,
        round(train_seconds, 2), round(time.perf_counter() - started, 2), clean.robust_mask.cpu(),
    )


# --------------------------------------------------------------------------- the study


def run(config: SampleSizeConfig, log: Callable[[Run], None] | None = None) -> SampleSizeResult:
    """Train one model per (size, eps, repeat) and measure it. ``log(run)`` is called after each model.

    On the CPU each model trains on one thread, in ``workers`` processes side by side (the cells
    are independent and seeded one by one, so the numbers do not depend on ``workers`` or on the
    machine's core count); on a GPU the models train one after another in this process.
    """
    from ..attacks.pgd import PGDAttack
    from ..data import get_dataset
    from ..runtime import describe_device, resolve_device, versions
    from ..threat_models import get_threat_model

    started = time.perf_counter()
    sizes = sorted(int(s) for s in config.sizes)
    radii = sorted(float(e) for e in config.eps)
    torch_device = resolve_device(config.device)
    workers = 1 if torch_device.type != "cpu" else int(config.workers)
    data = get_dataset(config.dataset, **({"data_dir": config.data_dir} if config.data_dir else {}))
    threat = get_threat_model(data, config.threat_model)
    x_train, _ = data.load("train")
    if sizes[-1] > len(x_train):
        raise RobbenchError(f"the largest size {sizes[-1]} exceeds the {len(x_train)} training examples of {config.dataset}")
    x_test, _ = data.load("test", config.n_test)
    n_robust = min(int(config.robust_examples), len(x_test))
    threads = 1 if torch_device.type == "cpu" else None
    cells = [(size, radius, repeat) for size in sizes for radius in radii for repeat in range(int(config.repeats))]
    runs_by_key: dict[tuple, Run] = {}

    def done(entry: Run) -> None:
        runs_by_key[(entry.size, entry.eps, entry.repeat)] = entry
        if log:
            log(entry)

    torch_threads = torch.get_num_threads()
    try:
        if workers == 1:
            for cell in cells:
                done(_cell(config, *cell, n_robust, str(torch_device), threads))
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            # adversarial training costs attack_steps + 1 times standard training: start the dearest first
            cells.sort(key=lambda c: (c[1] > 0, c[0]), reverse=True)
            with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = [pool.submit(_cell, config, *cell, n_robust, str(torch_device), threads) for cell in cells]
                for future in as_completed(futures):
                    done(future.result())
    finally:
        torch.set_num_threads(torch_threads)
    runs = [runs_by_key[key] for key in sorted(runs_by_key)]
    monitor = PGDAttack(steps=ROBUST_PGD_STEPS)
    table, comparisons = _summarise(runs, sizes, radii, config.z)
    for entry in runs:
        entry.correct = None
    return SampleSizeResult(
        paper=PAPER,
        dataset={"name": config.dataset, "train_size": len(x_train), "n_test": len(x_test), "num_classes": data.num_classes},
        threat_model={"name": threat.name, "norm": threat.norm, "eps": threat.eps},
        config={
            "preset": config.preset,
            "sizes": sizes,
            "eps": radii,
            "steps": int(config.steps),
            "batch_size": int(config.batch_size),
            "optimizer": f"SGD, momentum {config.momentum:g}, weight decay {config.weight_decay:g}, lr {config.lr:g} with cosine decay",
            "lr": config.lr,
            "momentum": config.momentum,
            "weight_decay": config.weight_decay,
            "architecture": config.architecture,
            "architecture_kwargs": config.architecture_kwargs or {},
            "train_attack": f"pgd-at: PGD {threat.norm}, {int(config.attack_steps)} steps of 2.5*eps/steps, random start",
            "attack_steps": int(config.attack_steps),
            "subsets": "nested, class-balanced prefixes of one seeded order of the training split",
            "robust_examples": n_robust,
            "robust_attack": {"name": "pgd", "steps": monitor.steps, "restarts": monitor.restarts, "eps": threat.eps},
            "repeats": int(config.repeats),
            "seed": config.seed,
            "z": config.z,
            "device": describe_device(torch_device) if torch_device.type != "cpu"
            else f"cpu ({workers} worker process{'es' if workers > 1 else ''}, 1 thread each)",
            "workers": workers,
            "threads_per_model": threads,
        },
        versions=versions(),
        runs=runs,
        table=table,
        comparisons=comparisons,
        verdict=_verdict(comparisons),
        wall_time_s=round(time.perf_counter() - started, 3),
    )


def _summarise(runs: list[Run], sizes: list[int], radii: list[float], z: float) -> tuple[list[Row], list[Comparison]]:
    """Mean accuracies per (size, eps); per size and eps > 0 the difference to eps = 0 with its paired SE."""
    table, comparisons = [], []
    for size in sizes:
        row = Row(size, {})
        masks = {}
        for radius in radii:
            group = [r for r in runs if r.size == size and r.eps == radius]
            masks[radius] = torch.stack([r.correct.double() for r in group]).mean(0)
            row.by_eps[f"{radius:g}"] = {
                key: sum(getattr(r, key) for r in group) / len(group)
                for key in ("standard_accuracy", "robust_accuracy", "train_accuracy")
            } | {"repeats": len(group), "standard_accuracy_min": min(r.standard_accuracy for r in group),
                 "standard_accuracy_max": max(r.standard_accuracy for r in group)}
        table.append(row)
        base = masks[0.0]
        for radius in radii[1:]:
            d = masks[radius] - base  # per test image: difference of (mean) correctness
            n = d.numel()
            diff = float(d.mean())
            se = float(d.std(unbiased=True)) / math.sqrt(n) if n > 1 else 0.0
            effect = "helps" if diff > z * se else "costs" if diff < -z * se else "no measurable difference"
            comparisons.append(Comparison(size, radius, diff, se, effect))
    return table, comparisons


def _crossing(points: list[Comparison]) -> float | None:
    """Training size where the difference changes sign from + to − (log-linear interpolation), if it does."""
    for a, b in zip(points, points[1:]):
        if a.difference > 0 >= b.difference:
            la, lb = math.log10(a.size), math.log10(b.size)
            t = a.difference / (a.difference - b.difference)
            return round(10 ** (la + t * (lb - la)), 1)
    return None


def _verdict(comparisons: list[Comparison]) -> list[Verdict]:
    """Per training radius: does adversarial training help at the smallest size, cost at the largest, cross?"""
    verdicts = []
    for radius in sorted({c.eps for c in comparisons}):
        points = [c for c in comparisons if c.eps == radius]
        first, last = points[0], points[-1]
        verdicts.append(Verdict(
            radius, [c.size for c in points if c.effect == "helps"], [c.size for c in points if c.effect == "costs"],
            first.effect == "helps", last.effect == "costs", first.effect == "helps" and last.effect == "costs",
            _crossing(points),
        ))
    return verdicts
