"""The page of ``robbench sample-size``: markdown, the plot and the console summary of a ``SampleSizeResult``."""

from __future__ import annotations

from ..formats import percent
from .common import Summary, Table, generated, new_figure, percent_axis, png_bytes
from .sample_size import Run, SampleSizeResult



def _signed(value: float) -> str:
    return f"{100 * value:+.2f}"


def _eps_name(radius: float) -> str:
    return "standard (ε = 0)" if radius == 0 else f"PGD-AT ε = {radius:g}"


def render_markdown(result: SampleSizeResult, png_names: dict[str, str]) -> str:
    config, threat, data = result.config, result.threat_model, result.dataset
    radii = config["eps"]
    norm = "L∞" if threat["norm"] == "Linf" else "L2"
    repeats = config["repeats"]
    lines = [
        generated("sample-size"),
        "# Sample size: adversarial training with few and with many samples",
        "",
        f"{result.paper}.",
        "",
        f"Dataset `{data['name']}`; architecture `{config['architecture']}`; training subsets: {config['subsets']} "
        f"(sizes {', '.join(str(s) for s in config['sizes'])} of {data['train_size']}). Every model gets the same "
        f"{config['steps']} SGD steps on minibatches of min({config['batch_size']}, n) ({config['optimizer']}), "
        f"so small sets are trained as long as large ones. Adversarial training: {norm} PGD-AT "
        f"({config['attack_steps']} steps of 2.5·ε/{config['attack_steps']}, random start) at ε ∈ "
        f"{{{', '.join(f'{e:g}' for e in radii[1:])}}}; ε = 0 is standard training. "
        f"{'One model' if repeats == 1 else f'{repeats} models (different seeds, same subset), averaged,'} per cell; "
        f"preset `{config['preset']}`, seed {config['seed']}, device {config['device']}.",
        "",
        f"*Standard accuracy*: on all {data['n_test']} test images. *Robust accuracy*: PGD-20 at the standard "
        f"{norm} ε = {threat['eps']:g} on the first {config['robust_examples']} test images. *train*: accuracy on "
        "the training subset itself.",
        "",
        "## Standard accuracy (%)",
        "",
        "| training size | " + " | ".join(_eps_name(e) for e in radii) + " | "
        + " | ".join(f"ε = {e:g} minus standard (± SE)" for e in radii[1:]) + " |",
        "|---:|" + "---:|" * (2 * len(radii) - 1),
    ]
    comparisons = {(c.size, c.eps): c for c in result.comparisons}
    for row in result.table:
        cells = [percent(row.by_eps[f"{e:g}"]["standard_accuracy"]) for e in radii]
        diffs = []
        for e in radii[1:]:
            c = comparisons[(row.size, e)]
            mark = {"helps": " ▲", "costs": " ▼"}.get(c.effect, "")
            diffs.append(f"{_signed(c.difference)} ± {100 * c.standard_error:.2f}{mark}")
        lines.append(f"| {row.size} | " + " | ".join(cells + diffs) + " |")
    lines += [
        "",
        f"▲ / ▼: adversarial training measurably raises / lowers standard accuracy (the difference exceeds "
        f"{config['z']:g} paired standard errors of the test sample; "
        + ("training-seed variation is not included)." if repeats == 1 else f"over {repeats} seeds averaged).")
        ,
        "",
        "## Robust and training accuracy (%)",
        "",
        "| training size | " + " | ".join(f"{_eps_name(e)}: robust | {_eps_name(e)}: train" for e in radii) + " |",
        "|---:|" + "---:|---:|" * len(radii),
    ]
    for row in result.table:
        cells = []
        for e in radii:
            cell = row.by_eps[f"{e:g}"]
            cells += [percent(cell["robust_accuracy"]), percent(cell["train_accuracy"])]
        lines.append(f"| {row.size} | " + " | ".join(cells) + " |")
    lines += ["", "## Verdict", ""]
    for v in result.verdict:
        name = f"PGD-AT at ε = {v.eps:g}"
        smallest, largest = config["sizes"][0], config["sizes"][-1]
        c_small, c_large = comparisons[(smallest, v.eps)], comparisons[(largest, v.eps)]
        few = (
            f"with {smallest} samples it **raises** standard accuracy by {100 * c_small.difference:.2f} points"
            if v.helps_at_smallest else
            f"with {smallest} samples it does **not** measurably raise standard accuracy "
            f"({_signed(c_small.difference)} ± {100 * c_small.standard_error:.2f} points)"
        )
        many = (
            f"with {largest} samples it **costs** {-100 * c_large.difference:.2f} points"
            if v.costs_at_largest else
            f"with {largest} samples it does **not** measurably cost standard accuracy "
            f"({_signed(c_large.difference)} ± {100 * c_large.standard_error:.2f} points)"
        )
        if v.crossing_measured:
            shape = (f"The paper's crossing is reproduced: the curves cross at about {v.crossing_size:.0f} training "
                     "samples (log-linear interpolation).")
        else:
            shape = "The paper's crossing (helps with few samples, costs with many) is **not** reproduced by this measurement."
            if v.crossing_size is not None:
                shape += f" The difference changes sign near {v.crossing_size:.0f} samples, but not beyond sampling error at both ends."
        helps = ", ".join(str(s) for s in v.helps_at_sizes) or "none"
        costs = ", ".join(str(s) for s in v.costs_at_sizes) or "none"
        lines.append(f"- **{name}**: {few}; {many}. {shape} Measurably better at sizes: {helps}; measurably worse at: {costs}.")
    lines.append("")
    caveats = []
    if repeats == 1:
        caveats.append(
            "- One model (one seed) per cell: the ± is the test-sample error only. Training-seed variation is not "
            "measured here (`--repeats N` does) and can be larger, above all at the smallest sizes."
        )
    largest = result.table[-1]
    for e in radii[1:]:
        fit = largest.by_eps[f"{e:g}"]["train_accuracy"]
        if fit < 0.9:
            caveats.append(
                f"- With {largest.size} samples the ε = {e:g} model fits only {percent(fit)} % of its own training set "
                f"(standard training: {percent(largest.by_eps['0']['train_accuracy'])} %): {config['steps']} steps may "
                "leave adversarial training, which converges more slowly, short of its best there, so part of its cost "
                "at the large sizes may be the step budget rather than robustness (the `gpu` preset trains longer)."
            )
    if caveats:
        lines += ["Caveats read off the numbers:", "", *caveats, ""]
    if png_names:
        lines += [
            f"![standard accuracy against training-set size]({png_names['']})",
            "",
            "Left: standard accuracy against the training-set size (log scale), one line per training ε. "
            f"Right: robust accuracy (PGD-20, ε = {threat['eps']:g}) of the same models.",
            "",
        ]
    return "\n".join(lines)


def render_png(result: SampleSizeResult) -> bytes:
    """Standard (left) and robust (right) accuracy against log training size, one line per eps; deterministic bytes."""
    config, threat = result.config, result.threat_model
    sizes = [row.size for row in result.table]
    figure = new_figure(10, 4.2)
    colours = ["black", "tab:blue", "tab:orange", "tab:red", "tab:purple", "tab:green", "tab:brown"]
    for panel, (key, label) in enumerate((
        ("standard_accuracy", "standard accuracy (test set)"),
        ("robust_accuracy", f"robust accuracy (PGD-20, ε = {threat['eps']:g})"),
    )):
        axes = figure.add_subplot(1, 2, panel + 1)
        for i, radius in enumerate(config["eps"]):
            values = [row.by_eps[f"{radius:g}"][key] for row in result.table]
            axes.plot(sizes, values, marker="o", color=colours[i % len(colours)], linewidth=1.5,
                      linestyle="-" if radius == 0 else "--", label=_eps_name(radius))
        axes.set_xscale("log")
        axes.set_xticks(sizes)
        axes.set_xticklabels([f"{s:g}" for s in sizes], fontsize=8)
        axes.minorticks_off()
        percent_axis(axes.yaxis)
        axes.set_xlabel("training-set size")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8, loc="best")
    figure.suptitle(
        f"{result.dataset['name']}, {config['architecture']}, {config['steps']} SGD steps per model: "
        "Figure 1 of Tsipras et al. (2019)", fontsize=10,
    )
    figure.tight_layout()
    return png_bytes(figure)


def figures(result: SampleSizeResult) -> dict:
    return {"": render_png}


def run_line(run: Run) -> str:
    """One model's numbers, as it finishes."""
    return (f"n={run.size} eps={run.eps:g}: standard {percent(run.standard_accuracy)}%  robust {percent(run.robust_accuracy)}%  "
            f"train {percent(run.train_accuracy)}%  {run.seconds:.0f}s")


def summary(result: SampleSizeResult) -> Summary:
    """Standard accuracy by size and radius, and the verdict per radius."""
    config = result.config
    table = Table(
        f"{result.dataset['name']}: standard accuracy % by training-set size ({config['steps']} steps per model)",
        ["size"] + ["standard training" if e == 0 else f"PGD-AT eps={e:g}" for e in config["eps"]],
    )
    for row in result.table:
        table.rows.append([str(row.size)] + [percent(row.by_eps[f"{e:g}"]["standard_accuracy"]) for e in config["eps"]])
    lines = [
        f"eps={v.eps:g}: helps at {v.helps_at_sizes or 'no size'}, costs at {v.costs_at_sizes or 'no size'}; crossing "
        + ("measured" if v.crossing_measured else "not measured")
        for v in result.verdict
    ]
    lines.append(f"{result.wall_time_s / 60:.1f} minutes on {config['device']}")
    return Summary([table], lines, [])
