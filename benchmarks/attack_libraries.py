"""Which library for which attack: robbench's attacks against torchattacks, adversarial-robustness-toolbox
(ART) and foolbox on the same model, examples and ε; time and robust accuracy.

    OMP_NUM_THREADS=1 python -m benchmarks.attack_libraries --threads 1      # writes libraries/<label>.json
    python -m benchmarks.run --report-only                                    # RESULTS.md with its section

- ``apgd``: robbench ``apgd`` (pyautoattack's APGD-CE, 100 iterations) vs torchattacks ``APGD`` (the same
  settings; torchattacks ships a copy of the AutoAttack code).
- ``square``: robbench ``square`` (pyautoattack) vs torchattacks ``Square``, same query budget, p_init, seed;
  each with and without the square-size schedule rescaled to the budget (torchattacks rescales by default).
- ``hopskipjump`` (L2): robbench's own batched HopSkipJump (query budget per example, stops an example
  once it is broken within ε) vs ART's ``HopSkipJump`` and foolbox's ``HopSkipJumpAttack`` (both
  minimise the distance for a fixed number of iterations). Queries are counted by a hook on the model.
- ``rays`` (L-inf): no library has RayS; robbench's is shown beside APGD-CE as the white-box reference.

Every robust accuracy here is counted the same way: the returned point is inside the ε-ball (L2
results from the libraries are projected onto it first, as an evaluation at ε would) and the model
misclassifies it. ART and foolbox are optional: their rows are skipped when they are not installed
(``pip install adversarial-robustness-toolbox foolbox``; neither is a robbench dependency).
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
OUT = HERE / "libraries"


class QueryCounter(nn.Module):
    """The model, counting every example it is given (a query, with or without a gradient).

    In the model's mode: a new module is in training mode, and torchattacks, which puts the model it is
    given into eval mode for the attack, afterwards restores that module's mode with ``train()``, which
    reaches every submodule: a counter left in training mode turned the model's dropout on for every later
    row (the rows of 2026-12-06T03:45 after torchattacks' APGD: Square, HopSkipJump and RayS attacked, and
    every row was scored on, a randomized model).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.queries = model, 0
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += x.shape[0]
        return self.model(x)


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor, norm: str, eps: float) -> float:
    """Fraction still correct at ``x_adv`` projected onto the ε-ball and [0, 1] (what an evaluation at ε counts)."""
    from robbench.attacks.geometry import project

    x_adv = project(x_adv.to(x.dtype), x, norm, eps, (0.0, 1.0))
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == y).float().mean())


def run_one(name: str, attack: Callable[[QueryCounter], torch.Tensor], model: nn.Module, x, y, norm: str, eps: float) -> dict:
    """One attack on the model in eval mode, scored in eval mode whatever mode the library left it in."""
    counter = QueryCounter(model.eval())
    started = time.process_time()
    x_adv = attack(counter).detach()
    seconds = time.process_time() - started
    model.eval()
    return {"name": name, "seconds": round(seconds, 2), "queries_per_example": round(counter.queries / x.shape[0], 1),
            "robust_accuracy": robust_accuracy(model, x, y, x_adv, norm, eps)}


def robbench_stage(attack_name: str, options: dict, norm: str, eps: float):
    """robbench's attack ``attack_name`` as one stage on the batch (what ``evaluate`` runs per batch)."""
    from robbench.attacks import AttackRules, create_attack
    from robbench.threat_models import ThreatModel

    def attack(counter: QueryCounter, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        threat = ThreatModel(name="bench", norm=norm, eps=eps)
        (stage,) = create_attack(attack_name, **options).stages(counter, AttackRules(threat, (0.0, 1.0), 10))
        return stage.run(x, y, 0)

    return attack


def correctly_classified(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    with torch.no_grad():
        keep = model(x).argmax(1) == y
    return x[keep], y[keep]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.attack_libraries", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="submissions/fashion-mnist/small-cnn-standard/model.yaml")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--linf", type=float, default=0.03, help="L-inf ε (small enough that white-box attacks leave survivors)")
    parser.add_argument("--l2", type=float, default=0.5, help="L2 ε")
    parser.add_argument("--square-queries", type=int, default=1000)
    parser.add_argument("--decision-queries", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--only", default="apgd,square,hopskipjump,rays")
    parser.add_argument("--label", default="cpu")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from robbench.config import load_model_spec
    from robbench.loader import load_submission

    loaded = load_submission(load_model_spec(args.model), args.data_dir)
    model = loaded.model.eval()
    x_all, y_all = loaded.dataset.load("test", args.n)
    x, y = correctly_classified(model, x_all, y_all)
    only = args.only.split(",")
    rows: list[dict] = []

    def add(group: str, norm: str, eps: float, name: str, attack: Callable[[QueryCounter], torch.Tensor]) -> None:
        row = {"group": group, "norm": norm, "eps": eps, "examples": int(x.shape[0]),
               **run_one(name, attack, model, x, y, norm, eps)}
        print(json.dumps(row), flush=True)
        rows.append(row)

    if "apgd" in only:
        import torchattacks

        add("apgd", "Linf", args.linf, "robbench apgd (pyautoattack APGD-CE, 100 it.)",
            lambda m: robbench_stage("apgd", {}, "Linf", args.linf)(m, x, y))

        add("apgd", "Linf", args.linf, "torchattacks APGD (ce, 100 it.)",
            lambda m: torchattacks.APGD(m, norm="Linf", eps=args.linf, steps=100, n_restarts=1, seed=0, loss="ce")(x, y))
    if "square" in only:
        import torchattacks

        q = args.square_queries
        add("square", "Linf", args.linf, f"robbench square (pyautoattack, {q} queries)",
            lambda m: robbench_stage("square", {"queries": q}, "Linf", args.linf)(m, x, y))
        add("square", "Linf", args.linf, f"robbench square (pyautoattack, {q} queries, rescale_schedule)",
            lambda m: robbench_stage("square", {"queries": q, "rescale_schedule": True}, "Linf", args.linf)(m, x, y))
        add("square", "Linf", args.linf, f"torchattacks Square ({q} queries, its default rescaled schedule)",
            lambda m: torchattacks.Square(m, norm="Linf", eps=args.linf, n_queries=q, n_restarts=1, p_init=0.8, seed=0)(x, y))
        add("square", "Linf", args.linf, f"torchattacks Square ({q} queries, resc_schedule=False: robbench's default)",
            lambda m: torchattacks.Square(m, norm="Linf", eps=args.linf, n_queries=q, n_restarts=1, p_init=0.8, seed=0,
                                          resc_schedule=False)(x, y))
    if "hopskipjump" in only:
        q = args.decision_queries
        add("hopskipjump", "L2", args.l2, "robbench apgd (white-box reference, L2)",
            lambda m: robbench_stage("apgd", {}, "L2", args.l2)(m, x, y))
        add("hopskipjump", "L2", args.l2, f"robbench hopskipjump ({q} queries per example)",
            lambda m: robbench_stage("hopskipjump", {"queries": q}, "L2", args.l2)(m, x, y))
        rows_art = _art_hopskipjump(x, y, args.l2)
        if rows_art is not None:
            add("hopskipjump", "L2", args.l2, "ART HopSkipJump (L2, max_iter 10, 100→1000 evals)", rows_art)
        rows_fb = _foolbox_hopskipjump(x, y, args.l2)
        if rows_fb is not None:
            add("hopskipjump", "L2", args.l2, "foolbox HopSkipJumpAttack (L2, 10 steps, 100→1000 evals)", rows_fb)
    if "rays" in only:
        q = args.decision_queries
        add("rays", "Linf", args.linf, "robbench apgd (white-box reference, L-inf)",
            lambda m: robbench_stage("apgd", {}, "Linf", args.linf)(m, x, y))
        add("rays", "Linf", args.linf, f"robbench rays ({q} queries per example)",
            lambda m: robbench_stage("rays", {"queries": q}, "Linf", args.linf)(m, x, y))
    from .common import env_summary

    result = {
        "model": args.model, "n": args.n, "correct": int(x.shape[0]), "env": env_summary(torch.device("cpu")),
        "finished": datetime.now(timezone.utc).replace(microsecond=0).isoformat(), "rows": rows,
        "versions": _library_versions(),
    }
    OUT.mkdir(exist_ok=True)
    path = OUT / f"{args.label}.json"
    if path.is_file():  # a run of some groups (--only) replaces their rows and keeps the others
        rerun = {row["group"] for row in rows}
        result["rows"] = [row for row in json.loads(path.read_text(encoding="utf-8"))["rows"] if row["group"] not in rerun] + rows
    path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    from .run import write_report

    write_report()
    return 0


def _art_hopskipjump(x: torch.Tensor, y: torch.Tensor, eps: float):
    try:
        from art.attacks.evasion import HopSkipJump
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        return None

    def attack(model: nn.Module) -> torch.Tensor:
        classifier = PyTorchClassifier(_Float32(model), loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]), nb_classes=10,
                                       clip_values=(0.0, 1.0), device_type="cpu")
        hsj = HopSkipJump(classifier, norm=2, max_iter=10, max_eval=1000, init_eval=100, init_size=100, verbose=False)
        return torch.from_numpy(hsj.generate(x.numpy(), y=None))

    return attack


class _Float32(nn.Module):
    """ART hands the model float64 arrays; the model is float32."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.float())


def _foolbox_hopskipjump(x: torch.Tensor, y: torch.Tensor, eps: float):
    try:
        import foolbox
    except ImportError:
        return None

    def attack(model: nn.Module) -> torch.Tensor:
        fmodel = foolbox.PyTorchModel(model, bounds=(0, 1))
        hsj = foolbox.attacks.HopSkipJumpAttack(steps=10, initial_gradient_eval_steps=100, max_gradient_eval_steps=1000)
        _, clipped, _ = hsj(fmodel, x, y, epsilons=[eps])
        return clipped[0]

    return attack


def _library_versions() -> dict:
    from robbench.runtime import package_version

    return {name: package_version(name) for name in ("pyautoattack", "torchattacks", "adversarial-robustness-toolbox", "foolbox")}


def report_section(folder: Path = OUT) -> list[str]:
    """The markdown section of every ``libraries/*.json`` (for ``benchmarks.run.write_report``)."""
    lines: list[str] = []
    for path in sorted(folder.glob("*.json")):
        result = json.loads(path.read_text(encoding="utf-8"))
        env = result["env"]
        versions = ", ".join(f"{k} {v}" for k, v in result["versions"].items() if v)
        lines += [
            f"## attack libraries: {path.stem} ({env['device']}, {env['threads']} threads)", "",
            f"`python -m benchmarks.attack_libraries`, last run {result['finished']}: `{result['model']}`, the "
            f"correctly classified of the first N test images (*attacked*); {versions}; times are this process's CPU "
            "time of one run (not a ratio of interleaved loops: the libraries' loops differ too much).", "",
            "| attack | threat | attacked | CPU s | queries / example | robust accuracy (of attacked) |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for row in result["rows"]:
            lines.append(f"| {row['name']} | {row['norm']} ε = {row['eps']:g} | {row['examples']} | {row['seconds']:.1f} | "
                         f"{row['queries_per_example']:,.0f} | {100 * row['robust_accuracy']:.1f} % |")
        lines.append("")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
