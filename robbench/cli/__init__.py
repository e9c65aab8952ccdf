"""The ``robbench`` command: parses arguments, calls the library, prints. No logic of its own.

The parser and the commands are here (``main`` is the console entry point); the Hub commands
(``submit``, ``publish``, ``queue``) are in ``hub_commands``, the output and shared options in ``terminal``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Sequence

from rich.markup import escape
from rich.table import Table

from ..errors import AttackBugError, RobbenchError
from ..formats import percent
from .terminal import (
    add_run_flags, console, err_console, fit_output, floats, ints, progress_bars, run_options, subcommands,
)

if TYPE_CHECKING:
    from ..results import EvalRecord

#: a message longer than this is cut: the promise is one line, whatever a value expands to
MESSAGE_LIMIT = 1000
#: ``sample-size --device``'s default: the preset's device
PRESET = "preset"
#: ``verify`` lists this many failed checks of a record, then counts the rest
FAILURES_SHOWN = 20


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are robbench's one-line errors (exit 2, no usage dump)."""

    def error(self, message: str) -> NoReturn:
        raise RobbenchError(f"{message}; see `{self.prog} --help`")


def one_line(message: str) -> str:
    """``message`` on one line of bounded length, whatever it quotes."""
    flat = message.replace("\r", "\\r").replace("\n", "\\n")
    return flat if len(flat) <= MESSAGE_LIMIT else f"{flat[: MESSAGE_LIMIT - 1]}…"


def cmd_list(args: argparse.Namespace) -> int:
    from ..attacks import ATTACKS
    from ..data import DATASETS
    from ..data import threat_models_text
    from ..models import ARCHITECTURES

    table = Table(title="robbench registry")
    for column in ("kind", "name", "source", "description"):
        table.add_column(column)
    for registry in (ARCHITECTURES, DATASETS, ATTACKS):
        for entry in registry.entries():
            description = entry.description
            if registry is DATASETS:
                description += f" [threat models: {threat_models_text(entry.name)}]"
            # plain text: rich would take the '[threat models: ...]' (or a plugin's brackets) for markup and drop it
            table.add_row(*(escape(cell) for cell in (registry.kind, entry.name, entry.source, description)))
    console.print(table)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..pipeline import evaluate
    from ..store import record_path

    options = run_options(args)
    attacks = [request.name for request in options.attacks]
    started = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    with progress_bars() as progress:
        records = evaluate(args.model_yaml, options, threat_models=args.threat_model, eps=args.eps, progress=progress)
    from ..distributed import is_main_process

    if not is_main_process():  # under torchrun, rank 0 wrote the records and prints them
        return 0
    table = Table(title=f"{records[0].name} on {records[0].dataset} ({records[0].n_examples} test examples)")
    for column in ("threat model", "eps", "clean %", *[f"{a} %" for a in attacks], "robust %", "seconds"):
        table.add_column(column, justify="right")
    paths = []
    for record in records:
        path = record_path(options.results_dir, record)
        paths.append(path)
        if record.config.escalation is not None:
            continue
        attack_cells = [percent(record.attack_accuracies.get(a)) for a in attacks]
        eps = f"{record.threat_model.eps:g}" + ("" if record.threat_model.standard else " (non-standard)")
        table.add_row(
            record.threat_model.name, eps, percent(record.clean_accuracy), *attack_cells,
            percent(record.robust_accuracy), f"{record.wall_time_s:.0f}",
        )
        for note in record.notes:
            err_console.print(f"note: {note}")
        for flag in record.flags:
            err_console.print(f"flag {flag.code}: {flag.message}", highlight=False, markup=False, soft_wrap=True)
    console.print(table)
    for record in records:
        if record.config.escalation is not None:
            console.print(escalation_line(record), highlight=False)
    for record, path in zip(records, paths):  # a stored protocol run that --adaptive continued was not rewritten
        adversarial = record.adversarial_examples
        also = f" and its {adversarial.count:,} adversarial examples {path.with_name(adversarial.file)}" if adversarial else ""
        console.print(f"{'wrote' if record.timestamp >= started else 'continued'} {path}{also}", highlight=False)
    return 0


def escalation_line(record: EvalRecord) -> str:
    """``escalation round 1 (masked-gradients), rays: broke 12 of 107 left; robust 9.50 %``."""
    escalation, [attack] = record.config.escalation, record.attacks
    left = attack.stages[0].n_attacked
    broken = sum(stage.n_broken for stage in attack.stages)
    return (f"escalation round {escalation.round} ({', '.join(escalation.flags)}), {attack.name}: broke {broken} of "
            f"{left} left in {record.wall_time_s:.0f} s; robust {percent(record.robust_accuracy)} %")


def cmd_verify(args: argparse.Namespace) -> int:
    from ..verify import new_replay_seed, verify_record

    replay = None if args.replay is None else "all" if args.replay == "all" else _positive_int(args.replay, "--replay")
    seed = args.replay_seed if args.replay_seed is not None else new_replay_seed() if replay not in (None, "all") else None
    if seed is not None:
        err_console.print(f"replay seed {seed} (repeat with --replay-seed {seed})", highlight=False)
    failed = unchecked = 0
    for record_file in args.record_json:
        try:
            verdict = verify_record(
                Path(record_file), args.model, submissions_dir=Path(args.submissions_dir), data_dir=args.data_dir,
                device=args.device, replay=replay, replay_seed=seed,
                results_dir=Path(args.results_dir) if args.results_dir else None, threads=args.threads,
            )
        except RobbenchError as exc:  # this record cannot be checked here; the others still can
            if len(args.record_json) == 1:
                raise
            unchecked += 1
            err_console.print(one_line(f"{record_file}: cannot check: {exc}"), highlight=False, markup=False, soft_wrap=True)
            continue
        failed += not verdict.ok
        line = f"{record_file}: {verdict.summary()}"
        (console if verdict.ok else err_console).print(line, highlight=False, markup=False, soft_wrap=True)
        shown = verdict.failures[:FAILURES_SHOWN]
        for failure in shown:
            err_console.print(one_line(f"  failed: {failure}"), highlight=False, markup=False, soft_wrap=True)
        if len(verdict.failures) > len(shown):
            err_console.print(f"  and {len(verdict.failures) - len(shown):,} more", highlight=False)
    if len(args.record_json) > 1:
        checked = len(args.record_json) - unchecked
        err_console.print(f"{checked - failed} of {len(args.record_json)} records verified, {failed} failed, "
                          f"{unchecked} could not be checked", highlight=False)
    return 1 if failed else 2 if unchecked else 0


def _positive_int(text: str, option: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise RobbenchError(f"{option}: expected a positive number or 'all', got {text!r}")
    return int(text)


def cmd_train(args: argparse.Namespace) -> int:
    from ..config import load_train_spec
    from ..training.loop import train

    spec = load_train_spec(args.config)
    out_dir = Path(args.out or Path("runs") / spec.name)

    def log(entry: dict) -> None:
        console.print(
            f"epoch {entry['epoch']}: loss {entry['loss']:.4f}  clean {percent(entry['clean_accuracy'])}%  "
            f"pgd {percent(entry['pgd_accuracy'])}%  "
            + (
                f"held-out clean {percent(entry['holdout_clean_accuracy'])}% pgd {percent(entry['holdout_pgd_accuracy'])}%  "
                if "holdout_pgd_accuracy" in entry else ""
            )
            + f"lr {entry['lr']:.4g}  {entry['seconds']:.0f}s",
            highlight=False,
        )

    with progress_bars() as progress:
        train_log = train(
            spec, out_dir, device=args.device, data_dir=args.data_dir, resume=args.resume, progress=progress, log=log
        )
    from ..distributed import is_main_process

    if not is_main_process():  # under torchrun, rank 0 wrote the submission and reports it
        return 0
    if train_log["stopped_early"]:
        console.print(f"stopped early: {train_log['stopped_early']}", highlight=False)
    console.print(f"kept epoch {train_log['selected_epoch']}; {train_log['cost']['total_seconds']:.0f}s in all", highlight=False)
    console.print(f"wrote {out_dir / 'model.safetensors'}, {out_dir / 'model.yaml'}, {out_dir / 'train_log.json'}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from ..leaderboard import check_leaderboards, write_leaderboards

    given, out_dir = [Path(folder) for folder in args.results_dirs or []], Path(args.out)
    results_dirs, urls = given or [Path("results")], {}
    if args.from_hub:  # records published with `robbench publish`, pinned to a commit and verified; any --results-dir beside them
        from ..publishing.hub_publish import results_from_hub

        published, urls[published] = results_from_hub(args.from_hub)
        results_dirs = [published, *given]
    results_text = " beside ".join(str(folder) for folder in results_dirs)
    if args.check:
        stale, problems = check_leaderboards(results_dirs, out_dir, urls)
        for problem in problems:
            err_console.print(f"skipped invalid record: {problem}")
        if stale:
            err_console.print(f"robbench: error: {len(stale)} leaderboard file(s) out of date: {', '.join(stale)}; run `robbench leaderboard`")
            return 1
        console.print(f"{out_dir} is up to date with {results_text}")
        return 0
    written, problems = write_leaderboards(results_dirs, out_dir, urls)
    for problem in problems:
        err_console.print(f"skipped invalid record: {problem}")
    console.print(f"wrote {len(written)} file(s) under {out_dir}")
    return 0


def _print_report(page, result, markdown_path: Path, json_path: Path | None) -> int:
    """Every report the same way: its tables and lines, the files written, its problems (exit 1)."""
    from ..reports.common import write_report

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
    from ..reports import tradeoff_page
    from ..reports.tradeoff import TradeoffConfig, run

    config = TradeoffConfig(
        d=args.d, p=args.p, eta=args.eta, n_train=args.n_train, n_test=args.n_test,
        train_eps=floats(args.train_eps, "--train-eps"), steps=args.steps, lr=args.lr,
        attacks=args.attacks,
        bound_ps=floats(args.bound_p, "--bound-p"), bound_standards=floats(args.bound_standard, "--bound-standard"),
        seed=args.seed, device=args.device,
    )
    return _print_report(tradeoff_page, run(config), Path(args.out), Path(args.json) if args.json else None)


def cmd_sample_size(args: argparse.Namespace) -> int:
    from ..reports import sample_size_page
    from ..reports.sample_size import SampleSizeConfig, run

    config = SampleSizeConfig.from_preset(
        args.preset, sizes=ints(args.sizes, "--sizes") if args.sizes else None,
        eps=floats(args.eps, "--eps") if args.eps else None, steps=args.steps, batch_size=args.batch_size,
        attack_steps=args.attack_steps, robust_examples=args.robust_examples, repeats=args.repeats,
        device=None if args.device == PRESET else args.device,
        workers=args.workers, architecture=args.architecture, lr=args.lr, seed=args.seed, data_dir=args.data_dir,
    )
    result = run(config, log=lambda entry: err_console.print(sample_size_page.run_line(entry), highlight=False))
    json_path = Path(args.json) if args.json else Path(args.out).with_suffix(".json")
    return _print_report(sample_size_page, result, Path(args.out), json_path)


def cmd_explain(args: argparse.Namespace) -> int:
    from ..reports import explain_page
    from ..reports.explain import ExplainConfig, run

    config = ExplainConfig(
        model_yamls=args.model_yaml, classes=ints(args.classes, "--classes") if args.classes else None,
        n_per_class=args.n_per_class, eps=args.eps, norm=args.norm, steps=args.steps, judge=args.judge,
        judge_steps=args.judge_steps, holdout=args.holdout, seed=args.seed, device=args.device, data_dir=args.data_dir,
    )
    result = run(config, log=lambda message: err_console.print(message, highlight=False, markup=False))
    return _print_report(explain_page, result, Path(args.out), Path(args.json) if args.json else None)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    from .hub_commands import add_hub_commands

    parser = ArgumentParser(prog="robbench", description="Adversarial-robustness benchmark.")
    parser.add_argument("--version", action="version", version=f"robbench {__version__}", help="print the version and exit")
    sub = subcommands(parser, "robbench")

    sub.add_parser("list", help="show registered architectures, datasets, threat models and attacks").set_defaults(
        func=cmd_list
    )

    evaluate = sub.add_parser("evaluate", help="clean and robust accuracy of a model.yaml submission")
    evaluate.add_argument("model_yaml", help="a model.yaml, a committed submission's name, or hf://ORG/REPO@REVISION[/PATH]")
    evaluate.add_argument("--threat-model", default="all", help="a threat model name, or 'all' (default)")
    evaluate.add_argument("--eps", type=float, default=None, help="evaluate at another radius (non-standard)")
    add_run_flags(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    verify = sub.add_parser(
        "verify", help="re-check records: every derivable claim, the clean predictions and every saved adversarial "
                       "example (seconds); with --replay, attack claimed survivors again (minutes)"
    )
    verify.add_argument("record_json", nargs="+", help="record(s) written by `robbench evaluate` (their .adv.npz beside them)")
    verify.add_argument("--model", default=None, metavar="MODEL_YAML",
                        help="the submission, a model.yaml or hf://ORG/REPO@REVISION (default: for a hub-evaluated record "
                             "the model.yaml at the commit it pins, else the one under --submissions-dir with the record's name)")
    verify.add_argument("--submissions-dir", default="submissions", help="where to look for the model.yaml, as DIR/<dataset>/<folder>/model.yaml (default: submissions)")
    add_run_flags(verify, ("device", "data_dir", "threads", "results_dir"), results_dir=None)
    verify.add_argument("--replay", default=None, metavar="N|all",
                        help="also attack N claimed survivors again with the record's attacks and a fresh seed, "
                             "or re-run the whole evaluation and compare example by example (all)")
    verify.add_argument("--replay-seed", type=int, default=None, metavar="SEED",
                        help="the replay seed to repeat (default: a fresh one, printed)")
    verify.set_defaults(func=cmd_verify)

    train = sub.add_parser("train", help="train a reference baseline from a train.yaml")
    train.add_argument("config", help="a train.yaml")
    train.add_argument("--out", default=None, help="output folder (default: runs/<name>)")
    train.add_argument("--resume", action="store_true", help="continue the interrupted run in --out where it stopped")
    add_run_flags(train, ("device", "data_dir", "threads"))
    train.set_defaults(func=cmd_train)

    board = sub.add_parser("leaderboard", help="render the leaderboards (markdown pages, plots and a static website under OUT/site) from the results")
    board.add_argument("--results-dir", dest="results_dirs", action="append", metavar="DIR",  # not the run flag: repeatable
                       help="the records to render (default: results); repeat it to rank the records of later folders "
                            "beside the first's (--results-dir results --results-dir my-results --out my-boards)")
    board.add_argument("--out", default="leaderboards", help="where the boards go; the website goes to OUT/site (default: leaderboards)")
    board.add_argument("--from-hub", default=None, metavar="ORG/NAME@REVISION",
                       help="render the records `robbench publish` put in this hub dataset repo, at this revision, instead of results/ (any --results-dir beside them)")
    board.add_argument("--check", action="store_true", help="exit 1 if the rendered files differ from --out")
    board.set_defaults(func=cmd_leaderboard)
    tradeoff = sub.add_parser(
        "tradeoff", help="Tsipras et al. (2019) Theorem 2.1: the robustness/accuracy bound, closed forms and trained models"
    )
    tradeoff.add_argument("--d", type=int, default=100, help="number of weak features (default: 100)")
    tradeoff.add_argument("--p", type=float, default=0.9, help="P(x1 = y) (default: 0.9)")
    tradeoff.add_argument("--eta", type=float, default=None, help="weak-feature mean (default: 3/sqrt(d))")
    tradeoff.add_argument("--n-train", type=int, default=2000, help="training samples per trained classifier (default: 2000)")
    tradeoff.add_argument("--n-test", type=int, default=10000, help="test samples (default: 10000)")
    tradeoff.add_argument("--train-eps", default="0,0.5,1,1.5,2", help="training radii in multiples of eta; 0 is standard training")
    tradeoff.add_argument("--steps", type=int, default=200, help="full-batch Adam steps per trained model (default: 200)")
    tradeoff.add_argument("--lr", type=float, default=0.05, help="Adam learning rate (default: 0.05)")
    tradeoff.add_argument("--bound-p", default="0.9,0.95", help="p values for the bound table")
    tradeoff.add_argument("--bound-standard", default="0.9,0.95,0.99", help="standard accuracies for the bound table")
    tradeoff.add_argument("--out", default="leaderboards/reports/tradeoff.md", help="markdown report; the PNG goes next to it")
    tradeoff.add_argument("--json", default=None, metavar="PATH", help="also write every number as JSON")
    add_run_flags(tradeoff, ("attacks", "seed", "device", "threads"), attacks="pgd", device="cpu")  # run at eps = 2·eta
    tradeoff.set_defaults(func=cmd_tradeoff)

    add_hub_commands(sub)

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
    sample.add_argument("--batch-size", type=int, default=None, help="training batch size (default: the preset's)")
    sample.add_argument("--attack-steps", type=int, default=None, help="PGD steps of adversarial training")
    sample.add_argument("--robust-examples", type=int, default=None, help="test images for the PGD-20 robust accuracy")
    sample.add_argument("--repeats", type=int, default=None, help="models per cell, with different seeds (averaged)")
    sample.add_argument("--architecture", default="small-cnn", help="a registered architecture (default: small-cnn)")
    sample.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (default: 0.05)")
    sample.add_argument("--workers", type=int, default=None,
                        help="on the CPU: models trained side by side, one thread each (default: 2); the numbers do not depend on it")
    add_run_flags(sample, ("seed", "device", "data_dir"), device=PRESET)
    sample.add_argument("--out", default="leaderboards/reports/sample-size.md", help="markdown report; PNG and JSON go next to it")
    sample.add_argument("--json", default=None, metavar="PATH", help="the JSON (default: next to --out)")
    sample.set_defaults(func=cmd_sample_size)  # no --threads: each model trains on one thread, so numbers never depend on it

    explain = sub.add_parser(
        "explain", help="Tsipras et al. (2019) Sec. 4: input gradients, large-eps targeted adversarial examples, interpolations"
    )
    explain.add_argument("model_yaml", nargs="+", help="the models to compare, each a model.yaml")
    explain.add_argument("--classes", default=None, help="comma-separated classes (default: all)")
    explain.add_argument("--n-per-class", type=int, default=10, help="test images per class for the numbers (default: 10)")
    explain.add_argument("--eps", type=float, default=4.0, help="radius of the large-eps examples (default: 4)")
    explain.add_argument("--norm", default="L2", choices=("L2", "Linf"), help="norm of the large-eps examples (default: L2)")
    explain.add_argument("--steps", type=int, default=100, help="PGD steps of the large-eps examples (default: 100)")
    explain.add_argument("--judge", default=None, metavar="MODEL_YAML",
                         help="judge model (default: a standard small-cnn trained on test images --holdout..end)")
    explain.add_argument("--judge-steps", type=int, default=1500, help="training steps of the default judge (default: 1500)")
    explain.add_argument("--holdout", type=int, default=2000, help="explained images come from test[:H], the judge trains on test[H:]")
    explain.add_argument("--out", default="leaderboards/reports/explain.md", help="markdown page; the PNGs go next to it")
    explain.add_argument("--json", default=None, metavar="PATH", help="also write every number as JSON")
    add_run_flags(explain, ("seed", "device", "data_dir", "threads"))
    explain.set_defaults(func=cmd_explain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    fit_output()
    try:
        args = build_parser().parse_args(argv)
        with warnings.catch_warnings():
            warnings.showwarning = _warn
            if "threads" in args:  # the commands that compute
                from ..threads import apply_threads

                apply_threads(args.threads)
            code = args.func(args)
        if "robbench.distributed" in sys.modules:  # a command that ran under torchrun: leave together
            sys.modules["robbench.distributed"].leave()
        return code
    except RobbenchError as exc:
        err_console.print(f"robbench: error: {one_line(exc.cli_message())}", highlight=False, markup=False, soft_wrap=True)
        return 2
    except AttackBugError as exc:  # not the user's input: say so, with its own status
        err_console.print(f"robbench: attack bug: {one_line(str(exc))}", highlight=False, markup=False, soft_wrap=True)
        return 3
    except KeyboardInterrupt:
        err_console.print("robbench: interrupted")
        return 130


def _warn(message, category, *details) -> None:
    """robbench's own warnings (a deprecated syntax) as one line; others as Python prints them."""
    from ..hub_ref import HubRefDeprecation

    if issubclass(category, HubRefDeprecation):
        err_console.print(f"robbench: warning: {message}", highlight=False, markup=False, soft_wrap=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, *details[:2]))


if __name__ == "__main__":
    sys.exit(main())
