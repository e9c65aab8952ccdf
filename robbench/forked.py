"""``map_forked``: a function over items in forked worker processes, for CPU-bound pure-Python work.

Rendering a large leaderboard and reading its records are single-threaded Python (the GIL rules out
threads). Forked workers inherit the parent's objects (the store, its entries, closures over them),
so only each item's index goes to a worker and only the result comes back pickled. Where fork is
not available (Windows) or one worker would do, the map runs in this process, with the same result.
"""

from __future__ import annotations

import multiprocessing
from typing import Callable, Sequence, TypeVar

from .threads import usable_cores

Item = TypeVar("Item")
Result = TypeVar("Result")

#: the work of the pool being forked: set just before the fork, so the workers inherit it
_work: "Callable[[int], object] | None" = None


def batched(items: Sequence[Item], size: int) -> list[Sequence[Item]]:
    """``items`` in consecutive slices of ``size`` (the last may be shorter): the tasks of a ``map_forked``."""
    return [items[start:start + size] for start in range(0, len(items), size)]


def _run(index: int) -> object:
    assert _work is not None, "a forked worker runs only inside map_forked"
    return _work(index)


def map_forked(function: Callable[[Item], Result], items: Sequence[Item], jobs: int | None = None) -> list[Result]:
    """``[function(item) for item in items]``, in up to ``jobs`` forked processes (default: the usable cores).

    The results keep the items' order. ``function`` may be a closure: it is inherited, never pickled; its
    results must pickle. An exception in a worker is raised here.
    """
    global _work
    jobs = min(usable_cores() if jobs is None else jobs, len(items))
    if jobs <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [function(item) for item in items]
    _work = lambda index: function(items[index])  # noqa: E731 (inherited by the workers at the fork)
    try:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            return pool.map(_run, range(len(items)), chunksize=1)
    finally:
        _work = None
