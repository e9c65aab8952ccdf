"""``robbench explain MODEL_YAML...``: do robust models depend on different features? (Tsipras et al. 2019, Sec. 4)

For the same test images and several models side by side, three pictures and a number for each,
so the paper's claims can be checked without eyes:

(a) **Loss gradient w.r.t. the input** (cross-entropy to the true label), shown as in the paper:
    per image, clipped to ±3 standard deviations around its mean and rescaled to [0, 1].
    Numbers: the fraction of the gradient's energy (sum of squares) on the object (pixels above
    ``object_threshold``), next to the object's share of the pixels (what an evenly spread
    gradient would get), and the Pearson correlation between |gradient| and the image.
    Claim: higher for robust models (their gradients align with the object).
(b) **Large-ε targeted adversarial examples**: robbench's one PGD (``pgd_perturb``) maximising
    minus the cross-entropy to the target class, ``steps`` steps of 2.5·ε/steps from the image
    itself (no random start), in an L2 ball of radius ``eps`` (default 4, far above the training
    radius), towards every other class. Numbers: how often an independent *judge* model
    recognises the target class in them, and the cosine between the perturbation and the
    difference of the target's and the source's class-mean images (model-free).
    Claim: higher for robust models (their large-ε examples look like the target class).
(c) **Interpolations** x + t·(x_adv − x), t in [0, 1]. Numbers: the agreement of the explained
    model with the judge along the path (a model whose decisions follow the image's visible
    content agrees with an independent model), where on the path the model switches to the
    target, and how monotone its target probability is.
    Claim: higher agreement for robust models.

The judge (protocol): a standard ``small-cnn`` trained inside the command, with its own seed, on
test images ``holdout``..end (the images the reference baselines never trained on: they trained
on the training split), so it shares no training data with the explained models; the explained
images are the first ``n_per_class`` images of each class in test images 0..holdout−1, which the
judge never saw. Its accuracy on them is reported. A judge is a standard model, and
adversarial perturbations found on a standard model transfer partly to another standard model:
that inflates the standard model's (b) and (c) scores, never the robust one's, so the test is
conservative in the paper's direction. ``--judge MODEL_YAML`` uses a given model instead.

Each comparison between a robust model (``metadata.training`` other than ``standard``) and a
standard one is paired over the same images and targets, with its standard error. On the CPU
everything runs on one thread, so the numbers do not depend on the machine's core count.

``run(ExplainConfig(...))`` returns an ``ExplainResult``; ``explain_page`` renders it. The
measurements themselves are in ``explain_metrics``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from ..attacks.pgd import pgd_step_size
from ..errors import RobbenchError
from .common import PRIVATE, ReportConfig, one_thread, paper
from .explain_metrics import (
    energy_on_object, first_true, input_gradients, interpolate, monotonicity, object_mask, pearson, probabilities,
    rescale_gradient, select_images, targeted_large_eps,
)

PAPER = paper("Section 4")

#: metric -> (label, picture, the paper's claimed direction: +1 higher for robust models, 0 none)
METRICS: dict[str, tuple[str, str, int]] = {
    "gradient_energy_on_object": ("gradient energy on the object", "a", +1),
    "object_area": ("object's share of the pixels (energy of an evenly spread gradient)", "a", 0),
    "gradient_image_correlation": ("correlation of the absolute gradient with the image", "a", +1),
    "model_target_rate": ("explained model predicts the target (attack success)", "b", 0),
    "judge_target_rate": ("judge recognises the target class", "b", +1),
    "judge_source_rate": ("judge still sees the source class", "b", 0),
    "judge_target_rate_where_reached": ("judge recognises the target, on pairs the model was moved to the target", "b", +1),
    "class_mean_cosine": ("cosine(perturbation, target mean − source mean)", "b", +1),
    "path_agreement": ("model agrees with the judge along the path", "c", +1),
    "path_agreement_where_reached": ("model agrees with the judge along the path, on pairs the model was moved to the target", "c", +1),
    "model_flip_t": ("t where the model first predicts the target", "c", 0),
    "model_monotonicity": ("monotonicity of the model's target probability", "c", 0),
}
DEFAULT_Z = 2.0


class ExplainConfig(ReportConfig):
    """``robbench explain``'s settings (the defaults are the committed page's)."""

    model_yamls: tuple[str | Path, ...]  # the models compared, each a model.yaml
    classes: tuple[int, ...] | None = None  # default: all of the dataset's
    n_per_class: int = Field(default=10, ge=1)
    eps: float = Field(default=4.0, gt=0, allow_inf_nan=False)
    norm: Literal["L2", "Linf"] = "L2"
    steps: int = Field(default=100, ge=1)
    n_interpolation: int = Field(default=11, ge=2)
    object_threshold: float = 0.1
    holdout: int = Field(default=2000, ge=1)
    judge: str | Path | None = None  # a MODEL_YAML; default: a judge trained inside the command
    judge_steps: int = Field(default=1500, ge=1)
    judge_architecture: str = "small-cnn"
    seed: int = Field(default=0, ge=0)
    device: str = "auto"
    data_dir: str | None = None
    z: float = Field(default=DEFAULT_Z, gt=0)

    @field_validator("model_yamls")
    @classmethod
    def _some_model(cls, model_yamls: tuple[str | Path, ...]) -> tuple[str | Path, ...]:
        if not model_yamls:
            raise ValueError("pass at least one MODEL_YAML")
        return model_yamls


@dataclass
class Explained:
    name: str
    training: str
    path: str
    model: nn.Module


@dataclass
class ModelNumbers:
    name: str
    training: str
    model_yaml: str
    clean_accuracy_on_explained_images: float
    perturbation_l2: float
    metrics: dict[str, dict[str, Any]]  # metric -> mean, standard_error, n
    seconds: float


@dataclass
class Comparison:
    """One claimed metric, a robust model against a standard one, paired over the same images/pairs."""

    robust: str
    standard: str
    metric: str
    picture: str
    label: str
    n: int
    claimed_direction: str
    robust_value: float | None
    standard_value: float | None
    difference: float | None
    standard_error: float | None
    outcome: str


@dataclass
class ExplainResult:
    paper: str
    dataset: dict[str, Any]
    config: dict[str, Any]  # the settings as run, with what they resolved to
    judge: dict[str, Any]
    versions: dict[str, str]
    models: list[ModelNumbers]
    comparisons: list[Comparison]
    pair_image: list[int]
    pair_target: list[int]
    wall_time_s: float
    pictures: dict[str, Any] = field(default_factory=dict, metadata=PRIVATE)  # the tensors the PNGs show


def run(config: ExplainConfig, log: Callable[[str], None] | None = None) -> ExplainResult:
    """Every number, and the tensors the pictures need (``pictures``, not in the JSON).

    On the CPU the work runs on one thread (``one_thread``), so the judge's training and every
    number are the same whatever the machine's core count.
    """
    from ..runtime import resolve_device

    device = resolve_device(config.device)
    with one_thread(device):
        return _run(config, device, log or (lambda message: None))


def _run(config: ExplainConfig, torch_device: torch.device, say) -> ExplainResult:
    from ..attacks import derive_seed
    from ..config import load_model_spec
    from ..evaluation import predict
    from ..loader import load_submission
    from ..runtime import describe_device, versions
    from ..threat_models import get_threat_model
    from ..training.steps import train_new_model

    started = time.perf_counter()
    c = config
    model_yamls, data_dir, judge, holdout, seed, z = c.model_yamls, c.data_dir, c.judge, c.holdout, c.seed, c.z
    n_per_class, eps, norm, steps, object_threshold = c.n_per_class, c.eps, c.norm, c.steps, c.object_threshold
    judge_steps, judge_architecture, n_interpolation, classes = c.judge_steps, c.judge_architecture, c.n_interpolation, c.classes
    explained, dataset = [], None
    for path in model_yamls:
        loaded = load_submission(load_model_spec(path), data_dir)
        if dataset is not None and loaded.dataset.name != dataset.name:
            raise RobbenchError(f"{path}: dataset {loaded.dataset.name!r}, but the first model's is {dataset.name!r}; "
                                "explain models of one dataset together")
        dataset = dataset or loaded.dataset
        explained.append(Explained(loaded.spec.name, loaded.spec.metadata.training, str(path), loaded.model.to(torch_device).eval()))
    if len({e.name for e in explained}) != len(explained):
        raise RobbenchError("two models have the same name; explain each model once")
    classes = list(range(dataset.num_classes)) if classes is None else [int(c) for c in classes]
    if len(classes) < 2 or len(set(classes)) != len(classes) or not all(0 <= c < dataset.num_classes for c in classes):
        raise RobbenchError(f"must be at least two distinct classes in 0..{dataset.num_classes - 1}, got {classes}", parameter="classes")

    x_all, y_all = dataset.load("test")
    if not 0 < holdout < len(x_all):
        raise RobbenchError(f"must lie in 1..{len(x_all) - 1}, got {holdout}", parameter="holdout")
    index = select_images(y_all, classes, n_per_class, holdout)
    x, y = x_all[index].to(torch_device), y_all[index].to(torch_device)
    x_judge, y_judge = x_all[holdout:], y_all[holdout:]
    names = [dataset.class_name(label) for label in range(dataset.num_classes)]
    # the radius the reference baselines train at: the dataset's standard L-inf one
    linf = get_threat_model(dataset, "linf")

    # the judge
    if judge is None:
        judge_seed = derive_seed(seed, "explain", "judge")
        say(f"training the judge ({judge_architecture}, {judge_steps} steps on test images {holdout}..{len(x_all) - 1})")
        judge_model = train_new_model(
            x_judge, y_judge, dataset=dataset, architecture=judge_architecture, architecture_kwargs=None,
            threat=None, steps=judge_steps, batch_size=64, lr=0.05, momentum=0.9, weight_decay=5e-4,
            attack_steps=1, seed=judge_seed, device=torch_device,
        )
        judge_info = {
            "source": "trained inside the command",
            "name": f"judge-{judge_architecture}-standard",
            "architecture": judge_architecture,
            "training": f"standard, {judge_steps} SGD steps of 64 (momentum 0.9, weight decay 5e-4, lr 0.05 cosine)",
            "train_data": f"test images {holdout}..{len(x_all) - 1} ({len(x_judge)}), disjoint from the explained images",
            "seed": judge_seed,
        }
    else:
        loaded = load_submission(load_model_spec(judge), data_dir)
        if loaded.dataset.name != dataset.name:
            raise RobbenchError(f"the judge {judge} is a {loaded.dataset.name} model; the explained models are {dataset.name}")
        judge_model = loaded.model.to(torch_device).eval()
        judge_info = {"source": str(judge), "name": loaded.spec.name, "architecture": loaded.spec.architecture,
                      "training": loaded.spec.metadata.training, "train_data": "as its model.yaml says", "seed": None}
    judge_model.eval()
    holdout_correct = predict(judge_model, x_all[:holdout], 1000, torch_device) == y_all[:holdout]
    judge_info["accuracy_on_explained_images"] = int((predict(judge_model, x, 1000, torch_device) == y.cpu()).sum()) / len(x)
    judge_info["accuracy_on_test_0_to_holdout"] = int(holdout_correct.sum()) / holdout

    # (source image, target) pairs: every image towards every other selected class
    pair_image = torch.tensor([i for i in range(len(x)) for t in classes if t != int(y[i])], device=torch_device)
    pair_target = torch.tensor([t for i in range(len(x)) for t in classes if t != int(y[i])], device=torch_device)
    xs, ys = x[pair_image], y[pair_image]
    ts = [i / (n_interpolation - 1) for i in range(n_interpolation)]
    class_means = torch.stack([x_judge[y_judge == c].mean(0) for c in range(dataset.num_classes)]).to(torch_device)
    mean_direction = (class_means[pair_target] - class_means[ys]).flatten(1)
    mask = object_mask(x, object_threshold)

    results: list[ModelNumbers] = []
    per_example, pictures = {}, {"x": x.cpu(), "y": y.cpu(), "models": {}}
    for e in explained:
        t0 = time.perf_counter()
        say(f"{e.name}: gradients, {len(pair_target)} targeted PGD runs of {steps} steps, interpolations")
        clean_correct = predict(e.model, x, 1000, torch_device) == y.cpu()
        grad = input_gradients(e.model, x, y)
        x_adv = targeted_large_eps(e.model, xs, pair_target, eps=eps, steps=steps, norm=norm, value_range=dataset.value_range)
        delta = (x_adv - xs).flatten(1)
        path = interpolate(xs, x_adv, ts)  # (T, P, C, H, W)
        flat_path = path.flatten(0, 1)
        p_model = probabilities(e.model, flat_path).view(len(ts), len(xs), -1)
        p_judge = probabilities(judge_model, flat_path).view(len(ts), len(xs), -1)
        target_index = pair_target.cpu().view(1, -1, 1).expand(len(ts), -1, 1)
        model_pred, judge_pred = p_model.argmax(2), p_judge.argmax(2)  # (T, P)
        p_model_target = p_model.gather(2, target_index).squeeze(2).T  # (P, T)
        target_cpu, source_cpu = pair_target.cpu(), ys.cpu()
        flip = first_true((model_pred == target_cpu).T, ts)
        reached = model_pred[-1] == target_cpu
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        agreement = (model_pred == judge_pred).double().mean(0)
        judge_target = (judge_pred[-1] == target_cpu).double()
        values = {
            "gradient_energy_on_object": energy_on_object(grad, x, object_threshold).cpu(),
            "object_area": mask.flatten(1).double().mean(1).cpu(),
            "gradient_image_correlation": pearson(grad.abs(), x).cpu(),
            "model_target_rate": reached.double(),
            "judge_target_rate": judge_target,
            "judge_source_rate": (judge_pred[-1] == source_cpu).double(),
            "judge_target_rate_where_reached": torch.where(reached, judge_target, nan),
            "class_mean_cosine": F.cosine_similarity(delta.double(), mean_direction.double(), dim=1).cpu(),
            "path_agreement": agreement,
            "path_agreement_where_reached": torch.where(reached, agreement, nan),
            "model_flip_t": flip,
            "model_monotonicity": monotonicity(p_model_target),
        }
        per_example[e.name] = values
        summary = {}
        for key, v in values.items():
            finite = v[~torch.isnan(v)]
            summary[key] = {
                "mean": float(finite.mean()) if finite.numel() else None,
                "standard_error": float(finite.std(unbiased=True)) / math.sqrt(finite.numel()) if finite.numel() > 1 else None,
                "n": int(finite.numel()),
            }
        results.append(ModelNumbers(
            e.name, e.training, e.path, int(clean_correct.sum()) / len(x), float(delta.norm(dim=1).mean()), summary,
            round(time.perf_counter() - t0, 2),
        ))
        pictures["models"][e.name] = {
            "gradient": rescale_gradient(grad).cpu(),
            "x_adv": x_adv.cpu(),
            "path": path.cpu(),
            "model_pred": model_pred,
            "judge_pred": judge_pred,
        }

    return ExplainResult(
        paper=PAPER,
        dataset={"name": dataset.name, "class_names": list(names), "standard_linf_eps": linf.eps,
                 "input_shape": list(dataset.input_shape)},
        config={
            "classes": classes,
            "n_per_class": n_per_class,
            "n_images": len(x),
            "n_pairs": len(pair_target),
            "image_indices": index.tolist(),
            "holdout": holdout,
            "gradient": "d CE(model(x), true label)/dx; shown clipped to mean ± 3 std and rescaled to [0, 1] per image",
            "object_threshold": object_threshold,
            "adversarial": {"norm": norm, "eps": eps, "steps": steps, "step_size": pgd_step_size(eps, steps),
                            "loss": "minus cross-entropy to the target (targeted)", "start": "the image itself",
                            "returned": "last iterate"},
            "interpolation_t": ts,
            "seed": seed,
            "z": z,
            "device": describe_device(torch_device),
        },
        judge=judge_info,
        versions=versions(),
        models=results,
        comparisons=_compare(results, per_example, z),
        pair_image=pair_image.cpu().tolist(),
        pair_target=pair_target.cpu().tolist(),
        wall_time_s=round(time.perf_counter() - started, 3),
        pictures=pictures,
    )


def _compare(results: list[ModelNumbers], per_example: dict[str, dict[str, torch.Tensor]], z: float) -> list[Comparison]:
    """Every robust (non-standard) model against every standard one, per claimed metric, paired by example."""
    standard = [r.name for r in results if r.training == "standard"]
    robust = [r.name for r in results if r.training != "standard"]
    comparisons = []
    for r in robust:
        for s in standard:
            for key, (label, picture, direction) in METRICS.items():
                if direction == 0:
                    continue
                a, b = per_example[r][key], per_example[s][key]
                keep = ~(torch.isnan(a) | torch.isnan(b))
                d = (a - b)[keep]
                n = int(d.numel())
                pair = dict(robust=r, standard=s, metric=key, picture=picture, label=label, n=n,
                            claimed_direction="higher for the robust model")
                if n == 0:
                    comparisons.append(Comparison(**pair, robust_value=None, standard_value=None, difference=None,
                                                  standard_error=None, outcome="no pairs to compare"))
                    continue
                diff = float(d.mean())
                se = float(d.std(unbiased=True)) / math.sqrt(n) if n > 1 else 0.0
                signed = diff * direction
                comparisons.append(Comparison(
                    **pair, robust_value=float(a[keep].mean()), standard_value=float(b[keep].mean()), difference=diff,
                    standard_error=se, outcome="as the paper claims" if signed > z * se
                    else "opposite to the paper's claim" if signed < -z * se else "no measurable difference",
                ))
    return comparisons
