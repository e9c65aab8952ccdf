"""Leaderboard rendering from records built in code: no torch, no training."""

from __future__ import annotations

from pathlib import Path

import pytest

import json
import os
import math

import numpy as np

from .helpers import make_record
from robbench.config import Metadata
from robbench.errors import RobbenchError
from robbench.leaderboard import check_leaderboards, render_all, write_leaderboards
from robbench.leaderboard.entries import board_entries, board_key, combine
from robbench.leaderboard.markdown import render_board
from robbench.leaderboard.names import board_stems, eps_slug
from robbench.leaderboard.plots import pareto_frontier, render_plot
from robbench.results import Flag
from robbench.store import read_record, record_json, write_record
from robbench.stats import mcnemar_p, wilson_interval


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def board_rows(text: str) -> list[str]:
    """Body rows of a board page's main table (rank column first)."""
    return [line for line in text.split("<details>")[0].splitlines() if line.startswith("| ") and line[2:3] in "=0123456789"]


def detail_rows(text: str) -> list[str]:
    """Body rows of a board page's table of all columns, behind its details toggle."""
    return [line for line in text.split("<details>")[1].splitlines() if line.startswith("| ") and line[2:3] in "=0123456789"]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    for record in (
        make_record("alpha", clean=0.80, robust=0.40, paper="https://example.org/alpha"),
        make_record("beta", clean=0.85, robust=0.40),  # ties alpha on robust, better clean: ranked first
        make_record("gamma", clean=0.95, robust=0.05, training="standard"),
        make_record("partial", clean=0.82, robust=0.45, stop=1_000),  # subset of the test set
        make_record("alpha", clean=0.80, robust=0.30, eps=0.25, standard=False),  # non-standard radius
    ):
        write_record(record, results)
    return results


def test_eps_slug() -> None:
    assert eps_slug(8 / 255) == "8_255"
    assert eps_slug(0.1) == "0p1"
    assert eps_slug(1.5) == "1p5"
    assert eps_slug(0.5) == "0p5"
    assert eps_slug(0.2) == "51_255"  # 0.2 * 255 = 51: below 1 and a whole number of 255ths  # 127.5/255: not a whole number of 255ths


def test_pareto_frontier_hand_made() -> None:
    points = [
        (90.0, 10.0),  # 0: best clean -> frontier
        (80.0, 40.0),  # 1: frontier
        (70.0, 40.0),  # 2: dominated by 1 (same robust, less clean)
        (60.0, 50.0),  # 3: best robust -> frontier
        (50.0, 20.0),  # 4: dominated
        (80.0, 40.0),  # 5: equal to 1: not dominated by it
    ]
    assert set(pareto_frontier(points)) == {0, 1, 3, 5}
    assert pareto_frontier([]) == []


def test_pareto_frontier_is_the_definition_on_random_boards() -> None:
    """The sweep against the definition itself (no other point at least as good in both, better in one), on boards
    with many ties (accuracies in steps of 1/4)."""
    rng = np.random.default_rng(0)
    for _ in range(500):
        points = [tuple(p) for p in rng.integers(0, 5, (int(rng.integers(0, 12)), 2)) / 4]
        undominated = [i for i, (c, r) in enumerate(points)
                       if not any(c2 >= c and r2 >= r and (c2, r2) != (c, r) for c2, r2 in points)]
        assert pareto_frontier(points) == undominated, points


def _crowded_plot(n: int):
    from robbench.leaderboard.plots import draw_plot

    rng = np.random.default_rng(1)
    clean, robust = rng.uniform(0.5, 0.99, n), rng.uniform(0.0, 0.5, n)
    names = [f"a-rather-long-model-name-{i:04d}" for i in range(n)]
    return draw_plot("CIFAR-10, L∞ ε = 8/255 (standard)", names, list(clean), list(robust), ["pgd-at"] * n,
                     [(c - 0.02, c + 0.02) for c in clean], [(r - 0.02, r + 0.02) for r in robust])


def test_a_crowded_plot_labels_without_overlap_or_warnings_and_fits_its_figure() -> None:
    """400 models: every label drawn is inside the axes and clear of every other label; no label is forced onto
    another; axis labels, ticks and title lie inside the figure; and matplotlib warns of nothing (no layout pass)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig, boxes = _crowded_plot(400)
        fig.canvas.draw()  # as savefig does: places the axis labels
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[0]
        labels = [text.get_window_extent(renderer) for text in ax.texts]
    assert 10 <= len(labels) < 400  # the best get labels; the crowd does not get a pile of overlapping names
    frame = ax.get_window_extent(renderer)
    for i, box in enumerate(labels):
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        assert not any(box.overlaps(other) for other in labels[i + 1:])
    figure = fig.bbox
    for extent in (ax.title.get_window_extent(renderer), ax.xaxis.get_tightbbox(renderer), ax.yaxis.get_tightbbox(renderer)):
        assert figure.x0 <= extent.x0 and extent.x1 <= figure.x1 and figure.y0 <= extent.y0 and extent.y1 <= figure.y1
    assert len(boxes) == 400  # every model has a box for the site's link, labelled or not


def test_a_rendered_plot_leaves_no_figure_alive(monkeypatch) -> None:
    """One figure per board, freed once its PNG is written: nothing accumulates across a thousand models' boards."""
    import gc
    import weakref

    import robbench.leaderboard.plots as plots

    drawn = []

    def draw(*args):
        fig, boxes = real(*args)
        drawn.append(weakref.ref(fig))
        return fig, boxes

    real = plots.draw_plot
    monkeypatch.setattr(plots, "draw_plot", draw)
    for _ in range(3):
        render_plot("t", ["a", "b"], [0.9, 0.8], [0.5, 0.4], ["pgd-at"] * 2, [(0.88, 0.92), (0.78, 0.82)],
                    [(0.48, 0.52), (0.38, 0.42)])
    gc.collect()
    assert len(drawn) == 3 and all(ref() is None for ref in drawn)


def test_boards_index_and_model_pages(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "boards"
    written, problems = write_leaderboards(store, out)
    assert problems == []
    names = sorted(p.relative_to(out).as_posix() for p in written)
    assert [n for n in names if n.startswith("site/")] == [
        "site/fashion-mnist-linf-0p1.html", "site/fashion-mnist-linf-0p1.png", "site/fashion-mnist-linf-0p25.html",
        "site/fashion-mnist-linf-0p25.png", "site/index.html", "site/models/alpha.html", "site/models/beta.html",
        "site/models/gamma.html", "site/models/partial.html",
    ]
    assert [n for n in names if not n.startswith("site/")] == [
        "README.md",
        "fashion-mnist-linf-0p1.md",
        "fashion-mnist-linf-0p1.png",
        "fashion-mnist-linf-0p25.md",
        "fashion-mnist-linf-0p25.png",
        "models/alpha.md",
        "models/beta.md",
        "models/gamma.md",
        "models/partial.md",
    ]
    main = read(out / "fashion-mnist-linf-0p1.md")
    assert "![" in main and "(fashion-mnist-linf-0p1.png)" in main
    assert out.joinpath("fashion-mnist-linf-0p1.png").read_bytes().startswith(b"\x89PNG")
    # the paper link and the model page link
    assert "[alpha](models/alpha.md) ([paper](https://example.org/alpha))" in main
    index = read(out / "README.md")
    assert "[fashion-mnist-linf-0p1](fashion-mnist-linf-0p1.md)" in index
    assert "[fashion-mnist-linf-0p25](fashion-mnist-linf-0p25.md)" in index
    # the model page lists both threat models alpha was evaluated on, linked to the boards
    alpha = read(out / "models" / "alpha.md")
    assert "(../fashion-mnist-linf-0p1.md)" in alpha and "(../fashion-mnist-linf-0p25.md)" in alpha
    assert "non-standard" in alpha


def test_non_standard_eps_gets_its_own_board(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "boards"
    write_leaderboards(store, out)
    main = read(out / "fashion-mnist-linf-0p1.md")
    other = read(out / "fashion-mnist-linf-0p25.md")
    assert len(board_rows(main)) == 4 and len(board_rows(other)) == 1
    assert "30.00" in board_rows(other)[0] and "30.00" not in main
    assert "non-standard ε" in other and "non-standard" not in main


def board_header(markdown: str) -> list[str]:
    """The main table's column names, in order."""
    line = next(line for line in markdown.splitlines() if line.startswith("| rank |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_ranks_ordered_by_robust_then_clean_and_tied_when_not_significant(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "boards"
    write_leaderboards(store, out)
    rows = board_rows(read(out / "fashion-mnist-linf-0p1.md"))
    order = [row.split("|")[2].strip().split(" ")[0].strip("[").split("]")[0] for row in rows]
    assert order == ["partial", "beta", "alpha", "gamma"]
    # partial: other examples, so not compared; beta vs alpha: the same robust examples (p = 1): tied;
    # gamma is far below alpha on the same 10,000 examples: its own rank
    assert [row.split("|")[1].strip() for row in rows] == ["1", "2", "=2", "4"]
    below = board_header(read(out / "fashion-mnist-linf-0p1.md")).index("below the row above?") + 1
    assert [row.split("|")[below].strip() for row in rows] == ["—", "—", "no", "yes"]  # significantly below the row above?
    assert "| 1 |" in detail_rows(read(out / "fashion-mnist-linf-0p1.md"))[2]  # alpha's p-value against beta


@pytest.mark.parametrize("only_first, only_second, p, shown_rank", [
    (6, 2, 74 / 256, "=1"),  # p = 2 * P(Binomial(8, 1/2) <= 2) = 2 * (1 + 8 + 28) / 256 = 0.289 >= 0.05: a tie
    (9, 1, 22 / 1024, "2"),  # p = 2 * P(Binomial(10, 1/2) <= 1) = 2 * (1 + 10) / 1024 = 0.0215 < 0.05: its own rank
])
def test_a_tie_is_decided_at_p_0_05_on_both_sides(only_first: int, only_second: int, p: float, shown_rank: str) -> None:
    """Two models on the same 30 examples, 4 robust for both; the exact p-values are the binomial sums beside them."""
    from robbench.leaderboard.cells import p_text, rank_text

    rest = 30 - only_first - only_second - 4
    first = make_record("first", status="+" * only_first + "0" * only_second + "+" * 4 + "0" * rest)
    second = make_record("second", status="0" * only_first + "+" * only_second + "+" * 4 + "0" * rest)
    (top, below), problems = board_entries([second, first])
    assert problems == [] and (top.name, below.name) == ("first", "second")
    assert top.p_vs_above is None and rank_text(top) == "1"
    assert below.p_vs_above == pytest.approx(p, rel=1e-12)
    assert rank_text(below) == shown_rank and p_text(below) == f"{p:.3g}"


def test_subset_record_is_marked(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "boards"
    write_leaderboards(store, out)
    text = read(out / "fashion-mnist-linf-0p1.md")
    (partial,) = [row for row in board_rows(text) if "partial" in row]
    assert "[partial](models/partial.md) †" in partial
    (partial,) = [row for row in detail_rows(text) if "partial" in row]
    assert "1,000 of 10,000 †" in partial
    assert all("†" not in row for row in board_rows(text) + detail_rows(text) if "partial" not in row)
    assert "\n† " in text  # the footnote explaining the marker
    assert "1,000 of 10,000 †" in read(out / "models" / "partial.md")


def test_flagged_record_is_marked_not_hidden() -> None:
    flag = Flag(code="masked-gradients", message="zero input gradients on 40% of correct examples")
    flagged = make_record("odd", robust=0.6).model_copy(update={"flags": [flag]})
    entries, _ = board_entries([flagged, make_record("plain")])
    text = render_board(board_key(flagged), "x", entries)
    rows = board_rows(text)
    assert len(rows) == 2  # shown, not hidden
    (row,) = [r for r in rows if "odd" in r]
    assert "⚠ [odd](models/odd.md)" in row and "masked-gradients" in row
    assert "\n⚠ " in text  # the footnote explaining the marker


def test_subset_and_board_departures_are_not_warnings() -> None:
    departure = Flag(code="non-standard-seed", message="seed 3")
    subset = make_record("subset", stop=1_000).model_copy(update={"flags": [departure]})
    entries, _ = board_entries([subset])
    text = render_board(board_key(subset), "x", entries)
    (row,) = board_rows(text)
    assert "⚠" not in text and "non-standard-seed" in row
    assert "(46.9–53.1)" in row  # its Wilson interval: 500 of 1,000
    # the only model, so the whole board shares the subset: said once above the table, not on the row
    assert "† Every model on this board was evaluated on the same 1,000 of 10,000" in text.split("| rank")[0]
    assert "†" not in row and "†" not in detail_rows(text)[0]


def test_corrupt_json_reported_and_skipped(store: Path, tmp_path: Path) -> None:
    broken = store / "fashion-mnist" / "linf" / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    invalid = store / "fashion-mnist" / "linf" / "invalid.json"
    invalid.write_text('{"name": "invalid"}', encoding="utf-8")
    out = tmp_path / "boards"
    written, problems = write_leaderboards(store, out)
    assert len(problems) == 2
    assert any(str(broken) in p for p in problems) and any(str(invalid) in p for p in problems)
    assert len(board_rows(read(out / "fashion-mnist-linf-0p1.md"))) == 4
    stale, check_problems = check_leaderboards(store, out)
    assert stale == [] and check_problems == problems


@pytest.mark.slow
def test_rendering_is_byte_identical(store: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    write_leaderboards(store, first)
    write_leaderboards(store, second)
    files_one = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    files_two = sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert files_one == files_two and any(p.suffix == ".png" for p in files_one)
    for rel in files_one:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel
    # and in-process: no Software/time chunk, fixed size
    args = ("t", ["a", "b"], [0.9, 0.8], [0.1, 0.4], ["standard", "pgd-at"], [(0.88, 0.92), (0.78, 0.82)],
            [(0.08, 0.12), (0.38, 0.42)])
    png = render_plot(*args).png
    assert png == render_plot(*args).png
    assert b"Software" not in png and b"matplotlib version" not in png


def test_forked_render_gives_the_serial_renders_bytes(store: Path, tmp_path: Path) -> None:
    """Boards, plots, model pages and site rendered in two forked workers: the same files, byte for byte, links included."""
    out = tmp_path / "boards"
    serial, serial_problems = render_all(store, out, jobs=1)
    forked, forked_problems = render_all(store, out, jobs=2)
    assert forked == serial and forked_problems == serial_problems
    assert "models/alpha.md" in forked and "site/models/alpha.html" in forked and "site/index.html" in forked
    assert b"../../results/" in forked["models/alpha.md"]  # the record links survived the fork


@pytest.mark.slow
def test_check_reports_nothing_then_changes(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "boards"
    assert "README.md" in check_leaderboards(store, out)[0]  # nothing written yet: all missing
    write_leaderboards(store, out)
    assert check_leaderboards(store, out) == ([], [])

    page = out / "fashion-mnist-linf-0p1.md"
    page.write_text(read(page) + "edited\n", encoding="utf-8")
    assert check_leaderboards(store, out)[0] == ["fashion-mnist-linf-0p1.md"]

    png = out / "fashion-mnist-linf-0p1.png"
    png.write_bytes(png.read_bytes() + b"\0")
    assert check_leaderboards(store, out)[0] == ["fashion-mnist-linf-0p1.md", "fashion-mnist-linf-0p1.png"]

    (out / "models" / "beta.md").unlink()
    assert "models/beta.md" in check_leaderboards(store, out)[0]

    write_leaderboards(store, out)
    assert check_leaderboards(store, out) == ([], [])


@pytest.mark.slow
def test_stale_generated_pages_reported_and_removed(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "boards"
    write_leaderboards(store, out)
    (out / "notes.md").write_text("hand-written, not ours\n", encoding="utf-8")
    for run in (store / "fashion-mnist" / "linf-eps0.25" / "alpha").glob("*.json"):
        run.unlink()
    stale, _ = check_leaderboards(store, out)
    assert {"fashion-mnist-linf-0p25.md", "fashion-mnist-linf-0p25.png"} <= set(stale)
    assert "notes.md" not in stale
    write_leaderboards(store, out)
    assert check_leaderboards(store, out) == ([], [])
    assert not (out / "fashion-mnist-linf-0p25.md").exists() and not (out / "fashion-mnist-linf-0p25.png").exists()
    assert (out / "notes.md").exists()


def test_colliding_stems_stay_distinct() -> None:
    standard = board_key(make_record("a", eps=0.1))
    close = board_key(make_record("b", eps=0.1000001, standard=False))
    stems = board_stems([standard, close])
    assert stems[standard] == "fashion-mnist-linf-0p1"
    assert stems[close] != stems[standard]


def test_render_all_keys_are_sorted(store: Path) -> None:
    files, problems = render_all(store)
    assert list(files) == sorted(files) and problems == []


def test_best_known_is_the_per_example_union_of_breaks() -> None:
    board = make_record("m", status="++++++0-", timestamp="2024-01-01T00:00:00+00:00")
    # a later run with another attack (a plugin, say) breaks examples 1 and 6 (6 was already broken)
    extra = make_record("m", status="+0++++0-", attacks=("square",), timestamp="2024-02-01T00:00:00+00:00")
    entry = combine([extra, board])
    assert entry.primary is board  # the board-standard run leads
    assert entry.robust.tolist() == [True, False, True, True, True, True, False, False]
    assert entry.robust_accuracy == 5 / 8 and entry.clean_accuracy == 7 / 8
    assert entry.breaks_by == {"pgd": 1, "square": 1}  # square is credited only with what it added
    assert combine([board]).robust_accuracy == 6 / 8  # the later run can only lower it


def test_runs_on_other_examples_or_checkpoints_do_not_combine() -> None:
    board = make_record("m", status="++++++0-")
    other_examples = make_record("m", status="0" * 4, stop=4)
    other_checkpoint = make_record("m", status="0" * 8, sha256="f" * 64, timestamp="2025-01-01T00:00:00+00:00")
    (entry,), problems = board_entries([board, other_examples, other_checkpoint])
    assert entry.runs == [board] and entry.robust_accuracy == 6 / 8
    assert len(problems) == 1 and "another checkpoint" in problems[0]


def test_the_board_standard_run_leads_even_when_it_is_the_newest() -> None:
    """pgd then autoattack at seed 0 leads (its name, its metadata); the rest follow by time."""
    other_seed = make_record("m", status="+++0", seed=1, timestamp="2024-01-01T00:00:00+00:00")
    other_attack = make_record("m", status="++++", attacks=("square",), timestamp="2024-01-02T00:00:00+00:00")
    board = make_record("m", status="+0++", timestamp="2024-03-01T00:00:00+00:00")
    (entry,), _ = board_entries([other_attack, board, other_seed])
    assert entry.runs == [board, other_seed, other_attack]
    # pgd breaks example 1 in the board run and example 3 in the seed-1 run: credited with both
    assert entry.breaks_by == {"pgd": 2}


def test_of_equally_large_example_sets_the_first_in_the_test_set_is_the_entrys() -> None:
    later = make_record("m", status="0000", start=4, timestamp="2024-01-01T00:00:00+00:00")
    first = make_record("m", status="++++", start=0, timestamp="2024-02-01T00:00:00+00:00")
    for runs in ([later, first], [first, later]):
        (entry,), problems = board_entries(runs)
        assert entry.runs == [first] and entry.robust_accuracy == 1.0 and problems == []


def test_wilson_interval_against_the_formula() -> None:
    def by_hand(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return centre - half, centre + half

    for k, n in ((725, 1000), (0, 250), (1000, 1000), (1, 3)):
        assert wilson_interval(k, n) == pytest.approx(by_hand(k, n), abs=1e-12)
    assert wilson_interval(725, 1000) == pytest.approx((0.696504, 0.751774), abs=1e-6)


def test_wilson_interval_at_another_confidence() -> None:
    # the formula of test_wilson_interval_against_the_formula with z = 2.5758293035489 (the 99.5 % normal quantile)
    k, n, z = 725, 1000, 2.5758293035489
    p = k / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert wilson_interval(k, n, confidence=0.99) == pytest.approx((centre - half, centre + half), abs=1e-12)


def test_mcnemar_refuses_outcomes_on_other_examples() -> None:
    with pytest.raises(ValueError) as refused:
        mcnemar_p(np.ones(3, dtype=bool), np.ones(4, dtype=bool))
    assert str(refused.value) == "McNemar's test needs outcomes on the same examples"


def test_mcnemar_against_the_exact_binomial() -> None:
    # 10 examples robust for the first model only, 2 for the second only, 5 for both:
    # p = 2 * P(Binomial(12, 1/2) <= 2) = 2 * (1 + 12 + 66) / 4096
    first = np.array([True] * 10 + [False] * 2 + [True] * 5)
    second = np.array([False] * 10 + [True] * 2 + [True] * 5)
    assert mcnemar_p(first, second) == pytest.approx(158 / 4096, rel=1e-12)
    assert mcnemar_p(first, first) == 1.0


def test_totals_that_disagree_with_the_evidence_are_refused(tmp_path: Path) -> None:
    record = make_record("m", status="++0-")
    data = json.loads(record_json(record))
    data["robust_accuracy"] = 0.75
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(RobbenchError, match="totals disagree with the per-example evidence: robust_accuracy 0.75"):
        read_record(path)
    data["robust_accuracy"], data["attacks"][0]["stages"][0]["n_broken"] = 0.5, 2
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(RobbenchError, match="attack and stage counts differ"):
        read_record(path)


def test_old_schema_record_gets_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"schema_version": 1, "name": "old", "clean_accuracy": 0.9}), encoding="utf-8")
    with pytest.raises(RobbenchError) as caught:
        read_record(path)
    assert str(caught.value) == (f"{path}: a schema 1 record (totals only, no per-example evidence); "
                                 "regenerate it with `robbench evaluate`")


def test_submitter_metadata_is_escaped() -> None:
    hostile = make_record("m").model_copy(update={"metadata": Metadata(
        training="<img src=x onerror=alert(1)>", paper="javascript:alert(1)", venue="[click](https://evil.example)")})
    entries, _ = board_entries([hostile])
    text = render_board(board_key(hostile), "x", entries)
    assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "javascript:" not in text.split("| m ")[0] and "](javascript" not in text


def test_training_cost_is_shown_beside_accuracy() -> None:
    from robbench.config import TrainingCost

    cost = TrainingCost(device="cuda (NVIDIA H200)", epochs=6, train_examples=60_000, seconds_per_epoch=13.27, total_seconds=88.65)
    trained = make_record("trained").model_copy(update={"metadata": Metadata(training="pgd-at", training_cost=cost)})
    entries, _ = board_entries([trained, make_record("outside", robust=0.4)])
    text = render_board(board_key(trained), "x", entries)
    header = next(line for line in text.split("<details>")[1].splitlines() if line.startswith("| rank"))
    assert "| training cost |" in header
    (row,) = [r for r in detail_rows(text) if "trained" in r]
    assert "| 6 × 60K · 1.5 min · cuda (NVIDIA H200) |" in row
    (row,) = [r for r in detail_rows(text) if "outside" in r]
    assert "| pgd-at | — |" in row  # not trained with robbench: unknown, not zero


def test_caveats_are_shown_on_the_model_page(tmp_path: Path) -> None:
    record = make_record("short").model_copy(update={"metadata": Metadata(
        training="pgd-at", caveats="4 epochs instead of 100, so 5 points below the paper")})
    write_record(record, tmp_path / "results")
    files, _ = render_all(tmp_path / "results")
    assert "- **caveats**: 4 epochs instead of 100, so 5 points below the paper" in files["models/short.md"].decode()


def test_a_model_page_shows_the_caveats_of_its_newest_record(tmp_path: Path) -> None:
    def run(threat: str, when: str, caveats: str):
        return make_record("m", threat=threat, norm="L2" if threat == "l2" else "Linf", timestamp=when).model_copy(
            update={"metadata": Metadata(training="pgd-at", caveats=caveats)})
    write_record(run("l2", "2024-02-01T00:00:00+00:00", "revised text"), tmp_path / "results")
    write_record(run("linf", "2024-01-01T00:00:00+00:00", "first text"), tmp_path / "results")
    page = render_all(tmp_path / "results")[0]["models/m.md"].decode()
    assert "- **caveats**: revised text\n" in page and "first text" not in page


@pytest.mark.slow
def test_own_model_is_ranked_beside_the_committed_boards(linear_submission: Path, tmp_path: Path, capsys) -> None:
    """A user's evaluation into a folder of their own, rendered beside the repository's records with one command."""
    from robbench.cli import main

    from .helpers import REPO

    mine, out = tmp_path / "my-results", tmp_path / "my-boards"
    assert main(["evaluate", str(linear_submission), "--threat-model", "linf", "--attacks", "pgd", "--n-examples", "1000",
                 "--device", "cpu", "--results-dir", str(mine)]) == 0
    (record_file,) = mine.rglob("*.json")
    own = read_record(record_file)
    committed = REPO / "results"
    assert main(["leaderboard", "--results-dir", str(committed), "--results-dir", str(mine), "--out", str(out)]) == 0
    assert "beside" not in capsys.readouterr().err
    board, alone = read(out / "fashion-mnist-linf-0p1.md"), read(REPO / "leaderboards/fashion-mnist-linf-0p1.md")
    rows, committed_rows = board_rows(board), board_rows(alone)
    assert len(rows) == len(committed_rows) + 1
    (row,) = [r for r in rows if "fmnist-linear" in r]
    assert "[fmnist-linear](models/fmnist-linear.md) (from my-results)" in row
    # ranked where its robust accuracy puts it among the committed models (same 1,000 examples: compared to its neighbour)
    robust = [float(r.split("|")[4].split()[0]) for r in rows]
    assert robust == sorted(robust, reverse=True) and f"| {100 * own.robust_accuracy:.2f} (" in row
    name = lambda r: r.split("](models/")[0].split("[")[-1]  # noqa: E731
    assert [name(r) for r in rows if "fmnist-linear" not in r] == [name(r) for r in committed_rows]  # their order kept
    assert "(from FOLDER)" in board
    # its page links its own record and adversarial examples in its own folder; the committed ones stay where they are
    page = read(out / "models/fmnist-linear.md")
    assert f"]({Path(os.path.relpath(record_file, out / 'models')).as_posix()})" in page
    assert (out / "site/fashion-mnist-linf-0p1.html").read_text().count("(from my-results)") == 1


def test_boards_whose_names_read_alike_get_distinct_stems() -> None:
    """``fashion`` + ``mnist-linf`` reads like ``fashion-mnist`` + ``linf``: the registered dataset keeps its stem."""
    genuine = board_key(make_record("a", dataset="fashion-mnist", threat="linf"))
    alike = board_key(make_record("b", dataset="fashion", threat="mnist-linf"))
    stems = board_stems([alike, genuine])
    assert stems == {genuine: "fashion-mnist-linf-0p1", alike: "fashion+mnist-linf+0p1"}


def test_a_name_over_the_model_yaml_limit_is_a_problem_line_and_the_rest_render(tmp_path: Path) -> None:
    write_record(make_record("fine", stop=100), tmp_path / "results")
    long = make_record("fine", stop=100).model_dump(mode="json")
    long["config"]["name"] = "x" * 250
    path = tmp_path / "results" / "fashion-mnist" / "linf" / "long" / "run.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(long))
    files, problems = render_all(tmp_path / "results")
    assert "models/fine.md" in files and len(problems) == 1
    assert problems[0].startswith(f"{path}: invalid record: key 'config.name': String should have at most 100 characters (got 'xxx")
    assert problems[0].endswith("…)") and "x" * 150 not in problems[0]  # the 250-character name is quoted cut short


def test_a_render_that_cannot_write_one_file_replaces_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os
    import tempfile

    results, out = tmp_path / "results", tmp_path / "out"
    write_record(make_record("first", stop=100), results)
    write_leaderboards(results, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    write_record(make_record("second", 0.8, 0.7, stop=100, sha256="2" * 64), results)
    mkstemp = tempfile.mkstemp

    def name_too_long(*args, prefix: str = "", **kwargs):
        if "second" in prefix:  # the file system refuses one file of the new render, as it does a 250-character name
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG))
        return mkstemp(*args, prefix=prefix, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", name_too_long)
    with pytest.raises(RobbenchError, match="second.*File name too long"):
        write_leaderboards(results, out)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not list(out.rglob("*.tmp"))


@pytest.mark.parametrize(("label", "plant", "problem"), [
    ("5,000-digit integer", lambda p, text: p.write_text(text.replace('"seed": 0', '"seed": ' + "9" * 5000, 1)),
     "not a readable JSON record (an integer of 5,000 digits (the limit is 40))"),
    ("nested 200,000 deep", lambda p, text: p.write_text(text.replace('"notes": [', '"notes": [' + "[" * 200_000 + "]" * 200_000 + ",", 1)),
     "not a readable JSON record (nested deeper than 64 levels)"),
    ("link to /dev/zero", lambda p, text: p.symlink_to("/dev/zero"), "the record is not a regular file (a FIFO, device or folder); remove it"),
])
def test_a_hostile_record_is_one_problem_line_and_the_rest_render(tmp_path: Path, label, plant, problem) -> None:
    results = tmp_path / "results"
    write_record(make_record("genuine", stop=100), results)
    path = results / "fashion-mnist" / "linf" / "hostile" / "run.json"
    path.parent.mkdir(parents=True)
    plant(path, record_json(make_record("hostile", stop=100, sha256="9" * 64)))
    files, problems = render_all(results)
    assert "models/genuine.md" in files and problems == [f"{path}: {problem}"]
