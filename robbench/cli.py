"""The ``robbench`` command: parses arguments, calls the library, prints. No logic of its own."""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .config import DEFAULT_N_EXAMPLES
from .errors import AttackBugError, RobbenchError, quoted

console = Console()
err_console = Console(stderr=True)
#: a message longer than this is cut: the promise is one line, whatever a value expands to
MESSAGE_LIMIT = 1000


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are robbench's one-line errors (exit 2, no usage dump)."""

    def error(self, message: str) -> NoReturn:
        raise RobbenchError(f"{message}; see `{self.prog} --help`")


def one_line(message: str) -> str:
    """``message`` on one line of bounded length, whatever it quotes."""
    flat = message.replace("\r", "\\r").replace("\n", "\\n")
    return flat if len(flat) <= MESSAGE_LIMIT else f"{flat[: MESSAGE_LIMIT - 1]}…"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


@contextmanager
def _progress_bars() -> Iterator:
    """A ``ProgressFactory`` backed by rich bars with ETA (silent when output is not a terminal)."""
    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("eta"), TimeRemainingColumn(),
    )
    from .distributed import is_main_process

    if not is_main_process():  # under torchrun, rank 0 alone shows progress
        yield lambda description, total: (lambda n: None)
        return
    with Progress(*columns, console=err_console, transient=False) as bars:

        def factory(description: str, total: int):
            task = bars.add_task(description, total=total)
            return lambda n: bars.advance(task, n)

        try:
            yield factory
        except BaseException:
            bars.live.transient = True  # a failed command ends with its one-line error alone
            raise


def _comma_separated(text: str, option: str, convert: Callable[[str], Any] = str, kind: str = "names",
                     example: str | None = None) -> list:
    """The values of a comma-separated option, each through ``convert``; refused when none or one is malformed."""
    try:
        values = [convert(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise RobbenchError(f"{option} takes comma-separated {kind}, got {quoted(text)}") from exc
    if not values:
        raise RobbenchError(f"{option} is empty" + (f"; pass e.g. {example}" if example else ""))
    return values


def _floats(text: str, option: str) -> list[float]:
    return _comma_separated(text, option, float, "numbers")


def _ints(text: str, option: str) -> list[int]:
    return _comma_separated(text, option, int, "integers")


def cmd_list(args: argparse.Namespace) -> int:
    from .attacks import ATTACKS
    from .data import DATASETS
    from .data import threat_models_text
    from .models import ARCHITECTURES

    table = Table(title="robbench registry")
    for column in ("kind", "name", "source", "description"):
        table.add_column(column)
    for registry in (ARCHITECTURES, DATASETS, ATTACKS):
        for entry in registry.entries():
            description = entry.description
            if registry is DATASETS:
                description += f" [threat models: {threat_models_text(entry.name)}]"
            table.add_row(registry.kind, entry.name, entry.source, description)
    console.print(table)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .pipeline import evaluate
    from .results import record_path

    attacks = _comma_separated(args.attacks, "--attacks", example="pgd,autoattack")
    with _progress_bars() as progress:
        records = evaluate(
            args.model_yaml, threat_models=args.threat_model, attacks=attacks, n_examples=args.n_examples,
            batch_size=args.batch_size, device=args.device, seed=args.seed, eps=args.eps, data_dir=args.data_dir,
            progress=progress, results_dir=args.results_dir,
        )
    from .distributed import is_main_process

    if not is_main_process():  # under torchrun, rank 0 wrote the records and prints them
        return 0
    table = Table(title=f"{records[0].name} on {records[0].dataset} ({records[0].n_examples} test examples)")
    for column in ("threat model", "eps", "clean %", *[f"{a} %" for a in attacks], "robust %", "seconds"):
        table.add_column(column, justify="right")
    paths = []
    for record in records:
        path = record_path(Path(args.results_dir), record)
        attack_cells = [_percent(record.attack_accuracy(a)) for a in attacks]
        eps = f"{record.threat_model.eps:g}" + ("" if record.threat_model.standard else " (non-standard)")
        table.add_row(
            record.threat_model.name, eps, _percent(record.clean_accuracy), *attack_cells,
            _percent(record.robust_accuracy), f"{record.wall_time_s:.0f}",
        )
        paths.append(path)
        for note in record.notes:
            err_console.print(f"note: {note}")
        for flag in record.flags:
            err_console.print(f"flag {flag.code}: {flag.message}", highlight=False, markup=False, soft_wrap=True)
    console.print(table)
    for path in paths:
        console.print(f"wrote {path}", highlight=False)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .verify import verify_record

    failed = 0
    for record_file in args.record_json:
        verdict = verify_record(
            Path(record_file), Path(args.model) if args.model else None, submissions_dir=Path(args.submissions_dir),
            data_dir=args.data_dir, device=args.device,
        )
        failed += not verdict.ok
        line = f"{record_file}: {verdict.summary()}"
        (console if verdict.ok else err_console).print(line, highlight=False, markup=False, soft_wrap=True)
    return 1 if failed else 0


def cmd_train(args: argparse.Namespace) -> int:
    from .config import load_train_spec
    from .training.loop import train

    spec = load_train_spec(args.config)
    out_dir = Path(args.out or Path("runs") / spec.name)

    def log(entry: dict) -> None:
        console.print(
            f"epoch {entry['epoch']}: loss {entry['loss']:.4f}  clean {_percent(entry['clean_accuracy'])}%  "
            f"pgd {_percent(entry['pgd_accuracy'])}%  "
            + (
                f"held-out clean {_percent(entry['holdout_clean_accuracy'])}% pgd {_percent(entry['holdout_pgd_accuracy'])}%  "
                if "holdout_pgd_accuracy" in entry else ""
            )
            + f"lr {entry['lr']:.4g}  {entry['seconds']:.0f}s",
            highlight=False,
        )

    with _progress_bars() as progress:
        train_log = train(
            spec, out_dir, device=args.device, data_dir=args.data_dir, resume=args.resume, progress=progress, log=log
        )
    from .distributed import is_main_process

    if not is_main_process():  # under torchrun, rank 0 wrote the submission and reports it
        return 0
    if train_log["stopped_early"]:
        console.print(f"stopped early: {train_log['stopped_early']}", highlight=False)
    console.print(f"kept epoch {train_log['selected_epoch']}; {train_log['cost']['total_seconds']:.0f}s in all", highlight=False)
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


BATCH_SIZE_HELP = (
    "examples per batch, or 'auto' (default): on CUDA half the largest batch whose gradient pass fits in memory, "
    "elsewhere 500; the record holds the number used"
)


def _batch_size(text: str) -> "int | str":
    """A number where the text is one; ``evaluate`` refuses anything but a positive number or 'auto'."""
    try:
        return int(text)
    except ValueError:
        return text


def _print_report(page, result, markdown_path: Path, json_path: Path | None) -> int:
    """Every report the same way: its tables and lines, the files written, its problems (exit 1)."""
    from .reports.common import write_report

    summary = page.summary(result)
    for spec in summary.tables:
        table = Table(title=spec.title)
        for i, column in enumerate(spec.columns):
            table.add_column(column, justify="left" if i == 0 else "right", no_wrap=i == 0)
        for row in spec.rows:
            table.add_row(*row)
        console.print(table)
    for line in summary.lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    for path in write_report(page, result, markdown_path, json_path):
        console.print(f"wrote {path}", highlight=False)
    for problem in summary.problems:
        err_console.print(f"robbench: error: {problem}", highlight=False, markup=False, soft_wrap=True)
    return 1 if summary.problems else 0


def cmd_tradeoff(args: argparse.Namespace) -> int:
    from .reports import tradeoff_page
    from .reports.tradeoff import TradeoffConfig, run

    config = TradeoffConfig(
        d=args.d, p=args.p, eta=args.eta, n_train=args.n_train, n_test=args.n_test,
        train_eps=_floats(args.train_eps, "--train-eps"), steps=args.steps, lr=args.lr,
        attacks=_comma_separated(args.attacks, "--attacks", example="pgd or pgd,autoattack"),
        bound_ps=_floats(args.bound_p, "--bound-p"), bound_standards=_floats(args.bound_standard, "--bound-standard"),
        seed=args.seed, device=args.device,
    )
    return _print_report(tradeoff_page, run(config), Path(args.out), Path(args.json) if args.json else None)


def cmd_submit(args: argparse.Namespace) -> int:
    from .config import load_model_spec
    from .hub import submit

    pinned = submit(load_model_spec(args.model_yaml), args.repo, Path(args.results_dir), private=args.private)
    err_console.print(f"uploaded to hub repo {pinned.repo}, commit {pinned.revision}; the pinned checkpoint:", soft_wrap=True)
    console.print(str(pinned), highlight=False, soft_wrap=True)
    return 0


def cmd_queue_add(args: argparse.Namespace) -> int:
    from .evaluation_queue import add

    threat_models = [args.threat_model] if args.threat_model else None
    for request in add(args.checkpoint, Path(args.queue_dir), threat_models, args.eps, Path(args.results_dir)):
        console.print(f"queued {request.id}", highlight=False)
    return 0


def cmd_queue_run(args: argparse.Namespace) -> int:
    from .evaluation_queue import run

    attacks = _comma_separated(args.attacks, "--attacks", example="pgd,autoattack")
    failed = 0
    with _progress_bars() as progress:
        for request in run(
            Path(args.queue_dir), Path(args.results_dir), attacks=attacks, n_examples=args.n_examples,
            batch_size=args.batch_size, device=args.device, seed=args.seed, data_dir=args.data_dir, progress=progress,
        ):
            failed += request.status == "FAILED"
            detail = request.reason if request.status == "FAILED" else ", ".join(request.results)
            console.print(f"{request.status} {request.id}: {detail}", highlight=False, markup=False, soft_wrap=True)
    if failed:
        err_console.print(f"robbench: error: {failed} request(s) failed; see `robbench queue status`", highlight=False)
    return 1 if failed else 0


def cmd_queue_status(args: argparse.Namespace) -> int:
    from .evaluation_queue import read_queue
    from .hub_ref import parse_checkpoint_ref

    queue_dir = Path(args.queue_dir)
    table = Table(title=f"evaluation queue {queue_dir}: what each request evaluates")
    for column in ("request", "model · dataset · architecture", "checkpoint", "threat model", "pinned", "status",
                   "reason / results", "updated (UTC)"):
        table.add_column(column, overflow="fold")
    for request in read_queue(queue_dir) if queue_dir.is_dir() else []:
        detail = request.reason if request.status == "FAILED" else ", ".join(request.results)
        ref = parse_checkpoint_ref(request.checkpoint)
        spec = request.spec
        table.add_row(
            request.id, " · ".join(quoted(spec.get(key), 40) for key in ("name", "dataset", "architecture")),
            f"{ref.repo}/{ref.path}@{ref.revision[:12]}", f"{request.threat_model} eps={request.eps:g}",
            "EDITED: will be refused" if request.edited else request.pinned[:12], request.status, detail or "",
            request.updated[:19].replace("T", " "),
        )
    console.print(table)
    return 0


def cmd_sample_size(args: argparse.Namespace) -> int:
    from .reports import sample_size_page
    from .reports.sample_size import SampleSizeConfig, run

    config = SampleSizeConfig.from_preset(
        args.preset, sizes=_ints(args.sizes, "--sizes") if args.sizes else None,
        eps=_floats(args.eps, "--eps") if args.eps else None, steps=args.steps, batch_size=args.batch_size,
        attack_steps=args.attack_steps, robust_examples=args.robust_examples, repeats=args.repeats, device=args.device,
        workers=args.workers, architecture=args.architecture, lr=args.lr, seed=args.seed, data_dir=args.data_dir,
    )
    result = run(config, log=lambda entry: err_console.print(sample_size_page.run_line(entry), highlight=False))
    json_path = Path(args.json) if args.json else Path(args.out).with_suffix(".json")
    return _print_report(sample_size_page, result, Path(args.out), json_path)


def cmd_explain(args: argparse.Namespace) -> int:
    from .reports import explain_page
    from .reports.explain import ExplainConfig, run

    config = ExplainConfig(
        model_yamls=args.model_yaml, classes=_ints(args.classes, "--classes") if args.classes else None,
        n_per_class=args.n_per_class, eps=args.eps, norm=args.norm, steps=args.steps, judge=args.judge,
        judge_steps=args.judge_steps, holdout=args.holdout, seed=args.seed, device=args.device, data_dir=args.data_dir,
    )
    result = run(config, log=lambda message: err_console.print(message, highlight=False, markup=False))
    return _print_report(explain_page, result, Path(args.out), Path(args.json) if args.json else None)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="robbench", description="Adversarial-robustness benchmark.")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="show registered architectures, datasets, threat models and attacks").set_defaults(
        func=cmd_list
    )

    evaluate = sub.add_parser("evaluate", help="clean and robust accuracy of a model.yaml submission")
    evaluate.add_argument("model_yaml")
    evaluate.add_argument("--threat-model", default="all", help="a threat model name, or 'all' (default)")
    evaluate.add_argument("--attacks", default="pgd,autoattack", help="comma-separated, run in order (default: pgd,autoattack)")
    evaluate.add_argument(
        "--n-examples", type=int, default=DEFAULT_N_EXAMPLES,
        help=f"first N test examples (default: {DEFAULT_N_EXAMPLES}, so pgd+autoattack of a robust small model fits "
        "10 minutes on 2 CPU cores)",
    )
    evaluate.add_argument("--batch-size", type=_batch_size, default="auto", help=BATCH_SIZE_HELP)
    evaluate.add_argument("--device", default="auto", help="auto, cpu or cuda")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--eps", type=float, default=None, help="evaluate at another radius (non-standard)")
    evaluate.add_argument("--results-dir", default="results")
    evaluate.add_argument("--data-dir", default=None, help="DIR/<dataset>/ holds the dataset files")
    evaluate.set_defaults(func=cmd_evaluate)

    verify = sub.add_parser(
        "verify", help="re-check records without attacking: checkpoint, clean predictions, every saved adversarial example"
    )
    verify.add_argument("record_json", nargs="+", help="record(s) written by `robbench evaluate` (their .adv.npz beside them)")
    verify.add_argument("--model", default=None, metavar="MODEL_YAML",
                        help="the submission (default: the model.yaml under --submissions-dir with the record's name)")
    verify.add_argument("--submissions-dir", default="submissions", help="where to look for the model.yaml (default: submissions)")
    verify.add_argument("--device", default="auto", help="auto, cpu or cuda")
    verify.add_argument("--data-dir", default=None, help="DIR/<dataset>/ holds the dataset files")
    verify.set_defaults(func=cmd_verify)

    train = sub.add_parser("train", help="train a reference baseline from a train.yaml")
    train.add_argument("config")
    train.add_argument("--out", default=None, help="output folder (default: runs/<name>)")
    train.add_argument("--device", default="auto")
    train.add_argument("--data-dir", default=None)
    train.add_argument("--resume", action="store_true", help="continue the interrupted run in --out where it stopped")
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

    submit = sub.add_parser("submit", help="upload an evaluated model to the Hugging Face Hub; prints its pinned hf:// line")
    submit.add_argument("model_yaml")
    submit.add_argument("--repo", required=True, help="hub model repo ORG/NAME (created if need be)")
    submit.add_argument("--private", action="store_true", help="create the repo private")
    submit.add_argument("--results-dir", default="results", help="where `robbench evaluate` wrote the model's results")
    submit.set_defaults(func=cmd_submit)

    queue = sub.add_parser("queue", help="the evaluation queue for hub submissions (leaderboard maintainers)")
    queue_sub = queue.add_subparsers(dest="queue_command", required=True)
    queue_add = queue_sub.add_parser("add", help="queue hf://ORG/REPO/PATH.safetensors@REVISION for evaluation")
    queue_add.add_argument("checkpoint")
    queue_add.add_argument("--threat-model", default=None, help="one threat model (default: the model's, else the dataset's)")
    queue_add.add_argument("--eps", type=float, default=None, help="another radius (non-standard); needs --threat-model")
    queue_add.add_argument("--results-dir", default="results", help="names held by these records are refused to other sources")
    queue_add.set_defaults(func=cmd_queue_add)
    queue_run = queue_sub.add_parser("run", help="evaluate pending requests one by one, writing results")
    queue_run.add_argument("--attacks", default="pgd,autoattack", help="comma-separated, run in order (default: pgd,autoattack)")
    queue_run.add_argument("--n-examples", type=int, default=DEFAULT_N_EXAMPLES,
                           help=f"first N test examples (default: {DEFAULT_N_EXAMPLES}; 10000 for a leaderboard entry)")
    queue_run.add_argument("--batch-size", type=_batch_size, default="auto", help=BATCH_SIZE_HELP)
    queue_run.add_argument("--device", default="auto", help="auto, cpu or cuda")
    queue_run.add_argument("--seed", type=int, default=0)
    queue_run.add_argument("--results-dir", default="results")
    queue_run.add_argument("--data-dir", default=None, help="DIR/<dataset>/ holds the dataset files")
    queue_run.set_defaults(func=cmd_queue_run)
    queue_status = queue_sub.add_parser("status", help="show every request and its status")
    queue_status.set_defaults(func=cmd_queue_status)
    for command in (queue_add, queue_run, queue_status):
        command.add_argument("--queue-dir", default="queue", help="folder of request files (default: queue)")

    sample = sub.add_parser(
        "sample-size",
        help="Tsipras et al. (2019) Figure 1: standard accuracy of standard vs adversarial training by training-set size",
    )
    sample.add_argument("--preset", default="cpu", choices=("cpu", "gpu"),
                        help="cpu (default): sizes 100..10000, eps 0,0.1, 800 steps, 2 worker processes; "
                             "gpu: sizes 100..60000, eps 0,0.1,0.2, 3000 steps; the options below override it")
    sample.add_argument("--sizes", default=None, help="comma-separated training-set sizes")
    sample.add_argument("--eps", default=None, help="comma-separated L-inf training radii; 0 (standard training) is required")
    sample.add_argument("--steps", type=int, default=None, help="SGD steps per model, whatever its training-set size")
    sample.add_argument("--batch-size", type=int, default=None)
    sample.add_argument("--attack-steps", type=int, default=None, help="PGD steps of adversarial training")
    sample.add_argument("--robust-examples", type=int, default=None, help="test images for the PGD-20 robust accuracy")
    sample.add_argument("--repeats", type=int, default=None, help="models per cell, with different seeds (averaged)")
    sample.add_argument("--architecture", default="small-cnn")
    sample.add_argument("--lr", type=float, default=0.05)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--device", default=None, help="cpu, auto or cuda (default: the preset's)")
    sample.add_argument("--workers", type=int, default=None,
                        help="on the CPU: models trained side by side, one thread each (default: 2); the numbers do not depend on it")
    sample.add_argument("--data-dir", default=None, help="DIR/fashion-mnist/ holds the dataset files")
    sample.add_argument("--out", default="leaderboards/reports/sample-size.md", help="markdown report; PNG and JSON go next to it")
    sample.add_argument("--json", default=None, metavar="PATH", help="the JSON (default: next to --out)")
    sample.set_defaults(func=cmd_sample_size)

    explain = sub.add_parser(
        "explain", help="Tsipras et al. (2019) Sec. 4: input gradients, large-eps targeted adversarial examples, interpolations"
    )
    explain.add_argument("model_yaml", nargs="+")
    explain.add_argument("--classes", default=None, help="comma-separated classes (default: all)")
    explain.add_argument("--n-per-class", type=int, default=10, help="test images per class for the numbers (default: 10)")
    explain.add_argument("--eps", type=float, default=4.0, help="radius of the large-eps examples (default: 4)")
    explain.add_argument("--norm", default="L2", choices=("L2", "Linf"))
    explain.add_argument("--steps", type=int, default=100, help="PGD steps of the large-eps examples (default: 100)")
    explain.add_argument("--judge", default=None, metavar="MODEL_YAML",
                         help="judge model (default: a standard small-cnn trained on test images --holdout..end)")
    explain.add_argument("--judge-steps", type=int, default=1500)
    explain.add_argument("--holdout", type=int, default=2000, help="explained images come from test[:H], the judge trains on test[H:]")
    explain.add_argument("--seed", type=int, default=0)
    explain.add_argument("--device", default="auto", help="auto, cpu or cuda")
    explain.add_argument("--data-dir", default=None)
    explain.add_argument("--out", default="leaderboards/reports/explain.md", help="markdown page; the PNGs go next to it")
    explain.add_argument("--json", default=None, metavar="PATH", help="also write every number as JSON")
    explain.set_defaults(func=cmd_explain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        code = args.func(args)
        if "robbench.distributed" in sys.modules:  # a command that ran under torchrun: leave together
            sys.modules["robbench.distributed"].leave()
        return code
    except RobbenchError as exc:
        err_console.print(f"robbench: error: {one_line(exc.cli_message())}", highlight=False, markup=False, soft_wrap=True)
        return 2
    except AttackBugError as exc:  # not the user's input: say so, with its own status
        err_console.print(f"robbench: attack bug: {exc}", highlight=False, markup=False, soft_wrap=True)
        return 3
    except KeyboardInterrupt:
        err_console.print("robbench: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
