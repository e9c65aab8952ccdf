"""Result records, the single source of truth for leaderboards: the schema.

One record per evaluation run. A model keeps every run under a threat model (e.g. the board run
and a later stronger attack), which boards combine per example; a run never overwrites another
(the run id holds a digest of its configuration). Accuracies are fractions in [0, 1], stored as
numbers. Where records live, how they are read and written, and who owns a name: ``robbench.store``.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .config import MAX_NAME_LENGTH, NAME_PATTERN, Metadata, Normalization
from .evidence import AttackResult, Evidence, disagreements
from .threat_models import ThreatModel

SCHEMA_VERSION = 2
Fraction = float
#: ``RunConfig.device`` of a CPU run, as ``robbench.runtime.describe_device`` writes it; six digits bound what a record
#: can make ``int()`` parse
_CPU_DEVICE = re.compile(r"cpu \((\d{1,6}) threads?\)")


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: ``Examples.split`` of tensors a caller passed to ``robbench.benchmark(x=, y=)``: not a test split
USER_SUPPLIED = "user-supplied"


class Examples(Frozen):
    """Which examples were evaluated: ``split[start:stop]`` of a test set of ``test_size``.

    ``split`` is ``"user-supplied"`` for a caller's own tensors (``robbench.benchmark(x=, y=)``; their
    digest is ``RunConfig.data_sha256``, ``test_size`` their count). Such a record stays in memory: the
    store refuses to write or show it, and ``verify`` cannot check it without the tensors.
    """

    split: Literal["test", "user-supplied"] = "test"
    start: int = Field(ge=0)
    stop: int = Field(gt=0)
    test_size: int = Field(gt=0)

    @property
    def count(self) -> int:
        return self.stop - self.start

    @property
    def is_full(self) -> bool:
        return self.start == 0 and self.stop == self.test_size

    @property
    def user_supplied(self) -> bool:
        return self.split == USER_SUPPLIED


class Versions(Frozen):
    robbench: str
    torch: str
    pyautoattack: str
    python: str


class Flag(Frozen):
    """A reason to distrust a result (see ``robbench.flags``); shown next to it, never hiding it."""

    code: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")  # stable: leaderboards and scripts key on it
    message: str  # one line for people

    def __str__(self) -> str:
        return self.code


class Checkpoint(Frozen):
    path: str  # as model.yaml names it; for hub weights, hf://ORG/REPO/PATH@<commit sha>
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    repo: str | None = None  # hub weights only: ORG/REPO and the commit the revision resolved to
    revision: str | None = Field(default=None, pattern=r"^[0-9a-f]{40}$")


class AttackSpec(Frozen):
    name: str = Field(pattern=NAME_PATTERN)
    config: dict[str, Any]


class EscalationOf(Frozen):
    """What an escalation run (``robbench.adaptive``) continues: it attacks only the examples those runs left."""

    continues: list[str] = Field(min_length=1)  # run ids, in this record's folder: the board run, then earlier rounds
    flags: list[str] = Field(min_length=1)  # the reliability flags whose escalations it runs
    round: int = Field(ge=1)


class RunConfig(Frozen):
    """Everything that decides an evaluation's numbers: built once, hashed for resuming, embedded in the record."""

    name: str = Field(pattern=NAME_PATTERN, max_length=MAX_NAME_LENGTH)  # model.yaml's limit: names become file names
    dataset: str = Field(pattern=NAME_PATTERN, max_length=MAX_NAME_LENGTH)
    dataset_params: dict[str, Any] = Field(default_factory=dict)
    data_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")  # of the evaluated examples (x float32, y int64)
    threat_model: ThreatModel
    examples: Examples
    attacks: list[AttackSpec]  # none: a clean-accuracy-only run
    architecture: str
    architecture_kwargs: dict[str, Any] = Field(default_factory=dict)
    normalization: Normalization | None = None
    checkpoint: Checkpoint
    seed: int = Field(ge=0)
    batch_size: int = Field(gt=0)
    device: str
    versions: Versions
    #: forward passes each prediction averages (``robbench.randomized``); 1: the model itself
    prediction_draws: int = Field(default=1, ge=1)
    escalation: EscalationOf | None = None  # None: a run of every example (not an escalation)

    @property
    def cpu_threads(self) -> int | None:
        """The torch CPU threads the run used (``device`` ``cpu (N threads)``); None for another device.

        CPU float rounding moves with the thread count (a reduction splits otherwise), so a borderline
        example can flip: ``robbench verify`` re-runs a CPU record on this many threads.
        """
        found = _CPU_DEVICE.fullmatch(self.device)
        return int(found.group(1)) if found else None

    def key(self) -> str:
        """SHA-256 of the configuration as canonical JSON: the identity of a run.

        ``prediction_draws`` enters only when it is not 1 and ``escalation`` only when there is one, so runs
        recorded before either existed keep their identity.
        """
        left_out = ({"prediction_draws"} if self.prediction_draws == 1 else set()) | ({"escalation"} if self.escalation is None else set())
        text = json.dumps(self.model_dump(mode="json", exclude=left_out), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @property
    def run_id(self) -> str:
        """File stem of the run: readable, and distinct for every distinct configuration."""
        attacks = "+".join(a.name for a in self.attacks) or "clean"
        return f"{attacks}-seed{self.seed}-{self.examples.start}-{self.examples.stop}-{self.key()[:10]}"


class AdversarialExamples(Frozen):
    """The file beside the record holding every broken example's verified adversarial input."""

    file: str = Field(pattern=r"^[a-z0-9][a-z0-9._+-]*\.adv\.npz$")  # in the record's folder
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    count: int = Field(ge=0)


class Reverification(Frozen):
    """A randomized model's breaks, re-checked (``robbench.randomized``): ``redraws`` fresh averaged predictions
    of ``draws`` forward passes each on every one of ``breaks`` breaks; ``still_wrong`` of them were wrong again."""

    draws: int = Field(ge=1)
    redraws: int = Field(ge=1)
    breaks: int = Field(ge=0)
    still_wrong: int = Field(ge=0)
    rate: Fraction | None = Field(default=None, ge=0, le=1)  # still_wrong / (breaks · redraws); None without breaks


class EvalRecord(Frozen):
    """One evaluation run. Totals are derived from ``evidence``; a record whose totals disagree is refused."""

    schema_version: Literal[2] = SCHEMA_VERSION
    config: RunConfig
    metadata: Metadata
    parameter_count: int = Field(ge=0)
    clean_accuracy: Fraction = Field(ge=0, le=1)
    robust_accuracy: Fraction = Field(ge=0, le=1)
    attacks: list[AttackResult]
    evidence: Evidence
    adversarial_examples: AdversarialExamples | None = None
    reverification: Reverification | None = None  # randomized models, or runs averaging several draws
    notes: list[str] = Field(default_factory=list)
    flags: list[Flag] = Field(default_factory=list)
    wall_time_s: float = Field(ge=0)
    timestamp: str

    @model_validator(mode="after")
    def _totals_match_evidence(self) -> "EvalRecord":
        if self.evidence.n != self.config.examples.count:
            raise ValueError(f"evidence covers {self.evidence.n} examples, the record {self.config.examples.count}")
        labels = [f"{a.name}/{s.name}" for a in self.attacks for s in a.stages]
        if labels != self.evidence.stages:
            raise ValueError("the attack stages differ from the evidence's stages")
        problems = disagreements(self.evidence, self.clean_accuracy, self.robust_accuracy, self.attacks)
        if problems:
            raise ValueError("totals disagree with the per-example evidence: " + "; ".join(problems))
        return self

    # the run's identity, read through the configuration
    name = property(lambda self: self.config.name)
    dataset = property(lambda self: self.config.dataset)
    dataset_params = property(lambda self: self.config.dataset_params)
    threat_model = property(lambda self: self.config.threat_model)
    examples = property(lambda self: self.config.examples)
    n_examples = property(lambda self: self.config.examples.count)
    architecture = property(lambda self: self.config.architecture)
    architecture_kwargs = property(lambda self: self.config.architecture_kwargs)
    checkpoint = property(lambda self: self.config.checkpoint)
    seed = property(lambda self: self.config.seed)
    batch_size = property(lambda self: self.config.batch_size)
    device = property(lambda self: self.config.device)
    cpu_threads = property(lambda self: self.config.cpu_threads)
    versions = property(lambda self: self.config.versions)

    @property
    def attack_accuracies(self) -> dict[str, float]:
        """Accuracy after each attack, in run order: ``{"pgd": 0.764, "autoattack": 0.744}``."""
        return {a.name: a.accuracy for a in self.attacks}

    @property
    def clean_minus_robust(self) -> float:
        """What robustness costs here: clean minus robust accuracy (a fraction)."""
        return self.clean_accuracy - self.robust_accuracy

    def __iter__(self) -> Iterator[float]:  # type: ignore[override]  # pydantic's yields (field, value) pairs
        """``clean, robust = record``: RobustBench's ``benchmark`` returns that pair; the record keeps the rest.

        ``dict(record)`` is therefore not the fields: use ``record.model_dump()``.
        """
        return iter((self.clean_accuracy, self.robust_accuracy))
