"""Everything a reader sees is right: one test per class of mistake found on the boards and reports."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from .helpers import REPO, make_record
from robbench.leaderboard import render_all
from robbench.leaderboard.entries import board_entries
from robbench.leaderboard.plots import MIN_SPAN, draw_plot
from robbench.reports.explain_page import frame_title
from robbench.store import write_record

SUBMISSION_FILES = sorted(REPO.glob("submissions/*/*/model.yaml")) + sorted(REPO.glob("submissions/*/*/train.yaml"))


# ---------------------------------------------------------------------------------------------
# links come from metadata


@pytest.mark.parametrize("path", SUBMISSION_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_paper_links_are_the_training_methods(path: Path) -> None:
    metadata = yaml.safe_load(path.read_text(encoding="utf-8"))["metadata"]
    assert metadata["training"] != "unknown", "a committed model says how it was trained"
    if metadata["training"] == "standard":
        assert metadata.get("paper") is None, "the paper link is the training method's paper; standard training has none"
    else:
        assert str(metadata.get("paper", "")).startswith("https://")


def test_name_links_to_exactly_the_metadata_paper_and_nowhere_else(tmp_path: Path) -> None:
    write_record(make_record("robust", paper="https://arxiv.org/abs/1706.06083"), tmp_path)
    write_record(make_record("plain", robust=0.0, training="standard", sha256="1" * 64), tmp_path)
    files, _ = render_all(tmp_path)
    board = files["fashion-mnist-linf-0p1.md"].decode()
    main_table = board.split("<details>")[0]
    assert "| [robust](models/robust.md) ([paper](https://arxiv.org/abs/1706.06083)) |" in main_table
    assert "| [plain](models/plain.md) |" in main_table  # no paper: no paper link
    assert "standard training has none" in board  # and the page says what the link means
    site = files["site/fashion-mnist-linf-0p1.html"].decode()
    assert '<a href="models/robust.html">robust</a> · <a href="https://arxiv.org/abs/1706.06083">paper</a>' in site
    assert '<a href="models/plain.html">plain</a></td>' in site
    assert site.count("arxiv.org") == 1 and main_table.count("arxiv.org") == 1
    assert "arxiv" not in files["site/models/plain.html"].decode() + files["models/plain.md"].decode()


# ---------------------------------------------------------------------------------------------
# the trade-off plot: legends list only what is drawn, axes cover the data, the diagonal spans them


def figure_for(records):
    entries, _ = board_entries(records)
    return draw_plot(
        "t", [e.name for e in entries], [e.clean_accuracy for e in entries], [e.robust_accuracy for e in entries],
        [e.primary.metadata.training for e in entries], [e.clean_interval() for e in entries],
        [e.robust_interval() for e in entries],
    )[0].axes[0], entries


BOARDS = {
    "one standard model": [make_record("std", clean=0.922, robust=0.0, training="standard", stop=1000)],
    "one robust model": [make_record("rob", clean=0.5, robust=0.49)],
    "two on a frontier": [make_record("a", clean=0.92, robust=0.0, training="standard"),
                          make_record("b", clean=0.81, robust=0.72, sha256="1" * 64)],
    "unknown and dominated": [make_record("a", clean=0.9, robust=0.6), make_record("b", clean=0.8, robust=0.5, training="unknown", sha256="1" * 64)],
}


def drawn_labels(ax) -> set[str]:
    """Labels of the artists that put something on the axes (a line with points, a scatter with offsets)."""
    labels = {line.get_label() for line in ax.get_lines() if len(line.get_xdata()) > 0}
    labels |= {c.get_label() for c in ax.collections if len(c.get_offsets()) > 0}
    return {label for label in labels if not label.startswith("_")}


@pytest.mark.parametrize("board", BOARDS, ids=list(BOARDS))
def test_legend_lists_only_what_is_drawn(board: str) -> None:
    ax, _ = figure_for(BOARDS[board])
    legend = {text.get_text() for text in ax.get_legend().get_texts()}
    assert legend == drawn_labels(ax)
    assert ("Pareto frontier" in legend) == (board == "two on a frontier")
    assert "unknown training" not in legend or board == "unknown and dominated"


@pytest.mark.parametrize("board", BOARDS, ids=list(BOARDS))
def test_axes_cover_the_data_and_are_sane(board: str) -> None:
    ax, entries = figure_for(BOARDS[board])
    (x_lo, x_hi), (y_lo, y_hi) = ax.get_xlim(), ax.get_ylim()
    assert (x_lo, x_hi) == (y_lo, y_hi), "both axes share one range, so the diagonal means robust = clean"
    assert x_hi - x_lo >= MIN_SPAN and -2 <= x_lo and x_hi <= 102
    for e in entries:
        for value in (e.clean_accuracy, e.robust_accuracy, *e.clean_interval(), *e.robust_interval()):
            assert x_lo < 100 * value < x_hi


@pytest.mark.parametrize("board", BOARDS, ids=list(BOARDS))
def test_robust_equals_clean_line_spans_the_visible_range(board: str) -> None:
    ax, _ = figure_for(BOARDS[board])
    (line,) = [line for line in ax.get_lines() if line.get_label() == "robust = clean"]
    assert tuple(line.get_xdata()) == ax.get_xlim() and tuple(line.get_ydata()) == ax.get_ylim()


def test_single_model_axis_is_not_a_sliver() -> None:
    """The committed standard-only board had a y axis from -1 to 3 %."""
    ax, _ = figure_for(BOARDS["one standard model"])
    assert ax.get_ylim()[1] - ax.get_ylim()[0] >= MIN_SPAN


# ---------------------------------------------------------------------------------------------
# reports


def test_interpolation_frames_name_classes_in_full() -> None:
    title = frame_title(0.5, "T-shirt/top", "Ankle boot")
    assert "T-shirt/top" in title and "Ankle boot" in title and title.startswith("t=0.5")
