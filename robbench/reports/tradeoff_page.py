"""The page of ``robbench tradeoff``: markdown, the plot and the console summary of a ``TradeoffResult``."""

from __future__ import annotations

import math

from ..formats import percent
from .common import Summary, Table, generated, new_figure, percent_axis, png_bytes
from .tradeoff import Classifier, TradeoffResult



def _eps_label(entry: Classifier) -> str:
    return "—" if entry.train_eps_over_eta is None else f"{entry.train_eps_over_eta:g}η"


def render_markdown(result: TradeoffResult, png_names: dict[str, str]) -> str:
    data, threat, config = result.dataset, result.threat_model, result.config
    p, k = data["p"], result.bound["factor"]
    lines = [
        generated("tradeoff"),
        "# Robustness may be at odds with accuracy",
        "",
        f"{result.paper}.",
        "",
        f"Distribution `tsipras`: y uniform in {{−1, +1}}; x1 = y with probability p, else −y; "
        f"x2..x{data['d'] + 1} ~ N(η·y, 1). Here d = {data['d']}, p = {p:g}, η = {data['eta']:.6g}. "
        f"Adversary: L∞, ε = 2η = {threat['eps']:.6g}. Test samples: {config['n_test']}; training samples: "
        f"{config['n_train']}; seed {config['seed']}; attacks: {', '.join(a['name'] for a in config['attacks'])} "
        f"(robbench's `run_attacks`). On this test set x1 = y for {percent(result.test_sample['x1_agreement'])}% "
        "of the samples (the realised p).",
        "",
        "## The bound (Theorem 2.1)",
        "",
        "Any classifier with standard accuracy ≥ 1 − δ has robust accuracy ≤ p/(1 − p)·δ against an L∞ adversary "
        "with ε ≥ 2η.",
        "",
        "| p | standard accuracy % | robust accuracy at most % |",
        "|---:|---:|---:|",
    ]
    for row in result.bound["table"]:
        cell = percent(row.robust_accuracy_bound) + (" (vacuous)" if row.vacuous else "")
        lines.append(f"| {row.p:g} | {percent(row.standard_accuracy)} | {cell} |")
    lines += [
        "",
        "## Classifiers",
        "",
        f"Standard and robust accuracy (ε = {threat['eps']:.6g}) of each classifier, in percent, on the same "
        f"{config['n_test']} test samples. *exact*: the worst case over the ε-ball, in closed form for a linear model "
        "(the attack's number can only be higher). *bound*: p/(1 − p)·(1 − measured standard accuracy). "
        f"*formula*: the population accuracy; a measurement matches when within {config['z']:g} standard errors "
        f"+ {config['slack']:g}.",
        "",
        "| classifier | rule | ε_train | standard % | robust % (attack) | robust % (exact) | formula standard % "
        "| formula robust % | bound % | under the bound |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in result.classifiers:
        form = c.closed_form
        under = "yes" if not c.bound.exceeds_point_estimate else (
            "no (violation)" if c.bound.violates else "within sampling error"
        )
        lines.append(
            f"| {c.name} | {c.rule} | {_eps_label(c)} | {percent(c.standard_accuracy)} | "
            f"{percent(c.robust_accuracy)} | {percent(c.robust_accuracy_exact)} | "
            f"{percent(form['standard_accuracy'].expected) if form else '—'} | "
            f"{percent(form['robust_accuracy'].expected) if form else '—'} | "
            f"{percent(c.bound.value_clipped)} | {under} |"
        )
    checks = result.checks
    verdict = []
    if checks.bound_violations:
        verdict.append(
            f"- **The bound is violated** beyond sampling error by: {', '.join(checks.bound_violations)}. "
            "The theorem holds for every classifier, so this points to a bug in the measurement."
        )
    else:
        verdict.append(
            f"- No classifier violates the bound: every robust accuracy is at most p/(1 − p)·(1 − standard accuracy) "
            f"up to sampling error ({config['z']:g} standard errors + {config['slack']:g})."
        )
    if checks.above_bound_point_estimate:
        verdict.append(
            f"- Above the bound's point estimate but within sampling error: {', '.join(checks.above_bound_point_estimate)} "
            "(see the next point)."
        )
    verdict.append(
        "- The bound is tight: in population sign(x1) lies exactly on the line (robust = p = p/(1 − p)·(1 − p)), so "
        "on a finite test set it, and any classifier that behaves like it, lands slightly above or below the line; "
        f"the slack allowed is {config['z']:g} standard errors of robust − p/(1 − p)·(1 − standard), measured on the "
        "same samples, which the factor p/(1 − p) makes wide near that point."
    )
    verdict.append(
        "- The closed forms are reproduced within sampling error."
        if checks.closed_forms_match
        else "- **A closed form is not reproduced** within sampling error (see `closed_form` in the JSON)."
    )
    verdict.append(
        "- For every linear classifier the attack found the exact worst case."
        if not checks.attack_short_of_exact
        else f"- The attack fell short of the exact worst case for: {', '.join(checks.attack_short_of_exact)}."
    )
    lines += ["", "## Verdict", "", *verdict, ""]
    if png_names:
        lines += [
            f"![standard versus robust accuracy under the bound]({png_names['']})",
            "",
            f"Points above the solid line robust = {k:.6g}·(1 − standard) cannot exist in population; robust accuracy "
            "also never exceeds standard accuracy (dashed).",
            "",
        ]
    return "\n".join(lines)


def render_png(result: TradeoffResult) -> bytes:
    """The (standard, robust) point of every classifier under the bound line; deterministic bytes."""
    import numpy as np

    p, k = result.dataset["p"], result.bound["factor"]
    classifiers = result.classifiers
    low = min([p - 0.05] + [c.standard_accuracy - 0.02 for c in classifiers])
    low = max(0.0, math.floor(low * 20) / 20)
    figure = new_figure(7, 5)
    axes = figure.add_subplot(1, 1, 1)
    s = np.linspace(low, 1.0, 400)
    line = np.clip(k * (1 - s), 0, 1)
    axes.fill_between(s, line, 1.02, color="tab:red", alpha=0.08, linewidth=0)
    axes.plot(s, line, color="tab:red", linewidth=1.5, label=f"bound: robust = {k:.3g}·(1 − standard)")
    axes.plot(s, np.clip(s, 0, 1), color="0.5", linewidth=1, linestyle="--", label="robust = standard")
    span = 1.0 - low
    for c in classifiers:
        if c.kind == "closed-form":
            form = c.closed_form
            axes.scatter([form["standard_accuracy"].expected], [form["robust_accuracy"].expected],
                         marker="x", color="black", s=40, zorder=3)
            axes.scatter([c.standard_accuracy], [c.robust_accuracy], marker="*", color="tab:blue", s=120, zorder=4)
        else:
            axes.scatter([c.standard_accuracy], [c.robust_accuracy], marker="o", color="tab:green", s=40, zorder=4)
    # one label per group of nearby points, so coinciding classifiers do not print over each other
    groups: list[list[Classifier]] = []
    for c in sorted(classifiers, key=lambda c: (c.standard_accuracy, c.robust_accuracy)):
        for group in groups:
            first = group[0]
            if (abs(c.standard_accuracy - first.standard_accuracy) < 0.04 * span
                    and abs(c.robust_accuracy - first.robust_accuracy) < 0.04):
                group.append(c)
                break
        else:
            groups.append([c])
    for group in groups:
        x, y = group[0].standard_accuracy, group[0].robust_accuracy
        right = (x - low) / span > 0.5
        axes.annotate(
            "\n".join(c.label for c in group), (x, y), textcoords="offset points",
            xytext=(-14, 18) if right else (14, -10), ha="right" if right else "left",
            va="bottom" if right else "top", fontsize=8,
            arrowprops={"arrowstyle": "-", "color": "0.4", "linewidth": 0.8},
        )
    axes.scatter([], [], marker="*", color="tab:blue", s=120, label="closed-form classifier (measured)")
    axes.scatter([], [], marker="x", color="black", s=40, label="closed-form classifier (formula)")
    axes.scatter([], [], marker="o", color="tab:green", s=40, label="trained linear classifier")
    axes.set_xlim(low, 1.0)
    axes.set_ylim(0.0, 1.02)
    percent_axis(axes.xaxis)
    percent_axis(axes.yaxis)
    axes.set_xlabel("standard accuracy")
    axes.set_ylabel(f"robust accuracy (L∞, ε = 2η = {result.threat_model['eps']:.3g})")
    axes.set_title(f"tsipras, d = {result.dataset['d']}, p = {p:g}: Theorem 2.1 of Tsipras et al. (2019)", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    return png_bytes(figure)


def figures(result: TradeoffResult) -> dict:
    return {"": render_png}


def summary(result: TradeoffResult) -> Summary:
    """The bound table, one row per classifier, and a problem for every failed check."""
    bounds = Table("Theorem 2.1: standard accuracy >= 1 - delta implies robust accuracy <= p/(1-p)·delta",
                   ["p", "standard %", "robust at most %"])
    for row in result.bound["table"]:
        bounds.rows.append([f"{row.p:g}", percent(row.standard_accuracy), percent(row.robust_accuracy_bound) + (" (vacuous)" if row.vacuous else "")])
    data, threat = result.dataset, result.threat_model
    table = Table(
        f"tsipras d={data['d']} p={data['p']:g} eta={data['eta']:.4g}, Linf eps=2·eta={threat['eps']:.4g} "
        f"({result.config['n_test']} test samples)",
        ["classifier", "eps_train/eta", "clean %", "robust %", "exact %", "formula clean %", "formula robust %", "bound %",
         "under bound"],
    )
    for c in result.classifiers:
        form, bound = c.closed_form, c.bound
        under = "VIOLATED" if bound.violates else "within noise" if bound.exceeds_point_estimate else "yes"
        table.rows.append([
            c.name, "—" if c.train_eps_over_eta is None else f"{c.train_eps_over_eta:g}",
            percent(c.standard_accuracy), percent(c.robust_accuracy), percent(c.robust_accuracy_exact),
            percent(form["standard_accuracy"].expected if form else None), percent(form["robust_accuracy"].expected if form else None),
            percent(bound.value_clipped), under,
        ])
    checks, problems = result.checks, []
    if checks.bound_violations:
        problems.append(f"the bound is violated beyond sampling error by {', '.join(checks.bound_violations)}")
    if not checks.closed_forms_match:
        problems.append("a closed-form classifier does not match its formula within sampling error")
    if checks.attack_short_of_exact:
        problems.append(f"the attack fell short of the exact worst case for {', '.join(checks.attack_short_of_exact)}")
    return Summary([bounds, table], [], problems)
