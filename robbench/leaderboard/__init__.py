"""Leaderboards rendered from the results store: markdown pages and plots.

Layout under the output folder::

    README.md                        index: one row per board, and every model page
    <dataset>-<threat>-<eps>.md      one board per dataset × threat model × radius
    <dataset>-<threat>-<eps>.png     clean against robust accuracy, with intervals and the Pareto frontier
    models/<name>.md                 every board entry of one model and every run behind it

Data flows one way: records (``robbench.results``) → entries (``entries``: runs combined per
example, ranked, tested) → pages (``markdown``) and plots (``plots``). Deterministic: the same
records give byte-identical files, PNGs included. ``check_leaderboards`` compares bytes, and also
reports generated files that the results no longer produce.
"""

from __future__ import annotations

from pathlib import Path

from ..results import atomic_write_bytes, atomic_write_text, read_store
from .entries import BoardKey, Entry, Store, build_store
from .cells import SUBSET_MARK
from .markdown import GENERATED, MODELS_DIR, model_page, render_board, render_index, render_model_page
from .names import board_stems, board_title
from .plots import PNG_MARKER, render_plot

__all__ = ["check_leaderboards", "diff_leaderboards", "render_all", "write_leaderboards", "load_store"]


def load_store(results_dir: Path) -> Store:
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
    for key, entries in store.boards.items():
        stem = stems[key]
        files[f"{stem}.md"] = render_board(key, stem, entries).encode("utf-8")
        files[f"{stem}.png"] = board_plot(key, entries)
        for entry in entries:
            per_model.setdefault(entry.name, []).append((key, stem, entry))
    for name in sorted(per_model):
        files[model_page(name)] = render_model_page(name, per_model[name]).encode("utf-8")
    files["README.md"] = render_index(store.boards, stems).encode("utf-8")
    return dict(sorted(files.items())), store.problems


def _looks_generated(path: Path) -> bool:
    """A file this module writes: a markdown page opening with the banner, or a PNG with our marker."""
    try:
        if path.suffix == ".md":
            with path.open("rb") as handle:
                return handle.read(len(GENERATED.encode("utf-8"))) == GENERATED.encode("utf-8")
        if path.suffix == ".png":
            return PNG_MARKER.encode("latin-1") in path.read_bytes()[:4096]
    except OSError:
        return False
    return False


def generated_files(out_dir: Path) -> list[str]:
    """Relative paths of the generated-looking files already under ``out_dir`` (and its models/)."""
    found = []
    for folder in (out_dir, out_dir / MODELS_DIR):
        if folder.is_dir():
            found += [
                p.relative_to(out_dir).as_posix()
                for p in sorted(folder.iterdir())
                if p.is_file() and p.suffix in (".md", ".png") and _looks_generated(p)
            ]
    return sorted(found)


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
    written = []
    for name, content in files.items():
        path = out_dir / name
        if name.endswith(".md"):
            atomic_write_text(path, content.decode("utf-8"))
        else:
            atomic_write_bytes(path, content)
        written.append(path)
    for name in generated_files(out_dir):
        if name not in files:
            (out_dir / name).unlink(missing_ok=True)
    return written, problems


def check_leaderboards(results_dir: Path, out_dir: Path) -> tuple[list[str], list[str]]:
    """Relative paths of files that are missing, differ, or are generated but no longer produced."""
    changes, problems = diff_leaderboards(results_dir, out_dir)
    return list(changes), problems
