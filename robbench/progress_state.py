"""Progress of one evaluation, saved after every attack batch, so a killed run continues where it stopped.

The state lies next to the record it will become (``robbench.store.state_path``: a dot file,
never ``*.json``, so ``read_store`` never takes it for a record) and is rewritten atomically. It
holds, per example, whether the model misclassified it clean, whether it is still robust, or which
stage broke it, plus the position (stage, next batch). Beside it, a folder ``<state>.d`` receives
one file per saved round with the adversarial inputs that round verified (the adversarial-example
format of ``robbench.adversarial``), named by the position it completes; files past the saved
position (written by a run killed before it saved) are ignored. That is all a resume needs: the
survivors of every stage follow from the status, every batch seed derives from the recorded seed
and the batch's first example, and AutoAttack's components reseed from the recorded seed at every
call. So continuing at a batch boundary gives the record an uninterrupted run gives.

A state is keyed by the run configuration's digest (``RunConfig.key``). A state under another key,
one that fails validation, one whose clean predictions differ from this run's, or one whose saved
adversarial inputs do not match its broken examples is ignored: the run starts afresh and
overwrites it. The results folder is trusted (whoever can write there can write records
directly), so the state is validated for consistency, not for malice.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .adversarial import decode, encode
from .errors import RobbenchError
from .atomic_files import atomic_write_bytes, atomic_write_text
from .evidence import CLEAN_WRONG, EARLIER, SURVIVED

FORMAT = 2


@dataclass(frozen=True)
class Position:
    stage: int  # index of the stage in progress; the number of stages once all are done
    batch: int  # the next batch of that stage

    @property
    def stem(self) -> str:
        return f"s{self.stage:03d}-b{self.batch:07d}"


@dataclass
class Found:
    """Verified adversarial inputs by example position."""

    inputs: dict[int, torch.Tensor] = field(default_factory=dict)

    def add(self, index: torch.Tensor, x_adv: torch.Tensor) -> None:
        for position, row in zip(index.tolist(), x_adv):
            self.inputs[int(position)] = row

    def update(self, other: "Found") -> None:
        self.inputs.update(other.inputs)

    @classmethod
    def merged(cls, parts: list["Found"]) -> "Found":
        whole = cls()
        for part in parts:
            whole.update(part)
        return whole

    def arrays(self, input_shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(index, x_adv)`` sorted by position."""
        order = sorted(self.inputs)
        index = torch.tensor(order, dtype=torch.long)
        x = torch.stack([self.inputs[i] for i in order]) if order else torch.empty(0, *input_shape)
        return index, x.to(torch.float32)


def fresh_status(correct: torch.Tensor, earlier: torch.Tensor | None = None) -> torch.Tensor:
    """Before any attack: clean-wrong, or survived; ``EARLIER`` where ``earlier`` (broken by a run this one
    continues) and still classified correctly."""
    status = torch.where(correct, SURVIVED, CLEAN_WRONG).to(torch.long)
    return status if earlier is None else torch.where(correct & earlier, EARLIER, status)


def alive_at(status: torch.Tensor, stage: int) -> torch.Tensor:
    """Examples still classified correctly when stage ``stage`` starts."""
    return (status == SURVIVED) | (status >= stage)


class StateFile:
    """Load, save and remove one evaluation's state; tracks wall time summed over every run."""

    def __init__(self, path: Path, key: str, input_shape: tuple[int, ...]):
        self.path = path
        self.key = key
        self.input_shape = tuple(input_shape)
        self.found_dir = path.with_name(path.name + ".d")
        self._earlier_runs_s = 0.0
        self._opened = time.perf_counter()

    def load(self, correct: torch.Tensor, n_stages: int) -> tuple[torch.Tensor, Position, Found] | None:
        """The saved status, position and adversarial inputs, if they belong to this configuration and clean pass.

        When they do not, the run starts afresh, and saved inputs that would mix into it are removed.
        """
        resumed = self._resumable(correct, n_stages)
        if resumed is None:
            shutil.rmtree(self.found_dir, ignore_errors=True)
        return resumed

    def _resumable(self, correct: torch.Tensor, n_stages: int) -> tuple[torch.Tensor, Position, Found] | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data["format"] != FORMAT or data["key"] != self.key:
                return None
            status = torch.tensor(data["status"], dtype=torch.long)
            position = Position(int(data["stage"]), int(data["batch"]))
            elapsed = float(data["elapsed_s"])
            found = self._load_found(position)
        except (OSError, ValueError, KeyError, TypeError, RobbenchError):  # no state, or not one of ours: start afresh
            return None
        consistent = (
            status.shape == correct.shape
            and torch.equal(status == CLEAN_WRONG, ~correct)
            and 0 <= position.stage <= n_stages
            and position.batch >= 0
            and bool(((status >= EARLIER) & (status <= position.stage)).all())
            and sorted(found.inputs) == (status >= 0).nonzero().squeeze(1).tolist()
            and elapsed >= 0
        )
        if not consistent:
            return None
        self._earlier_runs_s = elapsed
        return status, position, found

    def _load_found(self, position: Position) -> Found:
        found = Found()
        for file in sorted(self.found_dir.glob("*.npz")) if self.found_dir.is_dir() else []:
            if file.stem <= position.stem:
                index, x_adv = decode(file, self.input_shape)
                found.add(torch.from_numpy(index), torch.from_numpy(x_adv))
        return found

    def save(self, status: torch.Tensor, position: Position, new: Found) -> None:
        if new.inputs:
            index, x_adv = new.arrays(self.input_shape)
            atomic_write_bytes(self.found_dir / f"{position.stem}.npz", encode(index.numpy(), x_adv.numpy()))
        state = {
            "format": FORMAT,
            "key": self.key,
            "stage": position.stage,
            "batch": position.batch,
            "elapsed_s": self.elapsed_s(),
            "status": status.tolist(),
        }
        atomic_write_text(self.path, json.dumps(state, separators=(",", ":")))

    def elapsed_s(self) -> float:
        return self._earlier_runs_s + time.perf_counter() - self._opened

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        shutil.rmtree(self.found_dir, ignore_errors=True)


