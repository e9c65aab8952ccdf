"""What the ``robbench`` command shows and its shared options: consoles, progress bars, list options, sub-commands.

In a terminal, rich fits output to the window. Anywhere else (a pipe, a file, a CI log) nothing is
wrapped or cut: lines keep whole paths and table rows, whatever ``COLUMNS`` says.
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..config import DEFAULT_N_EXAMPLES
from ..errors import RobbenchError
from ..progress import LineProgress
from ..run_options import DEFAULT_ATTACKS, RunOptions

UNWRAPPED_WIDTH = 100_000  # rich's width off a terminal: wide enough that no line or table is ever wrapped

console = Console()
err_console = Console(stderr=True)


def fit_output() -> None:
    """Wrap to the window on a terminal; never wrap or truncate elsewhere. Checked per command (streams change)."""
    for stream in (console, err_console):
        stream.width = None  # back to rich's own measure, then decide
        if not stream.is_terminal:
            stream.width = UNWRAPPED_WIDTH
        stream.soft_wrap = not stream.is_terminal


@contextmanager
def progress_bars() -> Iterator:
    """A ``ProgressFactory`` backed by rich bars with ETA on a terminal (fractional advances move a bar within a
    batch), plain lines elsewhere (``LineProgress``)."""
    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("eta"), TimeRemainingColumn(),
    )
    from ..distributed import is_main_process

    if not is_main_process():  # under torchrun, rank 0 alone shows progress
        yield lambda description, total: (lambda n: None)
        return
    if not err_console.is_terminal:  # a pipe or a log: plain lines, never a bar redrawn into a file
        yield LineProgress()
        return
    with Progress(*columns, console=err_console, transient=False) as bars:

        class Bars:
            def say(self, text: str) -> None:
                bars.console.print(text, highlight=False, markup=False)

            def __call__(self, description: str, total: int):
                task = bars.add_task(description, total=total)
                return lambda n: bars.advance(task, n)

        try:
            yield Bars()
        except BaseException:
            bars.live.transient = True  # a failed command ends with its one-line error alone
            raise


def comma_separated(text: str, option: str, convert: Callable[[str], Any] = str, kind: str = "names",
                    example: str | None = None) -> list:
    """The values of a comma-separated option, each through ``convert``; refused when none or one is malformed."""
    try:
        values = [convert(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise RobbenchError(f"{option} takes comma-separated {kind}, got {text!r}") from exc
    if not values:
        raise RobbenchError(f"{option} is empty" + (f"; pass e.g. {example}" if example else ""))
    return values


def floats(text: str, option: str) -> list[float]:
    return comma_separated(text, option, float, "numbers")


def ints(text: str, option: str) -> list[int]:
    return comma_separated(text, option, int, "integers")


def batch_size(text: str) -> "int | str":
    """A number where the text is one; ``RunOptions`` refuses anything but a positive number or 'auto'."""
    try:
        return int(text)
    except ValueError:
        return text


#: the flags of a run, each declared here once: ``add_run_flags`` puts them on the sub-commands that take them
RUN_FLAGS: dict[str, tuple[str, dict[str, Any]]] = {
    "attacks": ("--attacks", dict(
        default=DEFAULT_ATTACKS, metavar="SPECS",
        help="attacks run in order, comma-separated, each NAME or NAME(KEY=VALUE,...) with YAML values, e.g. "
             "'pgd(steps=100,restarts=5),autoattack' (quote it in a shell; default: %(default)s)",
    )),
    "n_examples": ("--n-examples", dict(
        type=int, default=DEFAULT_N_EXAMPLES, metavar="N",
        help="the first N test examples (default: %(default)s, so pgd+autoattack of a robust small model fits "
             "10 minutes on 2 CPU cores; a leaderboard entry uses 10000)",
    )),
    "batch_size": ("--batch-size", dict(
        type=batch_size, default="auto",
        help="examples per batch, or 'auto' (default): on CUDA half the largest batch whose gradient pass fits in "
             "memory, elsewhere 500; the record holds the number used",
    )),
    "device": ("--device", dict(default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")),
    "seed": ("--seed", dict(type=int, default=0, help="seed of every random step (default: %(default)s)")),
    "data_dir": ("--data-dir", dict(default=None, metavar="DIR", help="DIR/<dataset>/ holds the dataset files")),
    "results_dir": ("--results-dir", dict(
        default="results", metavar="DIR",
        help="the result records, as DIR/<dataset>/<threat-model>/<name>/<run>.json (default: %(default)s)",
    )),
    "prediction_draws": ("--prediction-draws", dict(
        type=int, default=1, metavar="K",
        help="forward passes each prediction averages (mean softmax), for randomized models; clean pass, attacks and "
             "verification all use the average (default: %(default)s; see docs/attacks.md)",
    )),
    "redraws": ("--redraws", dict(
        type=int, default=10, metavar="R",
        help="re-verify each break R more times when the model is randomized or K > 1; the record keeps the rate "
             "(default: %(default)s)",
    )),
    "adaptive": ("--adaptive", dict(
        action="store_true",
        help="after the attacks, the escalations each fired reliability flag calls for, on the examples left "
             "(docs/adaptive.md)",
    )),
    "adaptive_rounds": ("--adaptive-rounds", dict(
        type=int, default=3, metavar="N", help="with --adaptive: at most N rounds of escalations (default: %(default)s)",
    )),
    "adaptive_seconds": ("--adaptive-seconds", dict(
        type=float, default=None, metavar="S",
        help="with --adaptive: start no escalation after S seconds of escalations (default: no limit)",
    )),
    "threads": ("--threads", dict(
        type=int, default=None, metavar="N",
        help="CPU threads for torch (default: the cores free for this process: affinity and cgroup quota minus the load; "
             "OMP_NUM_THREADS, when set, is kept; verify: each CPU record's own, as its config.device names them)",
    )),
}
#: what every sub-command that evaluates takes (``evaluate``, ``queue run``): ``run_options`` reads them
EVALUATION_FLAGS = tuple(RUN_FLAGS)


def add_run_flags(parser: argparse.ArgumentParser, names: tuple[str, ...] = EVALUATION_FLAGS, **defaults: Any) -> None:
    """Add the run flags ``names`` to ``parser``; ``defaults`` give a sub-command its own defaults (shown in --help).

    ``--threads`` is set by ``robbench.cli.main`` for every command that takes it, before the command runs:
    it is the process's, not a run's (records hold the device description, threads included).
    """
    for name in names:
        flag, options = RUN_FLAGS[name]
        parser.add_argument(flag, **options)
    parser.set_defaults(**defaults)


def run_options(args: argparse.Namespace) -> RunOptions:
    """The ``RunOptions`` of a sub-command with ``EVALUATION_FLAGS``; a bad option is a one-line error naming its flag."""
    from ..adaptive import Budget

    return RunOptions(
        attacks=args.attacks, n_examples=args.n_examples, batch_size=args.batch_size, device=args.device,
        seed=args.seed, data_dir=args.data_dir, results_dir=Path(args.results_dir),
        prediction_draws=args.prediction_draws, redraws=args.redraws,
        adaptive=Budget(rounds=args.adaptive_rounds, seconds=args.adaptive_seconds) if args.adaptive else None,
    )


def subcommands(parser: argparse.ArgumentParser, command: str) -> argparse._SubParsersAction:
    """Sub-parsers whose absence is reported in words: ``robbench queue: error: missing sub-command: add, run or status``."""
    sub = parser.add_subparsers(dest=f"{command}_command", title="sub-commands", metavar="SUB-COMMAND")

    def missing(args: argparse.Namespace) -> int:
        names = list(sub.choices)
        parser.error(f"missing sub-command: {', '.join(names[:-1])} or {names[-1]}")

    parser.set_defaults(func=missing)
    return sub
