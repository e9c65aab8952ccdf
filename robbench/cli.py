"""The ``robbench`` command: parses arguments, calls the library, prints. No logic of its own."""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .errors import RobbenchError

console = Console()
err_console = Console(stderr=True)


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


@contextmanager
def _progress_bars() -> Iterator:
    """A ``ProgressFactory`` backed by rich bars with ETA (silent when output is not a terminal)."""
    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("eta"), TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as bars:

        def factory(description: str, total: int):
            task = bars.add_task(description, total=total)
            return lambda n: bars.advance(task, n)

        yield factory


def cmd_list(args: argparse.Namespace) -> int:
    from .attacks import ATTACKS
    from .data import DATASETS
    from .models import ARCHITECTURES
    from .threat_models import THREAT_MODELS

    table = Table(title="robbench registry")
    for column in ("kind", "name", "source", "description"):
        table.add_column(column)
    for registry in (ARCHITECTURES, DATASETS, THREAT_MODELS, ATTACKS):
        for entry in registry.entries():
            table.add_row(registry.kind, entry.name, entry.source, entry.description)
    console.print(table)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate
    from .results import write_record

    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    if not attacks:
        raise RobbenchError("--attacks is empty; pass e.g. pgd,autoattack")
    with _progress_bars() as progress:
        records = evaluate(
            args.model_yaml, threat_models=args.threat_model, attacks=attacks, n_examples=args.n_examples,
            batch_size=args.batch_size, device=args.device, seed=args.seed, eps=args.eps, data_dir=args.data_dir,
            progress=progress,
        )
    table = Table(title=f"{records[0].name} on {records[0].dataset} ({records[0].n_examples} test examples)")
    for column in ("threat model", "eps", "clean %", *[f"{a} %" for a in attacks], "robust %", "seconds"):
        table.add_column(column, justify="right")
    paths = []
    for record in records:
        path = write_record(record, Path(args.results_dir))
        attack_cells = [_percent(record.attack_accuracy(a)) for a in attacks]
        eps = f"{record.threat_model.eps:g}" + ("" if record.threat_model.standard else " (non-standard)")
        table.add_row(
            record.threat_model.name, eps, _percent(record.clean_accuracy), *attack_cells,
            _percent(record.robust_accuracy), f"{record.wall_time_s:.0f}",
        )
        paths.append(path)
        for note in record.notes:
            err_console.print(f"note: {note}")
    console.print(table)
    for path in paths:
        console.print(f"wrote {path}", highlight=False)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .config import load_train_spec
    from .training.loop import train

    spec = load_train_spec(args.config)
    out_dir = Path(args.out or Path("runs") / spec.name)

    def log(entry: dict) -> None:
        console.print(
            f"epoch {entry['epoch']}: loss {entry['loss']:.4f}  clean {_percent(entry['clean_accuracy'])}%  "
            f"pgd {_percent(entry['pgd_accuracy'])}%  lr {entry['lr']:.4g}  {entry['seconds']:.0f}s"
        )

    with _progress_bars() as progress:
        train(spec, out_dir, device=args.device, data_dir=args.data_dir, progress=progress, log=log)
    console.print(f"wrote {out_dir / 'model.safetensors'}, {out_dir / 'model.yaml'}, {out_dir / 'train_log.json'}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from .leaderboard import check_leaderboards, write_leaderboards

    results_dir, out_dir = Path(args.results_dir), Path(args.out)
    if args.check:
        stale, problems = check_leaderboards(results_dir, out_dir)
        for problem in problems:
            err_console.print(f"skipped invalid record: {problem}")
        if stale:
            err_console.print(f"robbench: error: {len(stale)} leaderboard file(s) out of date: {', '.join(stale)}; run `robbench leaderboard`")
            return 1
        console.print(f"{out_dir} is up to date with {results_dir}")
        return 0
    written, problems = write_leaderboards(results_dir, out_dir)
    for problem in problems:
        err_console.print(f"skipped invalid record: {problem}")
    console.print(f"wrote {len(written)} file(s) under {out_dir}")
    return 0


def _floats(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise RobbenchError(f"{option} takes comma-separated numbers, got {text!r}") from exc
    if not values:
        raise RobbenchError(f"{option} is empty")
    return values


def cmd_tradeoff(args: argparse.Namespace) -> int:
    from .reports.tradeoff import run_tradeoff, write_json, write_report

    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    if not attacks:
        raise RobbenchError("--attacks is empty; pass e.g. pgd or pgd,autoattack")
    result = run_tradeoff(
        d=args.d, p=args.p, eta=args.eta, n_train=args.n_train, n_test=args.n_test,
        train_eps=_floats(args.train_eps, "--train-eps"), steps=args.steps, lr=args.lr, attacks=attacks,
        bound_ps=_floats(args.bound_p, "--bound-p"), bound_standards=_floats(args.bound_standard, "--bound-standard"),
        seed=args.seed, device=args.device,
    )
    bounds = Table(title="Theorem 2.1: standard accuracy >= 1 - delta implies robust accuracy <= p/(1-p)·delta")
    for column in ("p", "standard %", "robust at most %"):
        bounds.add_column(column, justify="right")
    for row in result["bound"]["table"]:
        vacuous = " (vacuous)" if row["vacuous"] else ""
        bounds.add_row(f"{row['p']:g}", _percent(row["standard_accuracy"]), _percent(row["robust_accuracy_bound"]) + vacuous)
    console.print(bounds)

    data, threat, config = result["dataset"], result["threat_model"], result["config"]
    table = Table(
        title=f"tsipras d={data['d']} p={data['p']:g} eta={data['eta']:.4g}, Linf eps=2·eta={threat['eps']:.4g} "
        f"({config['n_test']} test samples)"
    )
    table.add_column("classifier", no_wrap=True)
    for column in ("eps_train/eta", "clean %", "robust %", "exact %", "formula clean %", "formula robust %", "bound %", "under bound"):
        table.add_column(column, justify="right")
    for c in result["classifiers"]:
        form, bound = c["closed_form"], c["bound"]
        under = "VIOLATED" if bound["violates"] else "within noise" if bound["exceeds_point_estimate"] else "yes"
        table.add_row(
            c["name"], "—" if c["train_eps_over_eta"] is None else f"{c['train_eps_over_eta']:g}",
            _percent(c["standard_accuracy"]), _percent(c["robust_accuracy"]), _percent(c["robust_accuracy_exact"]),
            _percent(form["standard_accuracy"]["expected"] if form else None),
            _percent(form["robust_accuracy"]["expected"] if form else None),
            _percent(bound["value_clipped"]), under,
        )
    console.print(table)

    markdown, png = write_report(result, Path(args.out))
    paths = [markdown, png] + ([write_json(result, Path(args.json))] if args.json else [])
    for path in paths:
        console.print(f"wrote {path}", highlight=False)
    checks = result["checks"]
    problems = []
    if checks["bound_violations"]:
        problems.append(f"the bound is violated beyond sampling error by {', '.join(checks['bound_violations'])}")
    if not checks["closed_forms_match"]:
        problems.append("a closed-form classifier does not match its formula within sampling error")
    if checks["attack_short_of_exact"]:
        problems.append(f"the attack fell short of the exact worst case for {', '.join(checks['attack_short_of_exact'])}")
    for problem in problems:
        err_console.print(f"robbench: error: {problem}", highlight=False, markup=False, soft_wrap=True)
    return 1 if problems else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robbench", description="Adversarial-robustness benchmark.")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="show registered architectures, datasets, threat models and attacks").set_defaults(
        func=cmd_list
    )

    evaluate = sub.add_parser("evaluate", help="clean and robust accuracy of a model.yaml submission")
    evaluate.add_argument("model_yaml")
    evaluate.add_argument("--threat-model", default="all", help="a threat model name, or 'all' (default)")
    evaluate.add_argument("--attacks", default="pgd,autoattack", help="comma-separated, run in order (default: pgd,autoattack)")
    evaluate.add_argument("--n-examples", type=int, default=1000, help="first N test examples (default: 1000)")
    evaluate.add_argument("--batch-size", type=int, default=500)
    evaluate.add_argument("--device", default="auto", help="auto, cpu or cuda")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--eps", type=float, default=None, help="evaluate at another radius (non-standard)")
    evaluate.add_argument("--results-dir", default="results")
    evaluate.add_argument("--data-dir", default=None, help="DIR/<dataset>/ holds the dataset files")
    evaluate.set_defaults(func=cmd_evaluate)

    train = sub.add_parser("train", help="train a reference baseline from a train.yaml")
    train.add_argument("config")
    train.add_argument("--out", default=None, help="output folder (default: runs/<name>)")
    train.add_argument("--device", default="auto")
    train.add_argument("--data-dir", default=None)
    train.set_defaults(func=cmd_train)

    board = sub.add_parser("leaderboard", help="render markdown leaderboards from the results")
    board.add_argument("--results-dir", default="results")
    board.add_argument("--out", default="leaderboards")
    board.add_argument("--check", action="store_true", help="exit 1 if the rendered files differ from --out")
    board.set_defaults(func=cmd_leaderboard)
    tradeoff = sub.add_parser(
        "tradeoff", help="Tsipras et al. (2019) Theorem 2.1: the robustness/accuracy bound, closed forms and trained models"
    )
    tradeoff.add_argument("--d", type=int, default=100, help="number of weak features (default: 100)")
    tradeoff.add_argument("--p", type=float, default=0.9, help="P(x1 = y) (default: 0.9)")
    tradeoff.add_argument("--eta", type=float, default=None, help="weak-feature mean (default: 3/sqrt(d))")
    tradeoff.add_argument("--n-train", type=int, default=2000)
    tradeoff.add_argument("--n-test", type=int, default=10000)
    tradeoff.add_argument("--train-eps", default="0,0.5,1,1.5,2", help="training radii in multiples of eta; 0 is standard training")
    tradeoff.add_argument("--steps", type=int, default=200, help="full-batch Adam steps per trained model (default: 200)")
    tradeoff.add_argument("--lr", type=float, default=0.05)
    tradeoff.add_argument("--attacks", default="pgd", help="comma-separated, run in order at eps = 2·eta (default: pgd)")
    tradeoff.add_argument("--bound-p", default="0.9,0.95", help="p values for the bound table")
    tradeoff.add_argument("--bound-standard", default="0.9,0.95,0.99", help="standard accuracies for the bound table")
    tradeoff.add_argument("--seed", type=int, default=0)
    tradeoff.add_argument("--device", default="cpu", help="cpu (default), auto or cuda")
    tradeoff.add_argument("--out", default="leaderboards/reports/tradeoff.md", help="markdown report; the PNG goes next to it")
    tradeoff.add_argument("--json", default=None, metavar="PATH", help="also write every number as JSON")
    tradeoff.set_defaults(func=cmd_tradeoff)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RobbenchError as exc:
        err_console.print(f"robbench: error: {exc}", highlight=False, markup=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("robbench: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
