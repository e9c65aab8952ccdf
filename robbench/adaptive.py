"""Adaptive escalation: when a reliability flag doubts a number, the attacks that address that doubt.

After the board protocol (``pgd,autoattack``) every reliability flag that fired (``robbench.flags``)
names escalations in ``ESCALATIONS``, the one table (flag -> attacks -> why) that docs/adaptive.md
shows. Each escalation is one attack, run as a run of its own (its own record, its own verified
adversarial examples) on the examples every earlier run left: the board run's record is never
changed, and the escalation's record marks the examples it did not attack with the evidence code
``=`` and names the runs it continues (``RunConfig.escalation``). Boards combine the runs example by
example into the best-known robust accuracy, so an escalation can only lower it, and only by breaks
the evaluator verified.

Escalations run in rounds. Round 1 runs every escalation of every fired flag once (the table's order,
each once however many flags name it). Each later round runs the escalations that have a budget
option again, that option doubled (more queries, more restarts, more EOT samples): an attack given
more of what it spends breaks what it could not before, while one without such an option would only
repeat itself. The rounds stop when one adds no verified break, when nothing survives, or when the
stated budget (``Budget``: rounds, and optionally seconds) is spent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable


from .attacks import Attack, create_attack
from .errors import RobbenchError
from .threat_models import Norm


@dataclass(frozen=True)
class Escalation:
    """One attack that addresses a doubt: a registered attack and its options, why it addresses the flag, the
    option each later round doubles (``None``: it runs in round 1 only), and the norms it applies to."""

    attack: str
    options: dict[str, Any]
    why: str
    grows: str | None = None
    norms: tuple[Norm, ...] = ("Linf", "L2")

    def options_in(self, round_number: int) -> dict[str, Any]:
        """The options of round ``round_number``: ``grows`` doubled once per round after the first."""
        if self.grows is None or round_number == 1:
            return dict(self.options)
        return {**self.options, self.grows: self.options[self.grows] * 2 ** (round_number - 1)}

    def spec(self, round_number: int = 1) -> str:
        """``name(key=value,...)``, as ``--attacks`` takes it."""
        return f"{self.attack}({','.join(f'{k}={v}' for k, v in self.options_in(round_number).items())})"

    def create(self, round_number: int) -> Attack:
        return create_attack(self.attack, **self.options_in(round_number))


_DECISION_WHY = "reads only the predicted label, so masked, shattered or saturated gradients cannot hide the boundary"
_SQUARE_WHY = "score-based and gradient-free: twice AutoAttack's queries"
_TRANSFER_WHY = ("crafted on the differentiable network behind the model's input preprocessing (BPDA's idea), "
                 "when the model exposes one")
_GRADIENT_FREE = (
    Escalation("transfer", {"surrogate": 'self-without-preprocessing', "steps": 100}, _TRANSFER_WHY),
    Escalation("rays", {"queries": 5000}, _DECISION_WHY, grows="queries", norms=("Linf",)),
    Escalation("hopskipjump", {"queries": 5000}, _DECISION_WHY, grows="queries", norms=("L2",)),
    Escalation("square", {"queries": 10000}, _SQUARE_WHY, grows="queries"),
)
_STRONGER_WHITE_BOX = (
    Escalation("apgd", {"loss": 'ce', "iterations": 200, "restarts": 5}, "more iterations and restarts than AutoAttack's single "
               "APGD-CE run: PGD-20 above AutoAttack says the budget, not the loss, was short", grows="restarts"),
    Escalation("apgd", {"loss": 'dlr-targeted', "iterations": 200, "restarts": 1, "target_classes": 1000}, "targeted DLR towards every "
               "other class (AutoAttack stops at 9), more iterations: a scale-invariant loss", grows="restarts"),
)

#: reliability flag -> the escalations that address it, in the order they run (the table of docs/adaptive.md)
ESCALATIONS: dict[str, tuple[Escalation, ...]] = {
    "randomized": (
        Escalation("apgd", {"loss": 'ce', "eot_iter": 20}, "expectation over transformation: each step's gradient averaged over "
                   "20 draws of the model's randomness (AutoAttack's rand version)", grows="eot_iter"),
        Escalation("apgd", {"loss": 'dlr', "eot_iter": 20}, "the same with the scale-invariant DLR loss", grows="eot_iter"),
    ),
    "softmax-output": (
        Escalation("apgd", {"loss": 'dlr', "iterations": 200}, "DLR is invariant to the scale of the outputs, so saturated "
                   "probabilities still give it a direction"),
        *_GRADIENT_FREE,
    ),
    "masked-gradients": _GRADIENT_FREE,
    "square-beats-white-box": _GRADIENT_FREE,
    "eps-not-monotone": _GRADIENT_FREE,
    "no-collapse-at-large-eps": (*_STRONGER_WHITE_BOX, *_GRADIENT_FREE),
    "pgd-above-autoattack": _STRONGER_WHITE_BOX,
}


@dataclass(frozen=True)
class Budget:
    """What the escalations may spend: at most ``rounds`` rounds and, when given, ``seconds`` of wall time
    (checked before each escalation; one that starts runs to its end)."""

    rounds: int = 3
    seconds: float | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.rounds, int) and self.rounds >= 1):
            raise RobbenchError(f"must be a positive integer, got {self.rounds!r}", parameter="adaptive_rounds")
        if self.seconds is not None and not self.seconds > 0:
            raise RobbenchError(f"must be a positive number of seconds, got {self.seconds!r}", parameter="adaptive_seconds")

    def describe(self) -> str:
        rounds = "1 round" if self.rounds == 1 else f"{self.rounds} rounds"
        return f"at most {rounds}" + (f" and {self.seconds:g} s" if self.seconds is not None else "")


def escalated_flags(codes: Iterable[str]) -> list[str]:
    """The flags among ``codes`` that have escalations, in the table's order."""
    fired = set(codes)
    return [code for code in ESCALATIONS if code in fired]


def round_plan(flags: Iterable[str], norm: Norm, round_number: int) -> list[Escalation]:
    """The escalations of round ``round_number`` for ``flags``: each once, in the table's order."""
    plan: list[Escalation] = []
    for code in escalated_flags(flags):
        for escalation in ESCALATIONS[code]:
            if norm in escalation.norms and (round_number == 1 or escalation.grows is not None) and escalation not in plan:
                plan.append(escalation)
    return plan


def addressed_flags(escalation: Escalation, flags: Iterable[str]) -> list[str]:
    """The flags among ``flags`` that name ``escalation``."""
    return [code for code in escalated_flags(flags) if escalation in ESCALATIONS[code]]


def escalation_table() -> str:
    """``ESCALATIONS`` as docs/adaptive.md shows it (a test keeps the two equal): flag -> escalations, then each
    escalation's growth and why."""
    def name(escalation: Escalation) -> str:
        only = "" if len(escalation.norms) == 2 else f" ({escalation.norms[0]} only)"
        return f"`{escalation.spec()}`{only}"

    rows = ["| flag | escalations, in run order |", "|---|---|"]
    rows += [f"| `{code}` | {', '.join(name(e) for e in escalations)} |" for code, escalations in ESCALATIONS.items()]
    rows += ["", "| escalation | each later round | why |", "|---|---|---|"]
    distinct: list[Escalation] = []
    for escalation in (e for escalations in ESCALATIONS.values() for e in escalations):
        if escalation not in distinct:
            distinct.append(escalation)
            grows = f"`{escalation.grows}` doubled" if escalation.grows else "not run again"
            rows.append(f"| {name(escalation)} | {grows} | {escalation.why} |")
    return "\n".join(rows)
