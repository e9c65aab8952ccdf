"""Leaderboard rendering from records built in code: no torch, no training."""

from __future__ import annotations

from pathlib import Path

import pytest

from robbench.config import Metadata
from robbench.leaderboard import (
    board_stems,
    board_key,
    check_leaderboards,
    eps_slug,
    pareto_frontier,
    render_all,
    render_board,
    render_plot,
    write_leaderboards,
)
from robbench.results import Flag, write_record

from .helpers import make_record


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def board_rows(text: str) -> list[str]:
    """Table body rows of a board page (rank column first)."""
    return [line for line in text.splitlines() if line.startswith("| ") and line[2:3].isdigit()]


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


def test_boards_index_and_model_pages(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "boards"
    written, problems = write_leaderboards(store, out)
    assert problems == []
    names = sorted(p.relative_to(out).as_posix() for p in written)
    assert names == [
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
    assert "[alpha](https://example.org/alpha)" in main and "(models/alpha.md)" in main
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


def test_ties_on_robust_ordered_by_clean(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "boards"
    write_leaderboards(store, out)
    rows = board_rows(read(out / "fashion-mnist-linf-0p1.md"))
    order = [row.split("|")[2].strip().split(" ")[0].strip("[") for row in rows]
    order = [name.split("]")[0] for name in order]
    assert order == ["partial", "beta", "alpha", "gamma"]
    assert rows[1].startswith("| 2 |") and rows[2].startswith("| 3 |")


def test_subset_record_is_marked(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "boards"
    write_leaderboards(store, out)
    text = read(out / "fashion-mnist-linf-0p1.md")
    (partial,) = [row for row in board_rows(text) if "partial" in row]
    assert "1,000 of 10,000 †" in partial
    assert all("†" not in row for row in board_rows(text) if "partial" not in row)
    assert "\n† " in text  # the footnote explaining the marker
    assert "1,000 of 10,000 †" in read(out / "models" / "partial.md")


def test_flagged_record_is_marked_not_hidden() -> None:
    flag = Flag(code="masked-gradients", message="zero input gradients on 40% of correct examples")
    flagged = make_record("odd", robust=0.6).model_copy(update={"flags": [flag]})
    key = board_key(flagged)
    text = render_board(key, "x", [flagged, make_record("plain")])
    rows = board_rows(text)
    assert len(rows) == 2  # shown, not hidden
    (row,) = [r for r in rows if "odd" in r]
    assert "⚠ odd" in row and "masked-gradients" in row
    assert "\n⚠ " in text  # the footnote explaining the marker


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
    args = ("t", ["a", "b"], [0.9, 0.8], [0.1, 0.4], ["standard", "pgd-at"])
    png = render_plot(*args)
    assert png == render_plot(*args)
    assert b"Software" not in png and b"matplotlib version" not in png


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
    (store / "fashion-mnist" / "linf-eps0.25" / "alpha.json").unlink()
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


def test_duplicate_record_reported_once_shown(store: Path, tmp_path: Path) -> None:
    source = store / "fashion-mnist" / "linf" / "beta.json"
    copy = store / "fashion-mnist" / "linf" / "zz-copy" / "beta.json"
    copy.parent.mkdir()
    copy.write_bytes(source.read_bytes())
    out = tmp_path / "boards"
    _, problems = write_leaderboards(store, out)
    assert len(problems) == 1 and "'beta'" in problems[0]
    rows = board_rows(read(out / "fashion-mnist-linf-0p1.md"))
    assert sum("beta" in row for row in rows) == 1


def test_training_cost_is_shown_beside_accuracy() -> None:
    from robbench.config import TrainingCost

    cost = TrainingCost(device="cuda (NVIDIA H200)", epochs=6, train_examples=60_000, seconds_per_epoch=13.27, total_seconds=88.65)
    trained = make_record("trained").model_copy(update={"metadata": Metadata(training="pgd-at", training_cost=cost)})
    text = render_board(board_key(trained), "x", [trained, make_record("outside", robust=0.4)])
    header = next(line for line in text.splitlines() if line.startswith("| rank"))
    assert "| training cost |" in header
    (row,) = [r for r in board_rows(text) if "trained" in r]
    assert "| 6 × 60K · 1.5 min · cuda (NVIDIA H200) |" in row
    (row,) = [r for r in board_rows(text) if "outside" in r]
    assert "| pgd-at | — |" in row  # not trained with robbench: unknown, not zero
