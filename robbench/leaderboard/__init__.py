"""Leaderboards rendered from the results store: markdown pages and plots.

Layout under the output folder::

    README.md                        index: one row per board, and every model page
    <dataset>-<threat>-<eps>.md      one board per dataset × threat model × radius
    <dataset>-<threat>-<eps>.png     clean against robust accuracy, with intervals and the Pareto frontier
    models/<name>.md                 every board entry of one model and every run behind it
    site/                            the same boards as a static website (``site``)

Data flows one way: records (``robbench.results``) → entries (``entries``: runs combined per
example, ranked, tested) → pages (``markdown``) and plots (``plots``). Deterministic: the same
records give byte-identical files, PNGs included. ``check_leaderboards`` compares bytes, and also
reports generated files that the results no longer produce.

Safe to run on a mistake: a results folder that does not exist (or is a file) is refused before
anything is read or written; a file in the output folder that this module did not generate is
never overwritten (the render is refused, naming it); temporary files that a killed render left
(``.<name>.*.tmp`` beside their target) are removed by the next one.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import RobbenchError, quoted
from ..atomic_files import write_files
from ..store import read_store
from .entries import BoardKey, Entry, Store, build_store
from .cells import SUBSET_MARK
from .markdown import GENERATED, MODELS_DIR, model_page, render_board, render_index, render_model_page
from .names import board_stems, board_title
from .plots import PNG_MARKER, render_plot
from .site import HTML_MARKER, SITE_DIR, render_site

__all__ = ["check_leaderboards", "diff_leaderboards", "render_all", "write_leaderboards", "load_store"]


def load_store(results_dir: Path) -> Store:
    """The boards of every record under ``results_dir``, which must be a folder (a mistyped one would empty every board)."""
    if not results_dir.is_dir():
        what = "is a file, not a folder" if results_dir.exists() else "does not exist"
        raise RobbenchError(f"results folder {quoted(results_dir)} {what}: pass the folder holding the records "
                            "(--results-dir); nothing was written")
    records, problems = read_store(results_dir)
    return build_store(records, problems)


def board_plot(key: BoardKey, entries: list[Entry]) -> bytes:
    """The board's plot; subset results are labelled with the same marker as on the page."""
    names = [
        e.name + (f" {SUBSET_MARK}" if not e.examples.is_full else "") + (" (flagged)" if e.reliability_flags() else "")
        for e in entries
    ]
    return render_plot(
        board_title(key), names, [e.clean_accuracy for e in entries], [e.robust_accuracy for e in entries],
        [e.primary.metadata.training for e in entries], [e.clean_interval() for e in entries],
        [e.robust_interval() for e in entries],
    )


def render_all(results_dir: Path) -> tuple[dict[str, bytes], list[str]]:
    """Relative path (posix) -> content for every generated file, and problem lines."""
    store = load_store(results_dir)
    stems = board_stems(store.boards)
    files: dict[str, bytes] = {}
    per_model: dict[str, list] = {}
    plots = {key: board_plot(key, entries) for key, entries in store.boards.items()}
    for key, entries in store.boards.items():
        stem = stems[key]
        files[f"{stem}.md"] = render_board(key, stem, entries).encode("utf-8")
        files[f"{stem}.png"] = plots[key]
        for entry in entries:
            per_model.setdefault(entry.name, []).append((key, stem, entry))
    for name in sorted(per_model):
        files[model_page(name)] = render_model_page(name, per_model[name]).encode("utf-8")
    files["README.md"] = render_index(store.boards, stems).encode("utf-8")
    files.update(render_site(store.boards, stems, plots))
    return dict(sorted(files.items())), store.problems


GENERATED_SUFFIXES = (".md", ".png", ".html")
#: the folders (relative to the output folder) that hold generated files
GENERATED_FOLDERS = (".", MODELS_DIR, SITE_DIR, f"{SITE_DIR}/{MODELS_DIR}")


def _looks_generated(path: Path) -> bool:
    """A file this module writes: a page opening with the banner (after the doctype), or a PNG with our marker."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    if path.suffix == ".md":
        return head.startswith(GENERATED.encode("utf-8"))
    if path.suffix == ".html":
        return HTML_MARKER.encode("utf-8") in head[:200]
    return path.suffix == ".png" and PNG_MARKER.encode("latin-1") in head


def generated_files(out_dir: Path) -> list[str]:
    """Relative paths of the generated-looking files already in the output folders."""
    found = []
    for folder in (out_dir / name for name in GENERATED_FOLDERS):
        if folder.is_dir():
            found += [
                p.relative_to(out_dir).as_posix()
                for p in sorted(folder.iterdir())
                if p.is_file() and p.suffix in GENERATED_SUFFIXES and _looks_generated(p)
            ]
    return sorted(found)


def foreign_files(out_dir: Path, names: list[str]) -> list[str]:
    """Those of ``names`` that exist under ``out_dir`` but were not generated by us (a hand-written README.md)."""
    return [name for name in names if (out_dir / name).exists() and not _looks_generated(out_dir / name)]


#: what ``write_files`` names its temporary file for a generated one
_TEMPORARY = re.compile(r"^\..+(" + "|".join(re.escape(s) for s in GENERATED_SUFFIXES) + r")\.[^.]+\.tmp$")


def remove_stale_temporaries(out_dir: Path) -> list[Path]:
    """Delete the ``.<name>.*.tmp`` files a killed render left beside the files it writes."""
    removed = []
    for folder in (out_dir / name for name in GENERATED_FOLDERS):
        if folder.is_dir():
            for path in sorted(folder.glob(".*.tmp")):
                if path.is_file() and _TEMPORARY.match(path.name):
                    path.unlink(missing_ok=True)
                    removed.append(path)
    return removed


def diff_leaderboards(results_dir: Path, out_dir: Path) -> tuple[dict[str, str], list[str]]:
    """Relative path -> ``missing``, ``differs`` or ``no longer produced``; and problem lines."""
    files, problems = render_all(results_dir)
    changes: dict[str, str] = {}
    for name, content in files.items():
        path = out_dir / name
        if not path.is_file():
            changes[name] = "missing"
        elif path.read_bytes() != content:
            changes[name] = "differs"
    for name in generated_files(out_dir):
        if name not in files:
            changes[name] = "no longer produced"
    return dict(sorted(changes.items())), problems


def write_leaderboards(results_dir: Path, out_dir: Path) -> tuple[list[Path], list[str]]:
    """Write every file atomically and remove generated files the results no longer produce."""
    files, problems = render_all(results_dir)
    foreign = foreign_files(out_dir, list(files))
    if foreign:
        raise RobbenchError(f"{quoted(str(out_dir / foreign[0]))} was not written by `robbench leaderboard` and would be "
                            f"overwritten{f' (and {len(foreign) - 1} more)' if len(foreign) > 1 else ''}: move it away "
                            "or choose another --out; nothing was written")
    remove_stale_temporaries(out_dir)
    write_files({out_dir / name: content for name, content in files.items()})  # all staged first: none or all replaced
    written = [out_dir / name for name in files]
    for name in generated_files(out_dir):
        if name not in files:
            (out_dir / name).unlink(missing_ok=True)
    return written, problems


def check_leaderboards(results_dir: Path, out_dir: Path) -> tuple[list[str], list[str]]:
    """Relative paths of files that are missing, differ, or are generated but no longer produced."""
    changes, problems = diff_leaderboards(results_dir, out_dir)
    return list(changes), problems
