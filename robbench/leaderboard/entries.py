"""What a board shows, before any formatting: one entry per model, its runs combined example by example.

Several runs of one checkpoint under one threat model (the board run, a later run with a stronger
or extra attack, a plugin attack) combine into the **best-known** robust accuracy: an example
counts as robust only if it is classified correctly and no verified attack of any run broke it. So
a later run can only lower the number. Runs combine when they share the checkpoint (SHA-256), the
threat model and radius, and the examples; a model's entry uses the largest set of examples it was
evaluated on. Breaks are attributed to the attack that first broke each example in the first run
that broke it (the board-standard run first, then by time), so an extra run is credited exactly
with the examples it added.

Entries are ranked by best-known robust accuracy, then clean accuracy, then name. Each entry is
compared with the one ranked just above it by an exact McNemar test on the per-example robust
outcomes when both were evaluated on the same examples: not significantly different
(p >= 0.05) means it shares that entry's rank.

A model whose metadata reports a published robust accuracy for the board's threat model and radius
is tested against it: an exact one-sided binomial test of the best-known robust count on the
evaluated examples against the published proportion; p < 0.05 marks robbench's number as
significantly below the published one.

An escalation run (``robbench.adaptive``: ``evaluate --adaptive``) is one more run of the same
examples that attacked only what the runs it continues left; for each flag it addressed, the entry
says how many escalations ran and how far the best-known number fell from the runs without them
(``EscalationSummary``), with the exact McNemar test of the two outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import math

import numpy as np

from ..config import Reported
from ..flags import BOARD, is_reliability_flag
from ..results import EvalRecord, Examples
from ..stats import ALPHA, below_reported_p, mcnemar_p, wilson_interval
from ..threat_models import ThreatModel


@dataclass(frozen=True)
class BoardKey:
    dataset: str
    threat: ThreatModel

    @property
    def sort_key(self) -> tuple:
        return (self.dataset, self.threat.name, not self.threat.standard, self.threat.eps, self.threat.norm)


def board_key(record: EvalRecord) -> BoardKey:
    return BoardKey(record.dataset, record.threat_model)


@dataclass
class Entry:
    """One model on one board: its runs on one set of examples, combined."""

    runs: list[EvalRecord]  # the board-standard run first, then by time
    clean_correct: np.ndarray  # per example, in every run
    robust: np.ndarray  # per example: correct and broken by no run
    breaks_by: dict[str, int]  # attack -> examples it was first to break
    rank: int = 0
    p_vs_above: float | None = None  # McNemar against the entry ranked just above; None: not comparable
    beside: str | None = None  # the results folder it came from, when rendered beside the board's own records

    @property
    def primary(self) -> EvalRecord:
        return self.runs[0]

    @property
    def name(self) -> str:
        return self.primary.name

    @property
    def examples(self) -> Examples:
        return self.primary.examples

    @property
    def n(self) -> int:
        return int(self.robust.size)

    @property
    def clean_accuracy(self) -> float:
        return int(self.clean_correct.sum()) / self.n

    @property
    def robust_accuracy(self) -> float:
        return int(self.robust.sum()) / self.n

    def clean_interval(self) -> tuple[float, float]:
        return wilson_interval(int(self.clean_correct.sum()), self.n)

    def robust_interval(self) -> tuple[float, float]:
        return wilson_interval(int(self.robust.sum()), self.n)

    @property
    def tied_with_above(self) -> bool:
        return self.p_vs_above is not None and self.p_vs_above >= ALPHA

    @property
    def reported(self) -> Reported | None:
        """The published number for this board's threat model and radius, from the board run's metadata."""
        threat = self.primary.threat_model
        for entry in self.primary.metadata.reported:
            if entry.threat_model == threat.name and math.isclose(entry.eps, threat.eps, rel_tol=1e-9):
                return entry
        return None

    def below_reported_p(self) -> float | None:
        """One-sided exact binomial p-value of the best-known robust count against the reported accuracy."""
        reported = self.reported
        return None if reported is None else below_reported_p(int(self.robust.sum()), self.n, reported.robust_accuracy)

    @property
    def significantly_below_reported(self) -> bool:
        p = self.below_reported_p()
        return p is not None and p < ALPHA

    def escalation(self, code: str) -> "EscalationSummary | None":
        """What the escalation runs for reliability flag ``code`` tried; None when none ran."""
        runs = [run for run in self.runs if run.config.escalation is not None and code in run.config.escalation.flags]
        protocol = [run for run in self.runs if run.config.escalation is None]
        if not runs or not protocol:
            return None
        before = combine(protocol).robust
        return EscalationSummary(
            escalations=len(runs), rounds=max(run.config.escalation.round for run in runs),
            before=int(before.sum()) / self.n, after=self.robust_accuracy, p=mcnemar_p(before, self.robust),
        )

    def reliability_flags(self) -> list[str]:
        """Reasons to doubt the number, from any run (shown with ⚠)."""
        return sorted({f.code for run in self.runs for f in run.flags if is_reliability_flag(f.code)})

    def departures(self) -> list[str]:
        """How the board run departs from the board's standard (shown, without ⚠)."""
        return [f.code for f in self.primary.flags if not is_reliability_flag(f.code)]


@dataclass(frozen=True)
class EscalationSummary:
    """Escalation runs for one flag, and the best-known robust accuracy without every escalation run and with them."""

    escalations: int
    rounds: int
    before: float
    after: float
    p: float  # exact McNemar, before vs after (the escalations can only break, so after <= before)

    @property
    def significant(self) -> bool:
        return self.p < ALPHA


def _run_order(record: EvalRecord) -> tuple:
    standard = tuple(a.name for a in record.attacks) == BOARD.attacks and record.seed == BOARD.seed
    return (not standard, record.timestamp, record.config.run_id)


def combine(runs: list[EvalRecord]) -> Entry:
    """Best-known outcome of runs of one checkpoint on the same examples."""
    runs = sorted(runs, key=_run_order)
    clean = np.logical_and.reduce([run.evidence.clean_correct() for run in runs])
    broken = np.zeros_like(clean)
    breaks_by: dict[str, int] = {}
    for run in runs:
        codes = run.evidence.codes()
        for stage in range(len(run.evidence.stages)):
            new = (codes == stage) & clean & ~broken
            if new.any():
                attack = run.evidence.attack_of(stage)
                breaks_by[attack] = breaks_by.get(attack, 0) + int(new.sum())
                broken |= new
    return Entry(runs=runs, clean_correct=clean, robust=clean & ~broken, breaks_by=breaks_by)


def board_entries(records: Iterable[EvalRecord]) -> tuple[list[Entry], list[str]]:
    """One ranked entry per model on a board, and problem lines for runs that cannot be combined."""
    by_name: dict[str, list[EvalRecord]] = {}
    for record in records:
        by_name.setdefault(record.name, []).append(record)
    entries, problems = [], []
    for name, runs in sorted(by_name.items()):
        owner = sorted(runs, key=_run_order)[0].checkpoint.sha256
        foreign = [r for r in runs if r.checkpoint.sha256 != owner]
        for run in foreign:
            problems.append(f"{name}: run {run.config.run_id} is of another checkpoint than the model's board run; not combined")
        runs = [r for r in runs if r.checkpoint.sha256 == owner]
        largest = max(runs, key=lambda r: (r.examples.count, -r.examples.start)).examples
        combined = [r for r in runs if r.examples == largest]
        problems += _missing_continued(name, combined)
        entries.append(combine(combined))
    return rank(entries), problems


def _missing_continued(name: str, runs: list[EvalRecord]) -> list[str]:
    """Escalation runs whose continued runs are not among ``runs``: the examples they skipped count as robust."""
    present = {run.config.run_id for run in runs}
    return [
        f"{name}: escalation run {run.config.run_id} continues {', '.join(sorted(missing))}, which is not in the "
        "store; the examples it skipped count as robust"
        for run in runs if run.config.escalation is not None
        for missing in [set(run.config.escalation.continues) - present] if missing
    ]


def rank(entries: list[Entry]) -> list[Entry]:
    entries = sorted(entries, key=lambda e: (-e.robust_accuracy, -e.clean_accuracy, e.name))
    for position, entry in enumerate(entries):
        entry.rank, entry.p_vs_above = position + 1, None
        if position == 0:
            continue
        above = entries[position - 1]
        if above.examples == entry.examples:
            entry.p_vs_above = mcnemar_p(above.robust, entry.robust)
            if entry.tied_with_above:
                entry.rank = above.rank
    return entries


@dataclass
class Store:
    """Every board's entries, keyed and ordered, and the problems found on the way."""

    boards: dict[BoardKey, list[Entry]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: ``id()`` of each record on the boards -> the results folder and the file it was read from (the store holds
    #: the records, so their ids stay theirs; a record's run id costs a hash of its configuration to recompute)
    files: dict[int, tuple[Path, Path]] = field(default_factory=dict)


def build_store(records: list[EvalRecord], problems: list[str]) -> Store:
    grouped: dict[BoardKey, list[EvalRecord]] = {}
    for record in records:
        grouped.setdefault(board_key(record), []).append(record)
    store = Store(problems=list(problems))
    for key in sorted(grouped, key=lambda k: k.sort_key):
        entries, found = board_entries(grouped[key])
        store.boards[key] = entries
        store.problems += [f"{key.dataset}/{key.threat.slug}: {p}" for p in found]
    return store
