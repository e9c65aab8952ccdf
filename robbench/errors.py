"""The one exception type users see: a one-line message that names the problem and the fix."""

from __future__ import annotations

import os

#: the most characters of one user value a message quotes (YAML aliases can expand a value to megabytes)
QUOTE_LIMIT = 120


class RobbenchError(Exception):
    """An error caused by the user's input or environment, not by a bug in robbench.

    The CLI prints it as a single line (no traceback) and exits with status 2.
    """


def quoted(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` (paths as their text), cut to ``limit`` characters: any value, one short line.

    repr() escapes newlines and control characters, so a quoted value never splits a message.
    """
    text = repr(os.fspath(value)) if isinstance(value, os.PathLike) else repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, cut to ``limit`` characters (its type name if empty)."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__
