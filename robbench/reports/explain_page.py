"""The page of ``robbench explain``: markdown, three PNGs and the console summary of an ``ExplainResult``."""

from __future__ import annotations

import math

import torch

from .common import Summary, Table, generated, new_figure, png_bytes
from .explain import METRICS, ExplainResult


def _baseline_reach(dataset: dict) -> str:
    """The L2 reach of the radius the reference baselines train at (the dataset's standard L-inf one)."""
    eps, shape = dataset["standard_linf_eps"], dataset["input_shape"]
    reach = eps * math.sqrt(math.prod(shape))
    return f"the baselines were trained at L∞ ε = {eps:g}, i.e. an L2 reach of at most {reach:.1f} on {'×'.join(map(str, shape[-2:]))}"


#: metrics defined on a subset of the pairs (NaN elsewhere); a comparison uses the pairs where both models have a value
_RESTRICTED = ("model_flip_t", "judge_target_rate_where_reached", "path_agreement_where_reached")
#: metrics shown as plain numbers; the others are rates shown in percent
_RATIOS = ("class_mean_cosine", "gradient_image_correlation", "model_flip_t", "model_monotonicity")


def _fmt(value: float | None, key: str) -> str:
    if value is None:
        return "—"
    if key in _RATIOS:
        return f"{value:.3f}"
    return f"{100 * value:.1f} %"


def render_markdown(result: ExplainResult, png_names: dict[str, str]) -> str:
    config, judge, models = result.config, result.judge, result.models
    adv = config["adversarial"]
    norm = "L2" if adv["norm"] == "L2" else "L∞"
    names = result.dataset["class_names"]
    lines = [
        generated("explain"),
        "# Robust models depend on different features: gradients, large-ε adversarial examples, interpolations",
        "",
        f"{result.paper}. Dataset `{result.dataset['name']}`: the first {config['n_per_class']} test images of "
        f"each of the classes {', '.join(names[c] for c in config['classes'])} among test images "
        f"0..{config['holdout'] - 1} ({config['n_images']} images; {config['n_pairs']} image/target pairs). "
        f"Pictures show the first image of each class.",
        "",
        "| model | training | clean accuracy on these images |",
        "|---|---|---:|",
    ]
    for m in models:
        lines.append(f"| `{m.name}` | {m.training} | {100 * m.clean_accuracy_on_explained_images:.1f} % |")
    lines += [
        "",
        "## Protocol",
        "",
        f"- **(a) Gradient**: {config['gradient']}. *Energy on the object*: the share of Σ gradient² on pixels "
        f"above {config['object_threshold']:g} (the object; the background is black), to be read against the "
        "object's share of the pixels, which an evenly spread gradient would get. *Correlation*: Pearson, "
        "|gradient| against the image, per image.",
        f"- **(b) Large-ε targeted adversarial examples**: robbench's PGD (`pgd_perturb`) maximising "
        f"{adv['loss']}, {adv['steps']} steps of {adv['step_size']:.4g} from {adv['start']}, {norm} ball of radius "
        f"ε = {adv['eps']:g} ({_baseline_reach(result.dataset)}), "
        "towards every other class; the last iterate. *Judge recognises the target*: the judge's prediction on "
        "the example is the target class. *Cosine*: between the perturbation and (mean image of the target "
        "class − mean image of the source class), the class means taken over the judge's training images; "
        "model-free.",
        f"- **(c) Interpolation** x + t·(x_adv − x) at t = {', '.join(f'{t:g}' for t in config['interpolation_t'])}. "
        "*Agreement*: the share of the path on which the explained model and the judge predict the same class. "
        "*Flip t*: the first t at which the model predicts the target. *Monotonicity*: (p(1) − p(0)) / total "
        "variation of the model's target probability along the path (1: never decreases).",
        f"- **The judge** (`{judge['name']}`, {judge['source']}): {judge['architecture']}, {judge['training']}; "
        f"data: {judge['train_data']}. Accuracy on the explained images {100 * judge['accuracy_on_explained_images']:.1f} %, "
        f"on test images 0..{config['holdout'] - 1} {100 * judge['accuracy_on_test_0_to_holdout']:.1f} %. "
        "It shares no training data with the baselines (they trained on the training split). It is itself a "
        "standard model, so perturbations crafted on a standard model transfer to it more easily than "
        "perturbations crafted on a robust one: that favours the standard model in (b) and (c), against the "
        "paper's claim.",
        "",
        "## Numbers",
        "",
        "Means over the images (a) or the image/target pairs (b, c); ± one standard error.",
        "",
        "| picture | metric | " + " | ".join(f"`{m.name}` ({m.training})" for m in models) + " | paper: robust is |",
        "|---|---|" + "---:|" * len(models) + "---|",
    ]
    for key, (label, picture, direction) in METRICS.items():
        cells = []
        for m in models:
            s = m.metrics[key]
            se = "" if s["standard_error"] is None else (
                f" ± {s['standard_error']:.3f}" if key in _RATIOS else f" ± {100 * s['standard_error']:.1f}"
            )
            extra = "" if key not in _RESTRICTED else f" (n = {s['n']})"
            cells.append(_fmt(s["mean"], key) + se + extra)
        lines.append(f"| ({picture}) | {label} | " + " | ".join(cells) + f" | {'higher' if direction > 0 else '—'} |")
    lines += [
        "",
        "Mean L2 norm of the large-ε perturbations: "
        + ", ".join(f"`{m.name}` {m.perturbation_l2:.3f}" for m in models) + f" (ε = {adv['eps']:g}).",
        "",
        "## Verdict",
        "",
    ]
    comparisons = result.comparisons
    if not comparisons:
        lines += [
            "No verdict: it needs at least one model with `metadata.training: standard` and one with other training "
            "among the models passed.",
            "",
        ]
    else:
        lines += [
            f"Paired differences (robust − standard) over the same images/pairs (for the metrics restricted to pairs "
            f"the model was moved to the target: the pairs where both models were); a difference counts when it "
            f"exceeds {config['z']:g} standard errors. *pairs*: images (a) or image/target pairs (b, c) compared.",
            "",
            "| robust | standard | picture | metric | pairs | robust | standard | difference ± SE | outcome |",
            "|---|---|---|---|---:|---:|---:|---:|---|",
        ]
        for c in comparisons:
            key = c.metric
            scale = 1 if key in _RATIOS else 100
            unit = "" if scale == 1 else " pts"
            difference = "—" if c.difference is None else (
                f"{scale * c.difference:+.3f} ± {scale * c.standard_error:.3f}{unit}")
            lines.append(
                f"| `{c.robust}` | `{c.standard}` | ({c.picture}) | {c.label} | {c.n} | {_fmt(c.robust_value, key)} | "
                f"{_fmt(c.standard_value, key)} | {difference} | {c.outcome} |"
            )
        lines.append("")
        for picture, title in (("a", "gradients align with the object"),
                               ("b", "large-ε examples look like the target class"),
                               ("c", "interpolations follow the image's content")):
            group = [c for c in comparisons if c.picture == picture]
            outcomes = {c.outcome for c in group}
            each = "; ".join(f"{c.label} ({c.robust} vs {c.standard}): {c.outcome}" for c in group) + "."
            if outcomes == {"as the paper claims"}:
                word = "**Yes**: every number separates robust from standard models in the paper's direction."
            elif outcomes == {"opposite to the paper's claim"}:
                word = "**No**: every number goes against the paper's claim."
            elif outcomes == {"no measurable difference"}:
                word = "**No**: the numbers do not separate robust from standard models."
            elif "as the paper claims" not in outcomes:
                word = "**No**: " + each
            else:
                word = "**Partly**: " + each
            lines.append(f"- ({picture}) *{title}*: {word}")
        lines.append("")
        notes = []
        for m in models:
            reach = m.metrics["model_target_rate"]["mean"]
            if reach is not None and reach < 0.9:
                notes.append(
                    f"- The large-ε attack moved `{m.name}` to the target class on only {100 * reach:.1f} % of the "
                    f"pairs (gradient energy on the object: {100 * m.metrics['gradient_energy_on_object']['mean']:.1f} %); "
                    "on the others its examples keep (or lose) the source class without becoming the target. The rows "
                    "*on pairs the model was moved to the target* compare the models only where both were moved."
                )
        if notes:
            notes.append(
                "- A model the attack cannot move keeps agreeing with the judge along the path (both still see the "
                "source), so the unrestricted path agreement favours such a model for a reason other than perceptual "
                "alignment; read it together with the restricted row."
            )
            lines += ["Caveats read off the numbers:", "", *notes, ""]
    if png_names:
        captions = {
            "gradients": "(a) Input gradients, clipped to ±3 std and rescaled to [0, 1]; first column the image, then one column per model.",
            "adversarial": f"(b) Large-ε ({norm}, ε = {adv['eps']:g}) targeted adversarial examples: rows are the source images, "
                           "columns the target classes (the diagonal holds the image itself); one panel per model.",
            "interpolation": "(c) Interpolations from the image (t = 0) to its large-ε adversarial example (t = 1); above each frame "
                             "the model's / the judge's predicted class.",
        }
        for key, name in png_names.items():
            lines += [f"![{key}]({name})", "", captions[key], ""]
    return "\n".join(lines)


def _show(axes, image: torch.Tensor, title: str | None = None, fontsize: float = 7, ylabel: str | None = None) -> None:
    picture = image.detach().float().clamp(0, 1)
    picture = picture[0] if picture.shape[0] == 1 else picture.permute(1, 2, 0)
    axes.imshow(picture.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes.set_xticks([])
    axes.set_yticks([])
    if title is not None:
        axes.set_title(title, fontsize=fontsize, pad=2)
    if ylabel is not None:
        axes.set_ylabel(ylabel, fontsize=fontsize)


def _shown(result: ExplainResult) -> list[int]:
    """Positions (in the explained images) of the first image of each class."""
    n = result.config["n_per_class"]
    return [i * n for i in range(len(result.config["classes"]))]


def render_gradients_png(result: ExplainResult) -> bytes:
    pictures, names = result.pictures, result.dataset["class_names"]
    models = list(pictures["models"])
    rows = _shown(result)
    height = 1.1 * len(rows) + 0.6
    figure = new_figure(1.4 * (len(models) + 1) + 0.4, height)
    grid = figure.subplots(len(rows), len(models) + 1, squeeze=False)
    for r, i in enumerate(rows):
        _show(grid[r][0], pictures["x"][i], "image" if r == 0 else None, ylabel=names[int(pictures["y"][i])])
        for c, name in enumerate(models):
            _show(grid[r][c + 1], pictures["models"][name]["gradient"][i], name if r == 0 else None, fontsize=6)
    figure.suptitle("(a) loss gradient w.r.t. the input", fontsize=9)
    figure.tight_layout(pad=0.3, rect=(0, 0, 1, 1 - 0.35 / height))
    return png_bytes(figure)


def render_adversarial_png(result: ExplainResult) -> bytes:
    pictures, names, config = result.pictures, result.dataset["class_names"], result.config
    classes, models = config["classes"], list(pictures["models"])
    rows = _shown(result)
    pair_image, pair_target = result.pair_image, result.pair_target
    lookup = {(i, t): p for p, (i, t) in enumerate(zip(pair_image, pair_target))}
    k = len(classes)
    height = 0.62 * len(rows) + 0.9
    figure = new_figure(0.62 * k * len(models) + 0.3 * len(models), height)
    figure.subplots_adjust(left=0.03, right=0.995, bottom=0.01, top=1 - 0.75 / height)
    outer = figure.add_gridspec(1, len(models), wspace=0.08)
    for m, name in enumerate(models):
        inner = outer[m].subgridspec(len(rows), k, wspace=0.04, hspace=0.04)
        for r, i in enumerate(rows):
            for c, target in enumerate(classes):
                axes = figure.add_subplot(inner[r, c])
                source = int(pictures["y"][i])
                image = pictures["x"][i] if target == source else pictures["models"][name]["x_adv"][lookup[(i, target)]]
                title = f"→{names[target]}" if r == 0 else None
                _show(axes, image, title, fontsize=5, ylabel=names[source] if c == 0 else None)
        left, right = outer[m].get_position(figure).x0, outer[m].get_position(figure).x1
        figure.text((left + right) / 2, 1 - 0.32 / height, name, ha="center", va="top", fontsize=8)
    adv = config["adversarial"]
    figure.suptitle(f"(b) targeted adversarial examples, {adv['norm']} ε = {adv['eps']:g}", fontsize=9, y=1 - 0.04 / height,
                    x=0.01, ha="left", va="top")
    return png_bytes(figure)


def interpolation_rows(result: ExplainResult, n_images: int = 5) -> list[tuple[int, int]]:
    """(pair index, shown-image position) per picture row: the first images, each towards the next class."""
    pair_image, pair_target = result.pair_image, result.pair_target
    classes = result.config["classes"]
    y = result.pictures["y"]
    rows = []
    for i in _shown(result)[:n_images]:
        source = int(y[i])
        target = classes[(classes.index(source) + 1) % len(classes)]
        rows.append((next(p for p, (a, t) in enumerate(zip(pair_image, pair_target)) if a == i and t == target), i))
    return rows


def frame_title(t: float, model_class: str, judge_class: str) -> str:
    """Above an interpolation frame: its t, then the model's and the judge's predicted class, in full."""
    return f"t={t:.2g}\n{model_class}\n/ {judge_class}"


def render_interpolation_png(result: ExplainResult, n_images: int = 5) -> bytes:
    pictures, names = result.pictures, result.dataset["class_names"]
    ts = result.config["interpolation_t"]
    models = list(pictures["models"])
    rows = interpolation_rows(result, n_images)
    n_rows = len(rows) * len(models)
    height = 1.15 * n_rows + 0.6  # three title lines per frame
    figure = new_figure(0.85 * len(ts) + 1.6, height)
    grid = figure.subplots(n_rows, len(ts), squeeze=False)
    target_of = result.pair_target
    for r, (pair, i) in enumerate(rows):
        for m, name in enumerate(models):
            row = r * len(models) + m
            data = pictures["models"][name]
            for c, t in enumerate(ts):
                mp, jp = int(data["model_pred"][c, pair]), int(data["judge_pred"][c, pair])
                label = f"{name}\n{names[int(pictures['y'][i])]}→{names[target_of[pair]]}" if c == 0 else None
                _show(grid[row][c], data["path"][c, pair], frame_title(t, names[mp], names[jp]), fontsize=5,
                      ylabel=label)
    figure.suptitle("(c) interpolation image → large-ε example; above each frame: model / judge prediction", fontsize=8)
    figure.tight_layout(pad=0.3, rect=(0, 0, 1, 1 - 0.3 / height))
    return png_bytes(figure)


def figures(result: ExplainResult) -> dict:
    return {"gradients": render_gradients_png, "adversarial": render_adversarial_png, "interpolation": render_interpolation_png}


def summary(result: ExplainResult) -> Summary:
    """Every metric's mean per model, and every comparison's outcome."""
    table = Table(f"explain: {result.config['n_images']} images, {result.config['n_pairs']} image/target pairs",
                  ["metric"] + [f"{m.name} ({m.training})" for m in result.models])
    for key, (label, picture, _) in METRICS.items():
        values = [m.metrics[key]["mean"] for m in result.models]
        table.rows.append([f"({picture}) {label}"] + ["—" if v is None else f"{v:.3f}" for v in values])
    lines = [f"({c.picture}) {c.label}: {c.robust} vs {c.standard}: {c.outcome}" for c in result.comparisons]
    return Summary([table], lines, [])
