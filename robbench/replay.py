"""The replay level of ``robbench verify``: attack a record's claimed survivors again and see whether they hold.

``--replay N`` re-attacks N examples the record counts robust, chosen by the verifier from a seed
it picks (printed, so ``--replay-seed`` repeats it): the record's own attacks, with the
configuration the registered attacks give for its threat model (the consistency level has checked
that it is the recorded one), its batch size, and an attack seed derived from the replay seed,
so every random start differs from the evaluation's. A replayed survivor that breaks is a
verified adversarial example the record missed: the check fails and the break becomes a new run of
the model (``replay_run``), so the board's best-known accuracy includes it.

``--replay all`` re-runs the whole evaluation exactly as recorded (same seed, same batches) and
compares every example's outcome with the evidence: an honest record is reproduced example by
example on the same versions and device type.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import torch

from .adversarial import digest, encode
from .attacks import derive_seed
from .consistency import Failure, attack_rules, recorded_attack
from .evaluation import run_attacks
from .evidence import CLEAN_WRONG, SURVIVED, Evidence
from .flags import board_flags, evaluation_checks
from .loader import LoadedModel
from .results import AdversarialExamples, AttackSpec, EvalRecord
from .store import ADVERSARIAL_SUFFIX
from .runtime import describe_device
from .threat_models import get_threat_model


@dataclass
class Replay:
    """What a replay re-ran and found."""

    seed: int  # the replay seed: chooses the examples, and the attack seed derives from it (``all``: the record's seed)
    attack_seed: int
    positions: np.ndarray  # evaluated positions (from ``examples.start``) that were attacked again, sorted
    codes: np.ndarray  # their outcome in the replay: SURVIVED, CLEAN_WRONG or the breaking stage's index
    broken_x: torch.Tensor  # verified adversarial inputs of ``positions[codes >= 0]``, in that order
    wall_time_s: float

    @property
    def broken_positions(self) -> np.ndarray:
        return self.positions[self.codes >= 0]


def replay_survivors(record: EvalRecord, loaded: LoadedModel, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                     count: int, seed: int, device: torch.device) -> Replay:
    """Re-attack ``count`` claimed survivors (all, when fewer) chosen with ``seed``, with an attack seed derived from it."""
    survivors = np.flatnonzero(record.evidence.codes() == SURVIVED)
    chosen = np.sort(np.random.default_rng(seed).choice(survivors, min(count, survivors.size), replace=False))
    return _run(record, loaded, model, x, y, chosen, seed, derive_seed(seed, "replay"), device)


def replay_all(record: EvalRecord, loaded: LoadedModel, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
               device: torch.device) -> Replay:
    """The whole evaluation again, as recorded: the same seed and batch size, every example."""
    return _run(record, loaded, model, x, y, np.arange(record.n_examples), record.seed, record.seed, device)


def _run(record: EvalRecord, loaded: LoadedModel, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
         positions: np.ndarray, seed: int, attack_seed: int, device: torch.device) -> Replay:
    started = time.perf_counter()
    if positions.size == 0:
        return Replay(seed, attack_seed, positions, np.zeros(0, dtype=np.int64), torch.empty(0, *x.shape[1:]), 0.0)
    attacks = [recorded_attack(spec) for spec in record.config.attacks]
    chosen = torch.from_numpy(positions)
    outcome = run_attacks(model, x[chosen], y[chosen], attacks=attacks, batch_size=record.batch_size,
                          rules=attack_rules(record, loaded, device, seed=attack_seed))
    return Replay(seed, attack_seed, positions, outcome.evidence.codes(), outcome.adversarial_x,
                  time.perf_counter() - started)


def survivor_failures(record: EvalRecord, replay: Replay) -> list[Failure]:
    """One failure per replayed survivor that broke."""
    codes = replay.codes
    return [Failure(record.examples.start + int(p), f"the record counts it robust; the replay (seed {replay.seed}) "
                    f"breaks it with {record.evidence.stages[int(c)]}")
            for p, c in zip(replay.positions, codes) if c >= 0]


def comparison_failures(record: EvalRecord, replay: Replay) -> list[Failure]:
    """``--replay all``: every example whose re-run outcome differs from the evidence."""
    recorded = record.evidence.codes()
    return [Failure(record.examples.start + int(p), f"the record says {_outcome(record, int(recorded[p]))}; "
                    f"the re-run gives {_outcome(record, int(c))}")
            for p, c in zip(replay.positions, replay.codes) if recorded[p] != c]


def _outcome(record: EvalRecord, code: int) -> str:
    if code == CLEAN_WRONG:
        return "misclassified clean"
    return "robust" if code == SURVIVED else f"broken by {record.evidence.stages[code]}"


def replay_run(record: EvalRecord, replay: Replay, loaded: LoadedModel, model: torch.nn.Module, x: torch.Tensor,
               y: torch.Tensor, saved: tuple[np.ndarray, np.ndarray], device: torch.device) -> tuple[EvalRecord, bytes]:
    """The record of the replay as a new run of the model, and its adversarial-example file.

    The run covers the record's examples, so boards combine it with the record example by example:
    the replayed examples have the replay's outcome, every other example the record's (its breaks
    with their verified adversarial examples, ``saved``), as the run's note says. Its seed is the
    attack seed (and so are the attack configurations that record a seed); its flags are recomputed
    for that seed, as for any run.
    """
    codes = record.evidence.codes()
    codes[replay.positions] = np.where(replay.codes >= 0, replay.codes, codes[replay.positions])
    evidence = Evidence.from_codes(codes, record.evidence.stages)
    index, x_adv = saved
    broken = replay.broken_positions + record.examples.start
    payload = encode(np.concatenate([index, broken]), np.concatenate([x_adv, replay.broken_x.numpy()]))
    rules = attack_rules(record, loaded, device, seed=replay.attack_seed)
    attack_specs = [AttackSpec(name=spec.name, config=recorded_attack(spec).config(rules)) for spec in record.config.attacks]
    config = record.config.model_copy(update={"seed": replay.attack_seed, "attacks": attack_specs,
                                              "device": describe_device(device)})
    standard_eps = get_threat_model(loaded.dataset, record.threat_model.name).eps
    attacks = evidence.attack_results()
    flags = evaluation_checks(model, x, y, attacks, threat=record.threat_model, value_range=loaded.dataset.value_range,
                              seed=config.seed, device=device, standard_eps=standard_eps).flags
    note = (f"robbench verify --replay (seed {replay.seed}) attacked again {replay.positions.size} examples that run "
            f"{record.config.run_id} counts robust, with its attacks and attack seed {replay.attack_seed}: "
            f"{broken.size} broke (test indices {', '.join(map(str, broken.tolist()))}); every other example's "
            "outcome and adversarial example are that run's")
    run = EvalRecord(
        config=config, metadata=record.metadata, parameter_count=record.parameter_count,
        clean_accuracy=evidence.clean_accuracy(), robust_accuracy=evidence.robust_accuracy(), attacks=attacks,
        evidence=evidence,
        adversarial_examples=AdversarialExamples(file=f"{config.run_id}{ADVERSARIAL_SUFFIX}", sha256=digest(payload),
                                                 count=int(index.size + broken.size)),
        notes=[note], flags=flags, wall_time_s=round(replay.wall_time_s, 3),
        timestamp=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    )
    return run.model_copy(update={"flags": [*flags, *board_flags(run)]}), payload
