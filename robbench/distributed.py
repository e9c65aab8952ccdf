"""Scale-out with torchrun: ``torchrun --nproc-per-node N -m robbench evaluate ...`` (or ``train``).

torchrun sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and the rendezvous variables; without them
(or with ``WORLD_SIZE=1``) every function here is a no-op and robbench runs as one process.

How an evaluation is split, so that the record is the single-process record by construction:

- the clean pass: each rank predicts one contiguous block of examples, aligned to the batch
  size (so its batches are the single-process batches), and the predictions are all-reduced;
- every attack stage: the survivors are split into batches exactly as in one process (from the
  global survivor list, in order), and batch ``i`` of the stage is attacked by rank
  ``i % world_size``. A batch's result depends only on the batch: its seed derives from the
  recorded seed and its first example, and AutoAttack reseeds at every call. After each round
  of ``world_size`` batches the per-example status is all-reduced, so every rank knows every
  survivor before the next stage forms its batches (which is what makes the batches, and
  AutoAttack's pooling of survivors, identical to one process and to ``run_standard_evaluation``);
- after a round, rank 0 saves the resumable state: every batch before the round's end is done,
  so the saved position means what it means in one process, and either can resume the other;
- rank 0 writes the record; ``device`` says how many processes shared the work.

Only small CPU tensors cross processes (the status, one int64 per example), through gloo; with
CUDA the group also gets NCCL for ``DistributedDataParallel`` training.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

import torch

from .errors import RobbenchError

#: a rank may wait at a collective for the slowest batch of a round (an AutoAttack batch of a big
#: model can take many minutes); a failed rank makes torchrun stop the others, so no hang lasts this long
TIMEOUT = timedelta(hours=4)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise RobbenchError(f"environment variable {name}={value!r} is not an integer; run under torchrun") from exc


@dataclass(frozen=True)
class World:
    """This process's place among the processes torchrun started."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    # --- placement -------------------------------------------------------------------------
    def device(self, device: torch.device) -> torch.device:
        """One GPU per local rank: ``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun."""
        if self.active and device.type == "cuda" and device.index is None:
            if self.local_rank >= torch.cuda.device_count():
                raise RobbenchError(
                    f"local rank {self.local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                    "start at most one process per GPU (--nproc-per-node)"
                )
            device = torch.device("cuda", self.local_rank)
        if device.type == "cuda" and device.index is not None:  # a bare "cuda" keeps torch's current device
            torch.cuda.set_device(device)
        return device

    def describe(self, device_text: str) -> str:
        return f"{device_text} x {self.size} processes (torchrun)" if self.active else device_text

    # --- sharding ----------------------------------------------------------------------------
    def block(self, n: int, batch_size: int) -> tuple[int, int]:
        """This rank's contiguous block of ``range(n)``: whole batches, spread as evenly as they go."""
        batches = -(-n // batch_size)
        first = batches * self.rank // self.size
        last = batches * (self.rank + 1) // self.size
        return min(n, first * batch_size), min(n, last * batch_size)

    def owns(self, position: int) -> bool:
        """Whether this rank attacks the batch at ``position`` (counted from the first batch run)."""
        return position % self.size == self.rank

    def round_ends(self, position: int, count: int) -> bool:
        """Whether the batch at ``position`` closes a round (every rank has attacked one) or the stage."""
        return (position + 1) % self.size == 0 or position + 1 == count

    # --- collectives (no-ops in one process) --------------------------------------------------
    def all_predictions(self, predict: Callable[[int, int], torch.Tensor], n: int, batch_size: int) -> torch.Tensor:
        """Labels for ``range(n)``: ``predict(start, stop)`` on this rank's block, the rest from the others."""
        if not self.active:
            return predict(0, n)
        start, stop = self.block(n, batch_size)
        labels = torch.full((n,), -1, dtype=torch.long)
        if stop > start:
            labels[start:stop] = predict(start, stop).to(torch.long)
        _all_reduce_max(labels)
        return labels

    def merge_status(self, status: torch.Tensor) -> None:
        """Combine every rank's per-example status in place.

        In a stage, a rank only turns survivors (``ROBUST`` = -1) into the stage's number (>= 0), each
        on its own batches, so the elementwise maximum is the union of what every rank broke.
        """
        if self.active:
            _all_reduce_max(status)

    def from_main(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (e.g. a saved state that only rank 0 can read)."""
        if not self.active:
            return value
        import torch.distributed as dist

        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, compute: Callable[[], Any]) -> Any:
        """``compute()`` run on rank 0 alone, its value (or its ``RobbenchError``, raised) on every rank.

        For what only rank 0 may do, such as reading a file that may be missing: an error raised
        there alone would leave the other ranks waiting at the next collective.
        """
        if not self.active:
            return compute()
        outcome: Any = None
        if self.is_main:
            try:
                outcome = compute()
            except RobbenchError as exc:
                outcome = exc
        outcome = self.from_main(outcome)
        if isinstance(outcome, RobbenchError):
            raise RobbenchError(str(outcome))
        return outcome

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank (e.g. per-rank random-generator states)."""
        if not self.active:
            return [value]
        import torch.distributed as dist

        values: list[Any] = [None] * self.size
        dist.all_gather_object(values, value)
        return values

    def sync_buffers(self, module: torch.nn.Module) -> None:
        """Copy rank 0's buffers (batch-norm running statistics) to every rank.

        Under DDP each rank updates its running statistics from its own shard; before the model is
        evaluated or saved, every rank must hold the one that rank 0 saves.
        """
        if self.active:
            import torch.distributed as dist

            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over the ranks, in float64 (e.g. a loss sum and a count)."""
        if not self.active:
            return list(values)
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    # --- training ------------------------------------------------------------------------------
    def shard(self, index: torch.Tensor) -> torch.Tensor:
        """This rank's part of a global training batch: contiguous, sizes differing by at most one."""
        if not self.active:
            return index
        n = index.numel()
        return index[n * self.rank // self.size : n * (self.rank + 1) // self.size]

    def wrap_ddp(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """``DistributedDataParallel(model)`` under torchrun, the model itself otherwise.

        Attack the *inner* model (``unwrap``): an input-gradient pass through the DDP wrapper
        would arm its gradient all-reduce for a backward that never reaches the parameters.
        """
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (the model itself otherwise)."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def _all_reduce_max(tensor: torch.Tensor) -> None:
    import torch.distributed as dist

    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)


_WORLD: World | None = None


def world() -> World:
    """The process group torchrun described in the environment, joined on first use."""
    global _WORLD
    size = _env_int("WORLD_SIZE", 1)
    if size <= 1:
        return World()
    if _WORLD is not None:
        return _WORLD
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < size:
        raise RobbenchError(f"RANK={rank} is outside 0..{size - 1}; run under torchrun")
    import torch.distributed as dist

    if not dist.is_available():
        raise RobbenchError("this PyTorch build has no torch.distributed; run without torchrun")
    if not dist.is_initialized():
        # status and predictions are CPU tensors (gloo); DDP gradients on GPUs go through NCCL
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
        dist.init_process_group(backend=backend, timeout=TIMEOUT)
        atexit.register(_shutdown)
    if dist.get_world_size() != size or dist.get_rank() != rank:
        raise RobbenchError("the process group does not match WORLD_SIZE/RANK; run under torchrun")
    _WORLD = World(rank=rank, size=size, local_rank=local_rank)
    return _WORLD


def is_main_process() -> bool:
    """Rank 0, or a run without torchrun; reads the environment only (joins no group)."""
    return _env_int("RANK", 0) == 0


def leave() -> None:
    """Leave the process group once every rank has finished: the end of a successful run.

    Without the barrier, a rank that tears down its gloo connections while a peer's last
    collective is still in flight can abort at exit (about 1 run in 30 here), turning a finished
    run into a failed one. After an error the barrier could wait for a rank that never comes, so
    there only ``_shutdown`` runs, at exit.
    """
    if _WORLD is not None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def _shutdown() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
