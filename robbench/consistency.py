"""The consistency level of ``robbench verify``: every claim of a record that can be re-derived is re-derived.

A record says far more than its adversarial examples show: which threat model it answers (ε, norm,
whether that is the board's standard radius), how large the test set is, which attacks ran with
which settings and stages, and which reliability flags its evaluation raised. None of that is read
from the record here; each is derived again from the registries and the model, and every
difference is a ``Failure`` that names the record's field:

- ``config.threat_model``: the dataset's registered threat model of that name: its norm, and
  ``standard`` exactly when ε is the registered radius;
- ``config.examples``: ``test_size`` is the dataset's, the range lies inside it (the evidence's
  length is the range's, which reading the record already checks);
- ``config.architecture``, ``architecture_kwargs``, ``normalization``, ``checkpoint``,
  ``parameter_count``: those of the submission being verified (not ``metadata``: a model.yaml may
  gain caveats after its evaluation, and what it says of training is its author's word anyway);
- ``config.attacks`` and ``evidence.stages``: what the registered attack of each name, built as
  ``robbench evaluate`` builds it, records as its configuration and runs as its stages, under the
  recorded threat model and seed; this needs the record's robbench and pyautoattack versions,
  so a record of other versions fails ``config.versions`` (install them to verify it);
- ``flags``: every flag the evaluation's checks raise, recomputed (``robbench.flags.evaluation_checks``:
  the model checks re-run on the first examples with the recorded seed, the attack checks from the
  per-example evidence, the board's from the configuration), compared code and message;
- the same model checks' PGD at ε: a sample example it breaks (verified) that the record counts
  robust is an untrue claim. One PGD-20 start is weaker than the evaluation's attacks, yet another
  random start can break a borderline example an honest evaluation missed, so up to
  ``BORDERLINE_FRACTION`` of the sample is reported as a note (``--replay`` records such breaks);
  more fails. On a randomized model that break is one draw, like the record's survival: it counts
  only when every one of ``redraws`` fresh averaged predictions gets it wrong too;
- ``reverification`` (``robbench.randomized``), with the verifier's own re-verification of the
  saved breaks: present exactly when ``robbench evaluate`` writes one (the model is randomized or
  ``config.prediction_draws`` > 1), averaging ``config.prediction_draws`` passes, over every saved
  break, its rate its counts' quotient, and that rate one that the same breaks, averaged the same way,
  give again: Fisher's exact test of the record's count against the verifier's fails below
  ``REVERIFICATION_ALPHA``;
- the file name: the run id of the configuration, as ``robbench evaluate`` names it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .attacks import Attack, AttackRules, attack_options, create_attack
from .errors import RobbenchError
from .evidence import SURVIVED
from .flags import PGD_STEPS, SAMPLE_SIZE, board_flags, evaluation_checks
from .loader import LoadedModel
from .randomized import wrong_counts
from .results import AttackSpec, EvalRecord
from .store import ADVERSARIAL_SUFFIX
from .runtime import versions
from .stats import same_rate_p
from .threat_models import standard_threat_models


@dataclass(frozen=True)
class Failure:
    """One failed check: the test index it concerns (``None`` for a check on the whole record or file) and why."""

    index: int | None
    message: str

    def __str__(self) -> str:
        return self.message if self.index is None else f"test index {self.index}: {self.message}"

    def sort_key(self) -> int:
        """Failures on the whole record or file first, then by test index."""
        return -1 if self.index is None else self.index


def record_failures(record: EvalRecord, record_file: Path, loaded: LoadedModel) -> list[Failure]:
    """The claims about the run's identity that need no model call: threat model, examples, submission, attacks, file name."""
    found = [*_threat_model(record, loaded), *_examples(record, loaded), *_submission(record, loaded)]
    found += _attacks(record, loaded)
    if record_file.name != f"{record.config.run_id}.json":
        found.append(Failure(None, f"file name: the configuration's run id is {record.config.run_id}, the file is {record_file.name}"))
    if record.adversarial_examples is not None and record.adversarial_examples.file != record.config.run_id + ADVERSARIAL_SUFFIX:
        found.append(Failure(None, f"adversarial_examples.file: {record.adversarial_examples.file} is not "
                                   f"{record.config.run_id}{ADVERSARIAL_SUFFIX}"))
    return found


#: claimed survivors of the flag check's sample that its PGD at ε may break before the record fails
BORDERLINE_FRACTION = 0.05


def flag_failures(record: EvalRecord, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loaded: LoadedModel,
                  device: torch.device, redraws: int | None = None) -> tuple[list[Failure], list[int]]:
    """The record's flags against the recomputed ones, and its survivors against the model checks' PGD at ε.

    ``x, y``: the evaluated examples, in order from ``examples.start`` (the checks use the first ones).
    ``redraws``: the model is randomized; a PGD break counts when wrong in all of that many fresh predictions.
    Returns the failures and the test indices of claimed survivors that PGD broke (within the
    borderline allowance; more is a failure).
    """
    threat = record.threat_model
    registered = standard_threat_models(loaded.dataset).get(threat.name)
    if registered is None:
        return [], []  # reported by the threat-model check; the collapse radius has no scale without it
    if record.config.escalation is not None:  # an escalation of --adaptive: the board's flags only, as evaluate writes it
        checks = None
        expected = {flag.code: flag.message for flag in board_flags(record)}
    else:
        checks = evaluation_checks(model, x, y, record.evidence.attack_results(), threat=threat,
                                   value_range=loaded.dataset.value_range, seed=record.seed, device=device,
                                   standard_eps=registered.eps)
        expected = {flag.code: flag.message for flag in [*checks.flags, *board_flags(record)]}
    held = {flag.code: flag.message for flag in record.flags}
    found = []
    for code in sorted(expected.keys() - held.keys()):
        found.append(Failure(None, f"flags: {code} is missing; the recomputed checks raise it ({expected[code]})"))
    for code in sorted(held.keys() - expected.keys()):
        found.append(Failure(None, f"flags: {code} is raised by no recomputed check"))
    for code in sorted(held.keys() & expected.keys()):
        if held[code] != expected[code]:
            found.append(Failure(None, f"flags: {code} says {held[code]!r}; recomputed: {expected[code]!r}"))
    if len(record.flags) != len(held):
        found.append(Failure(None, "flags: a flag is listed twice"))
    if checks is None:
        return found, []
    codes = record.evidence.codes()
    counted = [codes[p] == SURVIVED for p in checks.broken_at_eps]
    if redraws is not None and any(counted):
        chosen = torch.tensor(checks.broken_at_eps)
        wrong = wrong_counts(model, checks.broken_inputs, y[chosen], redraws=redraws, batch_size=len(chosen), device=device)
        counted = [c and int(w) == redraws for c, w in zip(counted, wrong)]
    broken = [record.examples.start + p for p, c in zip(checks.broken_at_eps, counted) if c]
    sample = min(SAMPLE_SIZE, record.n_examples)
    if len(broken) > BORDERLINE_FRACTION * sample:
        found += [Failure(index, f"the record counts it robust; the flag check's PGD-{PGD_STEPS} at ε (re-run with "
                                 f"the recorded seed) breaks it, one of {len(broken)} in the first {sample} examples")
                  for index in broken]
        broken = []
    return found, broken


#: below this p-value the record's re-verification rate and the verifier's cannot be one rate
REVERIFICATION_ALPHA = 1e-3


def reverification_failures(record: EvalRecord, randomized: bool, breaks: int, still_wrong: int, redraws: int
                            ) -> list[Failure]:
    """The record's ``reverification`` against the verifier's: ``still_wrong`` wrong predictions in ``redraws``
    fresh averaged predictions of each of the ``breaks`` saved breaks (``randomized``: the record is flagged so)."""
    claim, draws = record.reverification, record.config.prediction_draws
    expected = randomized or draws > 1
    if claim is None:
        return [Failure(None, "reverification: the record has none; robbench evaluate re-verifies every break of a "
                              "randomized model or of a run averaging several draws")] if expected else []
    if not expected:
        return [Failure(None, "reverification: the model is not randomized and config.prediction_draws is 1, so "
                              "robbench evaluate writes none")]
    found = []
    if claim.draws != draws:
        found.append(Failure(None, f"config.prediction_draws: the record says {draws}; its reverification averaged "
                                   f"{claim.draws} passes per prediction"))
    if claim.breaks != breaks:
        found.append(Failure(None, f"reverification.breaks: the record says {claim.breaks}; it saves {breaks} breaks"))
    trials = claim.breaks * claim.redraws
    if claim.still_wrong > trials or claim.rate != (claim.still_wrong / trials if trials else None):
        found.append(Failure(None, f"reverification.rate: {claim.rate} is not still_wrong / (breaks · redraws) = "
                                   f"{claim.still_wrong} / {trials}"))
    elif trials and breaks and not found:
        p = same_rate_p(claim.still_wrong, trials, still_wrong, breaks * redraws)
        if p < REVERIFICATION_ALPHA:
            found.append(Failure(None, f"reverification.rate: the record says {claim.rate:.3f} ({claim.still_wrong} of "
                                       f"{trials}); the same breaks, each predicted {redraws} more times from {draws} "
                                       f"passes, were wrong in {still_wrong} of {breaks * redraws} "
                                       f"({still_wrong / (breaks * redraws):.3f}; Fisher's exact test p = {p:.1g}): "
                                       "the rate, or config.prediction_draws, is not what this model gives"))
    return found


def _threat_model(record: EvalRecord, loaded: LoadedModel) -> list[Failure]:
    threat = record.threat_model
    known = standard_threat_models(loaded.dataset)
    registered = known.get(threat.name)
    if registered is None:
        return [Failure(None, f"config.threat_model.name: {loaded.dataset.name} has no threat model {threat.name!r}; "
                              f"known: {', '.join(sorted(known))}")]
    found = []
    if threat.norm != registered.norm:
        found.append(Failure(None, f"config.threat_model.norm: {threat.name} on {loaded.dataset.name} is "
                                   f"{registered.norm}, the record says {threat.norm}"))
    standard = math.isclose(threat.eps, registered.eps, rel_tol=1e-9)
    if threat.standard != standard:
        found.append(Failure(None, f"config.threat_model.standard: ε = {threat.eps:g} is "
                                   f"{'' if standard else 'not '}the standard {threat.name} radius of "
                                   f"{loaded.dataset.name} ({registered.eps:g}); the record says standard: "
                                   f"{str(threat.standard).lower()}"))
    elif standard and threat.eps != registered.eps:
        found.append(Failure(None, f"config.threat_model.eps: {threat.eps!r} is not the registered {registered.eps!r}"))
    return found


def _examples(record: EvalRecord, loaded: LoadedModel) -> list[Failure]:
    examples, test_size = record.examples, loaded.dataset.test_size
    found = []
    if examples.test_size != test_size:
        found.append(Failure(None, f"config.examples.test_size: the {loaded.dataset.name} test set has {test_size:,} "
                                   f"examples, the record says {examples.test_size:,}"))
    if not examples.start < examples.stop <= test_size:
        found.append(Failure(None, f"config.examples: {examples.start}..{examples.stop} is not a range of the "
                                   f"{test_size:,} test examples"))
    return found


def _submission(record: EvalRecord, loaded: LoadedModel) -> list[Failure]:
    """The record describes the submission being verified: what built the model and its weights."""
    spec = loaded.spec
    claims: dict[str, tuple[Any, Any]] = {
        "config.architecture": (record.architecture, spec.architecture),
        "config.architecture_kwargs": (record.architecture_kwargs, spec.architecture_kwargs),
        "config.normalization": (record.config.normalization, spec.normalization),
        "config.checkpoint": (record.checkpoint, loaded.checkpoint),
        "parameter_count": (record.parameter_count, loaded.parameter_count),
    }
    return [Failure(None, f"{field}: the record says {_short(said)}; the submission gives {_short(true)}")
            for field, (said, true) in claims.items() if said != true]


def _attacks(record: EvalRecord, loaded: LoadedModel) -> list[Failure]:
    recorded, running = record.versions, versions()
    if (recorded.robbench, recorded.pyautoattack) != (running["robbench"], running["pyautoattack"]):
        return [Failure(None, f"config.versions: recorded with robbench {recorded.robbench} and pyautoattack "
                              f"{recorded.pyautoattack}, verified with {running['robbench']} and "
                              f"{running['pyautoattack']}; the attack configurations cannot be re-derived: "
                              "install the recorded versions to verify this record")]
    rules = attack_rules(record, loaded, torch.device("cpu"))
    found, stages = [], []
    for number, spec in enumerate(record.config.attacks):
        try:
            attack = recorded_attack(spec)
        except RobbenchError as exc:
            found.append(Failure(None, f"config.attacks[{number}].name: {exc}"))
            continue
        expected = attack.config(rules)
        if spec.config != expected:
            differ = sorted(key for key in expected.keys() | spec.config.keys() if expected.get(key) != spec.config.get(key))
            found.append(Failure(None, f"config.attacks[{number}].config: {', '.join(differ)} differ from what the "
                                       f"registered {spec.name!r} records ({_short(expected)})"))
        stages += [f"{attack.name}/{stage.name}" for stage in attack.stages(loaded.model, rules)]
    if not found and stages != record.evidence.stages:
        found.append(Failure(None, f"evidence.stages: the recorded attacks run {', '.join(stages) or 'no stage'}; "
                                   f"the record lists {', '.join(record.evidence.stages) or 'none'}"))
    return found


def recorded_attack(spec: AttackSpec) -> Attack:
    """The registered attack with the options its recorded configuration names (the rest at their defaults).

    Its own ``config`` must then reproduce the recorded one exactly: an option the factory does not take
    (a derived value such as PGD's step size) is checked, never trusted.
    """
    options = attack_options(spec.name)
    return create_attack(spec.name, **{key: value for key, value in spec.config.items() if key in options})


def attack_rules(record: EvalRecord, loaded: LoadedModel, device: torch.device, seed: int | None = None) -> AttackRules:
    """The rules of the record's game, as ``robbench evaluate`` set them (with another ``seed`` for a replay)."""
    return AttackRules(record.threat_model, loaded.dataset.value_range, loaded.dataset.num_classes,
                       record.seed if seed is None else seed, device)


def _short(value: Any, limit: int = 160) -> str:
    text = repr(value.model_dump(mode="json") if hasattr(value, "model_dump") else value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
