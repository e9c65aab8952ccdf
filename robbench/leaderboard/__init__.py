"""Leaderboards rendered from the results store: markdown pages and plots.

Layout under the output folder::

    README.md                        index: one row per board, and every model page
    <dataset>-<threat>-<eps>.md      one board per dataset × threat model × radius
    <dataset>-<threat>-<eps>.png     clean against robust accuracy, with intervals and the Pareto frontier
    models/<name>.md                 every board entry of one model and every run behind it, linked to its files
    site/                            the same boards as a static website (``site``)

Data flows one way: records (``robbench.results``) → entries (``entries``: runs combined per
example, ranked, tested) → pages (``markdown``) and plots (``plots``). Deterministic: the same
records give byte-identical files, PNGs included. ``check_leaderboards`` compares bytes, and also
reports generated files that the results no longer produce.

Several results folders render as one set of boards: the records of the later folders stand beside
those of the first (``robbench leaderboard --results-dir results --results-dir my-results --out
my-boards`` ranks a user's own model among the committed ones, with the same intervals and tests),
and their rows name the folder they came from.

Safe to run on a mistake: a results folder that does not exist (or is a file) is refused before
anything is read or written; a file in the output folder that this module did not generate is
never overwritten (the render is refused, naming it); temporary files that a killed render left
(``.<name>.*.tmp`` beside their target) are removed by the next one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Mapping, Sequence, Union

from ..errors import RobbenchError, quoted
from ..forked import batched, map_forked
from ..atomic_files import write_files
from ..results import EvalRecord
from ..store import read_snapshot, relative_record_path
from .entries import BoardKey, Entry, Store, build_store
from .cells import FLAG_MARK, SUBSET_MARK, Board
from .markdown import GENERATED, MODELS_DIR, model_page, render_board, render_index, render_model_page
from .names import board_stems, board_title
from .plots import PNG_MARKER, Plot, render_plot
from .site import HTML_MARKER, SITE_DIR, render_site_board, render_site_index, render_site_model

__all__ = ["check_leaderboards", "diff_leaderboards", "render_all", "write_leaderboards", "load_store"]


Folders = Union[Path, Sequence[Path]]


def results_folders(results: Folders) -> list[Path]:
    return [Path(results)] if isinstance(results, (str, Path)) else [Path(folder) for folder in results]


def load_store(results: Folders) -> Store:
    """The boards of every record in the results folders, which must be folders (a mistyped one would empty every board).

    Records of a later folder stand beside those of the first (a user's own results beside the committed boards) and
    their entries say which folder they came from; a run found in two folders is shown from the first.
    """
    folders = results_folders(results)
    for folder in folders:
        if not folder.is_dir():
            what = "is a file, not a folder" if folder.exists() else "does not exist"
            raise RobbenchError(f"results folder {quoted(folder)} {what}: pass the folder holding the records "
                                "(--results-dir); nothing was written")
    records, problems, runs = [], [], {}
    for folder in folders:
        snapshot = read_snapshot(folder)  # through the store: its size limits and ownership ledger
        problems += snapshot.problems
        for path, record in zip(snapshot.files, snapshot.records):
            run = relative_record_path(record).as_posix()
            if run in runs:
                problems.append(f"{quoted(path)}: the same run as {quoted(runs[run][1])}; shown from there")
                continue
            runs[run] = (folder, path)
            records.append((record, (folder, path)))
    store = build_store([record for record, _ in records], problems)
    store.files = {id(record): located for record, located in records}
    for entries in store.boards.values():
        for entry in entries:
            origin = store.files[id(entry.primary)][0]
            entry.beside = None if origin == folders[0] else origin.name
    return store


def record_links(store: Store, out_dir: Path | None, page_dir: str,
                 urls: "Mapping[Path, str]") -> Callable[[EvalRecord], "tuple[str | None, str | None]"]:
    """A record's URL and its adversarial examples' from a page in ``out_dir/page_dir``.

    Relative, so they work from the checkout and its web view; a folder with a URL in ``urls`` (records read from
    a published dataset repo, which holds the records only) links its records there and its examples nowhere.
    """
    def url(record: EvalRecord) -> tuple[str | None, str | None]:
        located = store.files.get(id(record))
        if located is None or out_dir is None:
            return None, None
        folder, path = located
        if folder in urls:
            return f"{urls[folder]}/{path.relative_to(folder).as_posix()}", None
        local = Path(os.path.relpath(path, out_dir / page_dir)).as_posix()
        adversarial = record.adversarial_examples
        return local, adversarial and local.rsplit("/", 1)[0] + "/" + adversarial.file
    return url


def board_plot(key: BoardKey, entries: list[Entry]) -> Plot:
    """The board's plot; names carry the same marks as the page's model column."""
    board = Board(entries)
    names = [
        (f"{FLAG_MARK} " if e.reliability_flags() else "") + e.name + (f" {SUBSET_MARK}" if board.marks_subset(e) else "")
        for e in entries
    ]
    return render_plot(
        board_title(key), names, [e.clean_accuracy for e in entries], [e.robust_accuracy for e in entries],
        [e.primary.metadata.training for e in entries], [e.clean_interval() for e in entries],
        [e.robust_interval() for e in entries],
    )


#: from this many models on, the pages render in forked processes (fewer: the fork would cost more than it saves)
PARALLEL_FROM_MODELS = 200
#: model pages per forked task: small enough to balance the workers, large enough that a task outweighs its transfer
MODELS_PER_TASK = 50


def render_all(results: Folders, out_dir: Path | None = None,
               urls: "Mapping[Path, str] | None" = None, jobs: int | None = None) -> tuple[dict[str, bytes], list[str]]:
    """Relative path (posix) -> content for every generated file, and problem lines.

    With ``out_dir`` (where the files will go), model pages link each record and its adversarial examples;
    ``urls`` gives the web address of a results folder read from the hub (see ``record_links``). The boards
    (each with its plot) and the model pages render in ``jobs`` forked processes (default: one per usable
    core from ``PARALLEL_FROM_MODELS`` models on); the files are the same bytes whatever ``jobs`` is.
    """
    urls = dict(urls or {})
    store = load_store(results)
    stems = board_stems(store.boards)
    placed: dict[str, list[tuple[BoardKey, str, Entry]]] = {}
    for key, entries in store.boards.items():
        for entry in entries:
            placed.setdefault(entry.name, []).append((key, stems[key], entry))
    page_links = record_links(store, out_dir, MODELS_DIR, urls)
    site_links = record_links(store, out_dir, f"{SITE_DIR}/{MODELS_DIR}", urls)

    def board_files(key: BoardKey) -> tuple[dict[str, bytes], dict]:
        stem, entries = stems[key], store.boards[key]
        plot = board_plot(key, entries)
        files, card = render_site_board(key, stem, entries, plot)
        return {f"{stem}.md": render_board(key, stem, entries).encode("utf-8"), f"{stem}.png": plot.png, **files}, card

    def model_files(names: list[str]) -> tuple[dict[str, bytes], None]:
        files: dict[str, bytes] = {}
        for name in names:
            files[model_page(name)] = render_model_page(name, placed[name], page_links).encode("utf-8")
            files.update(render_site_model(name, placed[name], site_links))
        return files, None

    if jobs is None and len(placed) < PARALLEL_FROM_MODELS:
        jobs = 1
    names = sorted(placed)
    tasks = [(board_files, key) for key in store.boards] + [(model_files, batch) for batch in batched(names, MODELS_PER_TASK)]
    rendered = map_forked(lambda task: task[0](task[1]), tasks, jobs)  # the boards first: the longest tasks
    files: dict[str, bytes] = {}
    for part, _ in rendered:
        files.update(part)
    files["README.md"] = render_index(store.boards, stems).encode("utf-8")
    files.update(render_site_index([card for _, card in rendered[:len(store.boards)]], names))
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


def diff_leaderboards(results: Folders, out_dir: Path, urls: "Mapping[Path, str] | None" = None) -> tuple[dict[str, str], list[str]]:
    """Relative path -> ``missing``, ``differs`` or ``no longer produced``; and problem lines."""
    files, problems = render_all(results, out_dir, urls)
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


def write_leaderboards(results: Folders, out_dir: Path, urls: "Mapping[Path, str] | None" = None) -> tuple[list[Path], list[str]]:
    """Write every file atomically and remove generated files the results no longer produce."""
    files, problems = render_all(results, out_dir, urls)
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


def check_leaderboards(results: Folders, out_dir: Path, urls: "Mapping[Path, str] | None" = None) -> tuple[list[str], list[str]]:
    """Relative paths of files that are missing, differ, or are generated but no longer produced."""
    changes, problems = diff_leaderboards(results, out_dir, urls)
    return list(changes), problems
