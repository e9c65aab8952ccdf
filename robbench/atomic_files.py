"""Files written all or nothing: a temporary file in the same folder, then a rename.

A reader never sees half a file, and a batch (``write_files``) creates every temporary file
before it renames any, so a name the file system refuses (too long, a folder in the way, a full
disk) fails the whole batch before anything is replaced.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from .errors import RobbenchError, exception_summary, quoted

_UMASK = os.umask(0)
os.umask(_UMASK)


def make_dirs(folder: Path) -> None:
    """``mkdir -p folder``; a file in the way or a refusing disk is the user's one-line error."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cannot_write(folder, exc) from exc


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename: all or nothing."""
    write_files({path: data})


def write_files(files: dict[Path, bytes]) -> None:
    """Write every file via its own temporary file; rename them only once all are written.

    Any failure while writing removes every temporary file, and no target was touched.
    """
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            staged.append((_stage(path, data), path))
        for tmp, path in staged:
            try:
                os.replace(tmp, path)
            except OSError as exc:
                raise cannot_write(path, exc) from exc
    finally:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)


def _stage(path: Path, data: bytes) -> str:
    """A temporary file beside ``path`` holding ``data``, flushed to disk; its name."""
    make_dirs(path.parent)
    if path.is_dir():  # os.replace would fail only after the batch's other files were replaced
        raise cannot_write(path, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)))
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise cannot_write(path, exc) from exc
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # a full disk, a quota
            raise cannot_write(path, exc) from exc
        raise
    return tmp


def cannot_write(path: Path, exc: OSError) -> RobbenchError:
    return RobbenchError(f"cannot write {quoted(path)} ({exc.strerror or exception_summary(exc)}); free space or choose another path")
