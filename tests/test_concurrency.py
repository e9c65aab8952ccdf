"""Concurrent writers and readers of one results folder: no record lost, none corrupt, none half-seen."""

from __future__ import annotations

import pytest

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

from robbench.results import EvalRecord
from robbench.store import read_store, write_records

from .helpers import make_record

WRITERS, ROUNDS, READERS = 4, 20, 2


def _pair(writer: int, round_: int) -> list[EvalRecord]:
    """Two records written together: a reader must see both or neither."""
    return [make_record(f"w{writer}-{round_}-{half}", status="++0-") for half in "ab"]


def _write(results: str, writer: int) -> None:
    for round_ in range(ROUNDS):
        write_records(_pair(writer, round_), Path(results))
        # the same run (same configuration) with other outcomes: every writer overwrites this one
        shared = make_record("shared", status="+" * writer + "0" * (4 - writer))
        write_records([shared], Path(results))


def _read(results: str, done, failures) -> None:
    seen = 0
    while not done.is_set():
        records, problems = read_store(Path(results))
        names = {r.name for r in records}
        halves = {n for n in names if n.endswith("-a")} ^ {n[:-1] + "a" for n in names if n.endswith("-b")}
        if problems or halves or len(records) < seen:
            failures.put(f"problems {problems}, unpaired {sorted(halves)}, {len(records)} records after {seen}")
            return
        seen = len(records)


@pytest.mark.slow
def test_concurrent_writers_and_readers_lose_and_corrupt_nothing(tmp_path):
    context = multiprocessing.get_context("fork")  # the children use no torch; fork skips re-importing
    done, failures = context.Event(), context.Queue()
    readers = [context.Process(target=_read, args=(str(tmp_path), done, failures)) for _ in range(READERS)]
    writers = [context.Process(target=_write, args=(str(tmp_path), w)) for w in range(WRITERS)]
    for process in readers + writers:
        process.start()
    for process in writers:
        process.join(timeout=300)
    done.set()
    for process in readers:
        process.join(timeout=60)
    assert all(p.exitcode == 0 for p in readers + writers)
    assert failures.empty(), failures.get()
    records, problems = read_store(tmp_path)
    assert problems == [] and len(records) == WRITERS * ROUNDS * 2 + 1
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_evaluations_finishing_together_while_leaderboards_render(linear_submission, tmp_path):
    from robbench.leaderboard import check_leaderboards, write_leaderboards

    results, boards = tmp_path / "results", tmp_path / "leaderboards"
    results.mkdir()  # empty at first: boards without entries (a missing folder is refused)
    radii = ["0.03", "0.05", "0.08"]
    evaluations = [
        subprocess.Popen(
            [sys.executable, "-m", "robbench", "evaluate", str(linear_submission), "--threat-model", "linf", "--eps", eps,
             "--attacks", "pgd", "--n-examples", "20", "--device", "cpu", "--results-dir", str(results)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        for eps in radii
    ]
    renders = 0
    while any(p.poll() is None for p in evaluations) or renders == 0:
        written, problems = write_leaderboards(results, boards)
        assert problems == []
        renders += 1
    assert [p.wait() for p in evaluations] == [0] * len(radii), [p.stderr.read() for p in evaluations]
    records, problems = read_store(results)
    assert problems == [] and sorted(r.threat_model.eps for r in records) == [float(e) for e in radii]
    write_leaderboards(results, boards)
    assert check_leaderboards(results, boards) == ([], [])
