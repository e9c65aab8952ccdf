"""What the ``robbench`` command shows and its shared options: consoles, progress bars, list options, sub-commands.

In a terminal, rich fits output to the window. Anywhere else (a pipe, a file, a CI log) nothing is
wrapped or cut: lines keep whole paths and table rows, whatever ``COLUMNS`` says.
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .errors import RobbenchError

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
    """A ``ProgressFactory`` backed by rich bars with ETA; fractional advances move a bar within a batch."""
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
    """A number where the text is one; ``evaluate`` refuses anything but a positive number or 'auto'."""
    try:
        return int(text)
    except ValueError:
        return text


def batch_size_option(parser: argparse.ArgumentParser) -> None:
    """``--batch-size``, on every sub-command that evaluates (``evaluate``, ``queue run``)."""
    parser.add_argument(
        "--batch-size", type=batch_size, default="auto",
        help="examples per batch, or 'auto' (default): on CUDA half the largest batch whose gradient pass fits in "
             "memory, elsewhere 500; the record holds the number used",
    )


def threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads``, on every sub-command that computes (see ``robbench.threads``)."""
    parser.add_argument(
        "--threads", type=int, default=None, metavar="N",
        help="CPU threads for torch (default: the cores free for this process: affinity and cgroup quota minus the load; "
             "OMP_NUM_THREADS, when set, is kept)",
    )


def adaptive_options(parser: argparse.ArgumentParser) -> None:
    """``--adaptive`` and its budget, on ``evaluate`` and ``queue run`` (see docs/adaptive.md)."""
    parser.add_argument("--adaptive", action="store_true",
                        help="after pgd,autoattack, the escalations each fired reliability flag calls for (docs/adaptive.md)")
    parser.add_argument("--adaptive-rounds", type=int, default=3, metavar="N",
                        help="at most N rounds of escalations (default: 3)")
    parser.add_argument("--adaptive-seconds", type=float, default=None, metavar="S",
                        help="start no escalation after S seconds of escalations (default: no limit)")


def adaptive_budget(args: argparse.Namespace):
    """The ``--adaptive`` budget (``robbench.adaptive.Budget``), or None without ``--adaptive``."""
    from .adaptive import Budget

    return Budget(rounds=args.adaptive_rounds, seconds=args.adaptive_seconds) if args.adaptive else None


def subcommands(parser: argparse.ArgumentParser, command: str) -> argparse._SubParsersAction:
    """Sub-parsers whose absence is reported in words: ``robbench queue: error: missing sub-command: add, run or status``."""
    sub = parser.add_subparsers(dest=f"{command}_command", title="sub-commands", metavar="SUB-COMMAND")

    def missing(args: argparse.Namespace) -> int:
        names = list(sub.choices)
        parser.error(f"missing sub-command: {', '.join(names[:-1])} or {names[-1]}")

    parser.set_defaults(func=missing)
    return sub
