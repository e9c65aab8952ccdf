"""How many CPU threads torch should use: the cores actually free for this process, not the machine's.

torch starts one thread per core it sees. On a shared machine its threads then spin waiting for
cores that other work holds, and a run takes several times its CPU time. robbench counts the cores
it may use (CPU affinity, and the cgroup CPU quota of a container), subtracts the load running
on them (the 1-minute load average, scaled to those cores when the machine has more) and uses
what is left, at least one. ``--threads N`` overrides it, and so does an ``OMP_NUM_THREADS`` set in
the environment (torchrun sets it to 1 per process).
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import RobbenchError

THREADS_ENV = "OMP_NUM_THREADS"
#: more threads than any machine has cores; OpenMP cannot start a million
MAX_THREADS = 4096
_CGROUP = Path("/sys/fs/cgroup")


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota if one is set."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def cgroup_cpu_quota(root: Path = _CGROUP) -> float | None:
    """CPUs' worth of time the cgroup may use (cgroup v2 ``cpu.max``, else v1 CFS quota); None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def free_cores(cores: int, load: float, machine_cores: int) -> int:
    """``cores`` minus the load on them (the machine's load, scaled to our share of its cores), at least 1."""
    busy = load * min(1.0, cores / max(machine_cores, 1))
    return max(1, min(cores, round(cores - busy)))


def auto_threads() -> int:
    cores = usable_cores()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return free_cores(cores, load, os.cpu_count() or cores)


def choose_threads(requested: int | None) -> int | None:
    """The thread count to set: ``requested``, else None under an explicit OMP_NUM_THREADS, else ``auto_threads()``."""
    if requested is not None:
        if requested < 1:  # torch.set_num_threads would raise a RuntimeError: a traceback for a typo
            raise RobbenchError(f"must be a positive integer, got {requested}", parameter="threads")
        if requested > MAX_THREADS:  # OpenMP fails to start that many: a traceback
            raise RobbenchError(f"must be at most {MAX_THREADS}, got {requested}; give the cores to use", parameter="threads")
        return requested
    if os.environ.get(THREADS_ENV):
        return None
    return auto_threads()


_applied = False  # whether this process chose its threads already (the command line does, from --threads)


def apply_threads(requested: int | None) -> int:
    """Set torch's intra-op threads by ``choose_threads``; the number in use."""
    import torch

    global _applied
    chosen = choose_threads(requested)
    if chosen is not None:
        torch.set_num_threads(chosen)
    _applied = True
    return torch.get_num_threads()


def ensure_threads() -> int:
    """The command line's policy for a run started from Python (``robbench.evaluate``, ``robbench.benchmark``): applied
    once per process, unless the command line applied it already; ``apply_threads(n)`` first picks ``n``."""
    if not _applied:
        return apply_threads(None)
    import torch

    return torch.get_num_threads()


@contextmanager
def threads_set(count: int | None) -> Iterator[int]:
    """Run with torch's intra-op threads at ``count`` (None: as they are), restored afterwards; yields the count in use."""
    import torch

    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
