"""The exceptions users see, each a one-line message, and how an exception (a pydantic validation error
included) becomes one line.

The CLI maps them to exit statuses: ``RobbenchError`` (the input or the environment: fix it and
rerun) exits 2, ``AttackBugError`` (robbench or a plugin attack is wrong: report it) exits 3.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError

#: the most characters of one user value a message quotes (YAML aliases can expand a value to megabytes)
QUOTE_LIMIT = 120


class RobbenchError(Exception):
    """An error caused by the user's input or environment, not by a bug in robbench.

    The CLI prints it as a single line (no traceback) and exits with status 2. A bad argument
    names its ``parameter``: the message starts with the parameter's name for API callers
    (``batch_size must be ...``) and with the flag on the command line (``--batch-size must be ...``).
    """

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        self.parameter, self.problem = parameter, message
        super().__init__(f"{parameter} {message}" if parameter else message)

    def cli_message(self) -> str:
        """The message with the parameter spelled as the command line's flag."""
        if not self.parameter:
            return str(self)
        return f"--{self.parameter.replace('_', '-')} {self.problem}"


class AttackBugError(Exception):
    """An attack returned a point that verification refuses: a bug in the attack, not in the input.

    No number is recorded. The CLI prints it as a single line and exits with status 3.
    """


def first_line(text: str | None, limit: int = 200) -> str:
    """The first non-empty line of ``text``, at most ``limit`` characters ('' for none)."""
    lines = (text or "").strip().splitlines()
    return lines[0][:limit] if lines else ""


def exception_summary(exc: BaseException) -> str:
    """One line for an exception from third-party code: its message's first line, else its type."""
    return first_line(str(exc)) or type(exc).__name__


def quoted(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` (paths as their text), cut to ``limit`` characters: any value, one short line.

    repr() escapes newlines and control characters, so a quoted value never splits a message.
    """
    text = repr(os.fspath(value)) if isinstance(value, os.PathLike) else repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


#: the most problems one message lists (a hostile file can have thousands); the rest are counted
MAX_LISTED_PROBLEMS = 20
#: what pydantic puts before the message of a validator's ValueError / assertion
_PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")


def describe_validation_error(where: "str | os.PathLike", exc: "ValidationError", what: str = "") -> str:
    """The one line for any pydantic validation error (a model.yaml, a record, a queue request, a report's
    settings): ``where``, then ``what`` it is not (``invalid record``), then every problem with its key, in
    pydantic's order, without pydantic's own prefixes."""
    problems = [_describe_problem(error) for error in exc.errors()]
    head = f"{os.fspath(where)}: {what + ': ' if what else ''}"
    if len(problems) == 1:
        return head + problems[0]
    listed = "; ".join(problems[:MAX_LISTED_PROBLEMS])
    more = f" (and {len(problems) - MAX_LISTED_PROBLEMS} more)" if len(problems) > MAX_LISTED_PROBLEMS else ""
    return f"{head}{len(problems)} problems: {listed}{more}"


def _describe_problem(error: Any) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown key {quoted(key)}; remove it or check its spelling"
    if kind == "missing":
        return f"missing required key {quoted(key)}"
    message = error["msg"]
    for prefix in _PYDANTIC_PREFIXES:
        message = message.removeprefix(prefix)
    return f"key {quoted(key)}: {message} (got {quoted(error.get('input'))})"  # bounded: YAML aliases can blow up
