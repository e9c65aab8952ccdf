"""Progress of one evaluation, saved after every attack batch, so a killed run continues where it stopped.

The state lies next to the record it will become, ``<results>/<dataset>/<threat slug>/.<name>.state``
(not ``*.json``: ``read_store`` never takes it for a record), and is rewritten atomically. It holds,
per example, whether the model misclassified it clean, whether it is still robust, or which stage
broke it, plus the position (stage, next batch). That is all a resume needs: the survivors of every
stage follow from it, every batch seed derives from the recorded seed and the batch's first example,
and AutoAttack's components reseed from the recorded seed at every call. So continuing at a batch
boundary gives the record an uninterrupted run gives.

A state is keyed by a digest of everything that decides the numbers (checkpoint, data, threat model,
attacks and their configuration, examples, batch size, seed, versions, device). A state under
another key, one that fails validation, or one whose clean predictions differ from this run's is
ignored: the run starts afresh and overwrites it. The results folder is trusted (whoever can write
there can write records directly), so the state is validated for consistency, not for malice.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .results import atomic_write_text

FORMAT = 1
#: per-example status; a value >= 0 is the index (in run order) of the stage that broke the example
CLEAN_WRONG = -2
ROBUST = -1


@dataclass(frozen=True)
class Position:
    stage: int  # index of the stage in progress; the number of stages once all are done
    batch: int  # the next batch of that stage


def fresh_status(correct: torch.Tensor) -> torch.Tensor:
    return torch.where(correct, ROBUST, CLEAN_WRONG).to(torch.long)


def alive_at(status: torch.Tensor, stage: int) -> torch.Tensor:
    """Examples still classified correctly when stage ``stage`` starts."""
    return (status == ROBUST) | (status >= stage)


def config_key(config: dict[str, Any]) -> str:
    """SHA-256 of the configuration as canonical JSON."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def state_path(results_dir: Path, dataset: str, threat_slug: str, name: str) -> Path:
    return results_dir / dataset / threat_slug / f".{name}.state"


class StateFile:
    """Load, save and remove one evaluation's state; tracks wall time summed over every run."""

    def __init__(self, path: Path, key: str):
        self.path = path
        self.key = key
        self._earlier_runs_s = 0.0
        self._opened = time.perf_counter()

    def load(self, correct: torch.Tensor, n_stages: int) -> tuple[torch.Tensor, Position] | None:
        """The saved status and position, if they belong to this configuration and this clean pass."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data["format"] != FORMAT or data["key"] != self.key:
                return None
            status = torch.tensor(data["status"], dtype=torch.long)
            position = Position(int(data["stage"]), int(data["batch"]))
            elapsed = float(data["elapsed_s"])
        except (OSError, ValueError, KeyError, TypeError):  # no state, or not one of ours: start afresh
            return None
        consistent = (
            status.shape == correct.shape
            and torch.equal(status == CLEAN_WRONG, ~correct)
            and 0 <= position.stage <= n_stages
            and position.batch >= 0
            and bool(((status >= CLEAN_WRONG) & (status <= position.stage)).all())
            and elapsed >= 0
        )
        if not consistent:
            return None
        self._earlier_runs_s = elapsed
        return status, position

    def save(self, status: torch.Tensor, position: Position) -> None:
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
