"""The per-example evidence every record's totals derive from: its codes, masks, counts and validation.

The expected values are worked out by hand from the definitions in ``robbench.evidence``'s docstring
(one character per example: ``-`` clean-wrong, ``+`` survived, ``=`` broken by an earlier run, a digit
or letter the index of the first stage that broke it; each stage attacks the survivors so far).
"""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from robbench.evidence import (
    CLEAN_WRONG, EARLIER, STAGE_CODES, SURVIVED, AttackResult, Evidence, StageResult, disagreements,
)

STAGES = ["pgd/run", "autoattack/apgd-ce", "autoattack/apgd-t"]
# 10 examples: index 0 clean-wrong, 1 and 5 survived, 2 and 6 broken by stage 0, 3 by stage 1, 4 and 7 by stage 2,
# 8 broken by an earlier run, 9 clean-wrong
STATUS = "-+012+02=-"


def test_codes_round_trip_through_their_characters():
    codes = [CLEAN_WRONG, SURVIVED, EARLIER, 0, 9, 10, 35]
    evidence = Evidence.from_codes(codes, [f"a/{i}" for i in range(36)])
    assert evidence.status == "-+=09az"  # STAGE_CODES: 0-9 then a-z
    assert evidence.codes().tolist() == codes
    assert evidence.codes().dtype == np.int64
    assert (CLEAN_WRONG, SURVIVED, EARLIER) == (-2, -1, -3)  # a stage index is >= 0: the engine relies on it


def test_masks_follow_the_status_character_by_character():
    evidence = Evidence(stages=STAGES, status=STATUS)
    assert evidence.n == 10
    assert evidence.clean_correct().tolist() == [c != "-" for c in STATUS]
    assert evidence.broken().tolist() == [c in "012" for c in STATUS]
    assert evidence.survived().tolist() == [c == "+" for c in STATUS]
    assert evidence.broken_earlier().tolist() == [c == "=" for c in STATUS]
    assert [evidence.attack_of(i) for i in range(3)] == ["pgd", "autoattack", "autoattack"]


def test_accuracies_are_exact_fractions_of_all_examples():
    evidence = Evidence(stages=STAGES, status=STATUS)
    assert evidence.clean_accuracy() == 8 / 10  # two '-'
    assert evidence.robust_accuracy() == 2 / 10  # two '+'; '=' was broken by an earlier run, so not robust


def test_each_stage_counts_the_survivors_it_attacked_and_broke():
    results = Evidence(stages=STAGES, status=STATUS).attack_results()
    # stage 0 attacks every clean-correct example not broken earlier: '+' (2) and broken at stage >= 0 (5) = 7,
    # breaks the two '0's; stage 1 attacks 7 - 2 = 5, breaks one; stage 2 attacks 4, breaks two; 2 remain
    assert [r.model_dump() for r in results] == [
        {"name": "pgd", "accuracy": 5 / 10, "stages": [{"name": "run", "n_attacked": 7, "n_broken": 2, "accuracy": 5 / 10}]},
        {"name": "autoattack", "accuracy": 2 / 10, "stages": [
            {"name": "apgd-ce", "n_attacked": 5, "n_broken": 1, "accuracy": 4 / 10},
            {"name": "apgd-t", "n_attacked": 4, "n_broken": 2, "accuracy": 2 / 10},
        ]},
    ]


def test_an_attack_named_again_after_another_is_a_new_result():
    results = Evidence(stages=["pgd/a", "fab/b", "pgd/c"], status="+").attack_results()
    assert [r.name for r in results] == ["pgd", "fab", "pgd"]
    assert [r.accuracy for r in results] == [1.0, 1.0, 1.0]


def test_a_status_code_that_names_no_stage_is_refused():
    with pytest.raises(ValidationError, match=r"status holds codes '2x' that name no stage"):
        Evidence(stages=["pgd/a", "pgd/b"], status="+01x2")
    Evidence(stages=["pgd/a", "pgd/b"], status="-+=01")  # every code up to the last stage's is allowed


@pytest.mark.parametrize("label", ["pgd", "pgd/a/b"])
def test_a_stage_is_named_attack_slash_stage(label):
    with pytest.raises(ValidationError, match="every stage is named 'attack/stage'"):
        Evidence(stages=[label], status="+")


def test_at_most_as_many_stages_as_codes_and_at_least_one_example():
    Evidence(stages=[f"a/{i}" for i in range(len(STAGE_CODES))], status="z")
    with pytest.raises(ValidationError, match="at most 36 items"):
        Evidence(stages=[f"a/{i}" for i in range(len(STAGE_CODES) + 1)], status="+")
    with pytest.raises(ValidationError, match="at least 1 character"):
        Evidence(stages=["a/b"], status="")


def test_results_are_frozen_and_refuse_unknown_fields_and_impossible_counts():
    StageResult(name="s", n_attacked=0, n_broken=0, accuracy=0.0)
    StageResult(name="s", n_attacked=0, n_broken=0, accuracy=1.0)
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        StageResult(name="s", n_attacked=-1, n_broken=0, accuracy=0.5)
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        StageResult(name="s", n_attacked=0, n_broken=-1, accuracy=0.5)
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        StageResult(name="s", n_attacked=0, n_broken=0, accuracy=1.01)
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        StageResult(name="s", n_attacked=0, n_broken=0, accuracy=-0.01)
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        AttackResult(name="a", accuracy=1.01, stages=[])
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        AttackResult(name="a", accuracy=-0.01, stages=[])
    AttackResult(name="a", accuracy=1.0, stages=[])
    for model, fields in ((StageResult, dict(name="s", n_attacked=0, n_broken=0, accuracy=0.0)),
                          (AttackResult, dict(name="a", accuracy=0.0, stages=[])),
                          (Evidence, dict(stages=["a/b"], status="+"))):
        with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
            model(**fields, extra=1)
        with pytest.raises(ValidationError, match="frozen"):
            setattr(model(**fields), "name" if "name" in fields else "status", "x")


def test_stated_totals_that_agree_have_no_disagreement():
    evidence = Evidence(stages=STAGES, status=STATUS)
    assert disagreements(evidence, 0.8, 0.2, evidence.attack_results()) == []


def test_each_stated_total_that_differs_is_named_with_both_values():
    evidence = Evidence(stages=STAGES, status=STATUS)
    attacks = evidence.attack_results()
    assert disagreements(evidence, 0.9, 0.2, attacks) == ["clean_accuracy 0.9 but the evidence gives 0.8"]
    assert disagreements(evidence, 0.8, 0.3, attacks) == ["robust_accuracy 0.3 but the evidence gives 0.2"]
    fewer = [attacks[0], attacks[1].model_copy(update={"stages": attacks[1].stages[:1]})]
    assert disagreements(evidence, 0.7, 0.1, fewer) == [
        "clean_accuracy 0.7 but the evidence gives 0.8",
        "robust_accuracy 0.1 but the evidence gives 0.2",
        "the attack and stage counts differ from the evidence",
    ]
