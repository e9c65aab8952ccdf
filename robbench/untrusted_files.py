"""Reading files that strangers made: a regular file of bounded size, checked before a byte is read.

A FIFO would block a reader forever, a link to ``/dev/zero`` would feed it until memory runs out,
and a multi-gigabyte file would be read whole. Each reader names its documented limit
(``robbench.store`` for records and adversarial-example files, ``robbench.config`` for model.yaml).
"""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from .errors import RobbenchError


@contextmanager
def open_untrusted(path: Path, max_bytes: int, what: str, fix: str = "remove it") -> Iterator[BinaryIO]:
    """``path`` opened for reading once it is known to be a regular file of at most ``max_bytes``.

    Opened non-blocking (a FIFO would otherwise wait for a writer) and checked on the open file,
    so a link to ``/dev/zero`` or a FIFO is refused without reading from it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise RobbenchError(f"{path}: cannot open the {what} ({exc.strerror or exc})") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RobbenchError(f"{path}: the {what} is not a regular file (a FIFO, device or folder); remove it")
        if info.st_size > max_bytes:
            raise RobbenchError(f"{path}: the {what} is {info.st_size:,} bytes, over the limit of {max_bytes:,}; {fix}")
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        yield handle


def read_untrusted(path: Path, max_bytes: int, what: str, fix: str = "remove it") -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (see ``open_untrusted``); it may not grow while read."""
    with open_untrusted(path, max_bytes, what, fix) as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise RobbenchError(f"{path}: the {what} grew past the limit of {max_bytes:,} bytes while read; {fix}")
    return data
