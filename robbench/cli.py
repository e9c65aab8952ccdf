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
