"""Per-example evidence: for every evaluated example, clean-wrong, broken by a stage, or survived.

A record's totals (clean, robust, every attack's and stage's counts) are all derived from this,
so a reader can check them, and boards can combine several runs of one checkpoint example by
example (best-known robust accuracy). Stored as one character per example, in test-index order
from ``examples.start``: ``-`` misclassified clean, ``+`` survived every attack, or the code of the
first stage that broke it (``0``-``9``, then ``a``-``z``, indexing ``stages``). An escalation run
(``robbench.adaptive``) attacks only what the runs it continues left: ``=`` marks an example one
of those runs broke, classified correctly here and not attacked again (its adversarial example is
in that run's file). A 10,000-example
record holds a 10,000-character string: small, and readable with any JSON tool.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

CLEAN_WRONG_CODE = "-"
SURVIVED_CODE = "+"
EARLIER_CODE = "="
STAGE_CODES = "0123456789abcdefghijklmnopqrstuvwxyz"
#: per-example status as integers (the engine's representation): >= 0 is the breaking stage
CLEAN_WRONG = -2
SURVIVED = -1
EARLIER = -3
#: ASCII code -> integer status, for ``Evidence.codes`` (a status holds only these characters: the validator checks)
_CODE_OF_BYTE = np.zeros(128, dtype=np.int64)
for _character, _code in {CLEAN_WRONG_CODE: CLEAN_WRONG, SURVIVED_CODE: SURVIVED, EARLIER_CODE: EARLIER,
                          **{c: i for i, c in enumerate(STAGE_CODES)}}.items():
    _CODE_OF_BYTE[ord(_character)] = _code


class StageResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    n_attacked: int = Field(ge=0)
    n_broken: int = Field(ge=0)
    accuracy: float = Field(ge=0, le=1)  # correct under this stage and every earlier one


class AttackResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    accuracy: float = Field(ge=0, le=1)  # correct under this attack and every earlier one
    stages: list[StageResult]


class Evidence(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stages: list[str] = Field(max_length=len(STAGE_CODES))  # "attack/stage", in run order
    status: str = Field(min_length=1)

    @model_validator(mode="after")
    def _valid_codes(self) -> "Evidence":
        allowed = set(CLEAN_WRONG_CODE + SURVIVED_CODE + EARLIER_CODE + STAGE_CODES[: len(self.stages)])
        unknown = set(self.status) - allowed
        if unknown:
            raise ValueError(f"status holds codes {''.join(sorted(unknown))!r} that name no stage")
        if any(label.count("/") != 1 for label in self.stages):
            raise ValueError("every stage is named 'attack/stage'")
        return self

    @classmethod
    def from_codes(cls, codes: Sequence[int] | np.ndarray, stages: Sequence[str]) -> "Evidence":
        """From integer statuses (``CLEAN_WRONG``, ``SURVIVED``, ``EARLIER`` or a stage index)."""
        table = {CLEAN_WRONG: CLEAN_WRONG_CODE, SURVIVED: SURVIVED_CODE, EARLIER: EARLIER_CODE, **dict(enumerate(STAGE_CODES))}
        return cls(stages=list(stages), status="".join(table[int(c)] for c in codes))

    def codes(self) -> np.ndarray:
        """Integer status per example: ``CLEAN_WRONG``, ``SURVIVED``, ``EARLIER`` or the breaking stage's index."""
        return _CODE_OF_BYTE[np.frombuffer(self.status.encode("ascii"), dtype=np.uint8)]  # a fresh array: callers edit it

    @property
    def n(self) -> int:
        return len(self.status)

    def clean_correct(self) -> np.ndarray:
        return self.codes() != CLEAN_WRONG

    def broken(self) -> np.ndarray:
        """Mask of examples some stage broke (the ones that need an adversarial example)."""
        return self.codes() >= 0

    def survived(self) -> np.ndarray:
        return self.codes() == SURVIVED

    def broken_earlier(self) -> np.ndarray:
        """Mask of examples a run this one continues had broken (not attacked here)."""
        return self.codes() == EARLIER

    def attack_of(self, stage: int) -> str:
        return self.stages[stage].split("/")[0]

    def attack_results(self) -> list[AttackResult]:
        """Every attack's and stage's counts, as the evaluation defines them (each on the survivors so far)."""
        codes = self.codes()

        def alive_at(stage: int) -> np.ndarray:
            return (codes == SURVIVED) | (codes >= stage)

        results: list[AttackResult] = []
        for number, label in enumerate(self.stages):
            attack, stage = label.split("/")
            if not results or results[-1].name != attack:
                results.append(AttackResult(name=attack, accuracy=0.0, stages=[]))
            stage_result = StageResult(
                name=stage, n_attacked=int(alive_at(number).sum()), n_broken=int((codes == number).sum()),
                accuracy=int(alive_at(number + 1).sum()) / self.n,
            )
            results[-1] = results[-1].model_copy(
                update={"stages": [*results[-1].stages, stage_result], "accuracy": stage_result.accuracy}
            )
        return results

    def clean_accuracy(self) -> float:
        return int(self.clean_correct().sum()) / self.n

    def robust_accuracy(self) -> float:
        return int(self.survived().sum()) / self.n


def disagreements(evidence: Evidence, clean_accuracy: float, robust_accuracy: float,
                  attacks: Sequence[AttackResult]) -> list[str]:
    """What the stated totals get wrong about the evidence (empty when they agree exactly)."""
    problems = []
    if clean_accuracy != evidence.clean_accuracy():
        problems.append(f"clean_accuracy {clean_accuracy} but the evidence gives {evidence.clean_accuracy()}")
    if robust_accuracy != evidence.robust_accuracy():
        problems.append(f"robust_accuracy {robust_accuracy} but the evidence gives {evidence.robust_accuracy()}")
    derived = evidence.attack_results()
    if [a.model_dump() for a in attacks] != [a.model_dump() for a in derived]:
        problems.append("the attack and stage counts differ from the evidence")
    return problems
