"""``map_forked``: the serial map's results, in order, from forked workers; a worker's exception comes back."""

from __future__ import annotations

import os

import pytest

from robbench.forked import map_forked


def test_results_keep_the_items_order_and_come_from_other_processes() -> None:
    offset = 7  # a closure's state: inherited by the workers, never pickled
    results = map_forked(lambda n: (n * n + offset, os.getpid()), list(range(20)), jobs=2)
    assert [value for value, _ in results] == [n * n + 7 for n in range(20)]
    assert os.getpid() not in {pid for _, pid in results}


def test_one_job_runs_in_this_process() -> None:
    assert {pid for pid in map_forked(lambda _: os.getpid(), [1, 2, 3], jobs=1)} == {os.getpid()}


def test_a_workers_exception_is_raised_here() -> None:
    def fails_on_three(n: int) -> int:
        if n == 3:
            raise ValueError(f"bad item {n}")
        return n

    with pytest.raises(ValueError, match="bad item 3"):
        map_forked(fails_on_three, [1, 2, 3, 4], jobs=2)


def test_a_large_store_reads_in_workers_what_it_reads_serially(tmp_path, monkeypatch) -> None:
    """Records and problem lines (a corrupt file among them) come back in the files' order from forked readers."""
    from robbench import store
    from .helpers import make_record

    results = tmp_path / "results"
    for index in range(6):
        store.write_record(make_record(f"model-{index}", clean=0.9, robust=0.1 * index), results)
    corrupt = results / "broken.json"
    corrupt.write_text("{not json")
    serial = store.read_snapshot(results)
    monkeypatch.setattr(store, "PARALLEL_READ_FROM", 2)
    monkeypatch.setattr(store, "READ_BATCH", 2)
    forked = store.read_snapshot(results)
    assert [r.name for r in forked.records] == [r.name for r in serial.records] == [f"model-{i}" for i in range(6)]
    assert forked.records == serial.records and forked.files == serial.files
    assert forked.problems == serial.problems and len(forked.problems) == 1 and "broken.json" in forked.problems[0]
