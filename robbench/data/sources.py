"""Where dataset files come from, and the check that they are the published bytes.

Every file-backed dataset looks in the same places, in this order: ``--data-dir`` or
``ROBBENCH_DATA`` (``<root>/<name>/``), folders of its own (bundled files, distribution
packages), a local data folder ``shared/data/<name>`` in the working directory or any folder
above it, or above the robbench checkout (so a checkout placed beside a data folder finds it
without ``--data-dir``), the user cache, and last a download from the canonical source, checked
against the published digest. A download is announced on stderr (which file, from where, into which
folder) before it starts; with ``ROBBENCH_OFFLINE=1`` (or huggingface_hub's ``HF_HUB_OFFLINE=1``;
``robbench.downloads``) nothing is downloaded and a missing file is an error that names it, the
folders searched and the ways to provide it.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import Iterable

from ..digests import file_digest
from ..downloads import DOWNLOADS_OFF, announce, offline
from ..errors import RobbenchError
from . import cache_root, user_data_root

#: (hashlib algorithm, hex digest): SHA-256 where it is published, else the publisher's MD5
Digest = tuple[str, str]

_CHECKOUT = Path(__file__).resolve().parents[2]


def check_digest(path: Path, digest: Digest) -> Path:
    """``path`` if its digest is the published one; a corrupt file is never read."""
    algorithm, expected = digest
    if file_digest(path, algorithm) != expected:
        raise RobbenchError(
            f"{path} is corrupt or truncated ({algorithm.upper()} differs from the published file); "
            "delete it and fetch it again"
        )
    return path


def shared_dirs(name: str) -> list[Path]:
    """Every ``shared/data/<name>`` in or above the working directory, then above the checkout."""
    try:
        starts = [Path.cwd(), _CHECKOUT]
    except OSError:  # the working directory was deleted
        starts = [_CHECKOUT]
    found: list[Path] = []
    for start in starts:
        for folder in (start, *start.parents):
            candidate = folder / "shared" / "data" / name
            if candidate.is_dir() and candidate not in found:
                found.append(candidate)
    return found


def candidate_dirs(name: str, data_dir: str | None, own: Iterable[Path] = ()) -> list[Path]:
    """The folders to look in for dataset ``name``, in order (see the module docstring)."""
    root = user_data_root(data_dir)
    dirs = [root / name] if root is not None else []
    dirs += [Path(d) for d in own]
    dirs += shared_dirs(name)
    dirs.append(cache_root() / name)
    return dirs


def not_found(what: str, looked: Iterable[Path], hint: str) -> RobbenchError:
    """The error for a dataset file found nowhere: whether a download was tried, where we looked, how to provide it."""
    why = DOWNLOADS_OFF if offline() else "the download failed"
    return RobbenchError(f"{what} not found (looked in {', '.join(str(d) for d in looked)}; {why}); {hint}")


def download(urls: Iterable[str], filename: str, folder: Path, digest: Digest) -> Path | None:
    """Fetch ``filename`` into ``folder`` from the first mirror whose copy has the published digest.

    None when offline (nothing is tried) or when no mirror answers (e.g. no internet); an error when
    mirrors answer with other bytes. Each attempt is announced on stderr first.
    """
    if offline():
        return None
    folder.mkdir(parents=True, exist_ok=True)
    mismatched = []
    for base in urls:
        announce(filename, base, folder)
        tmp_path = None
        try:
            with urllib.request.urlopen(base + filename, timeout=30) as response, tempfile.NamedTemporaryFile(
                dir=folder, delete=False
            ) as tmp:
                tmp_path = Path(tmp.name)
                shutil.copyfileobj(response, tmp)
        except OSError:
            if tmp_path is not None:
                tmp_path.unlink(missing_ok=True)
            continue
        if file_digest(tmp_path, digest[0]) != digest[1]:
            tmp_path.unlink()
            mismatched.append(base)
            continue
        return tmp_path.replace(folder / filename)
    if mismatched:
        raise RobbenchError(
            f"download of {filename} from {', '.join(mismatched)} failed its {digest[0].upper()} check; try again later"
        )
    return None
