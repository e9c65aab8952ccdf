"""``evaluate --adaptive``: escalations for fired flags, recorded as runs of their own, shown on the boards."""

from __future__ import annotations

from pathlib import Path

import pytest

from robbench.store import relative_record_path
from robbench.adaptive import ESCALATIONS, Budget, escalation_table, round_plan
from robbench.errors import RobbenchError
from robbench.evidence import Evidence
from robbench.leaderboard.cells import flags_text
from robbench.leaderboard.entries import board_entries
from robbench.results import EscalationOf, Flag
from robbench.store import read_record

from .helpers import REPO, make_record


def test_the_docs_table_is_the_mapping():
    assert escalation_table() in (REPO / "docs" / "adaptive.md").read_text(encoding="utf-8"), (
        "docs/adaptive.md's table differs from robbench.adaptive.ESCALATIONS: paste escalation_table()"
    )


def test_every_reliability_flag_but_none_has_escalations():
    from robbench.flags import BOARD_DEPARTURES

    assert set(ESCALATIONS) == {"randomized", "softmax-output", "masked-gradients", "eps-not-monotone",
                                "no-collapse-at-large-eps", "square-beats-white-box", "pgd-above-autoattack"}
    assert not set(ESCALATIONS) & BOARD_DEPARTURES  # departures from the board's standard are not doubts


def test_a_round_runs_each_escalation_once_for_the_norm_and_later_rounds_double_the_budget():
    first = round_plan(["square-beats-white-box", "masked-gradients", "non-standard-seed"], "Linf", 1)
    assert [e.spec() for e in first] == ["transfer(surrogate=self-without-preprocessing,steps=100)",
                                         "rays(queries=5000)", "square(queries=10000)"]
    second = round_plan(["masked-gradients"], "L2", 2)
    assert [e.spec(2) for e in second] == ["hopskipjump(queries=10000)", "square(queries=20000)"]
    assert [e.spec(3) for e in round_plan(["randomized"], "L2", 3)] == ["apgd(loss=ce,eot_iter=80)",
                                                                        "apgd(loss=dlr,eot_iter=80)"]
    assert round_plan(["non-standard-attacks"], "Linf", 1) == []


def test_every_escalation_names_a_registered_attack_with_options_it_takes():
    for escalations in ESCALATIONS.values():
        for escalation in escalations:
            attack = escalation.create(2)
            assert attack.name == escalation.attack


def test_a_budget_is_checked():
    with pytest.raises(RobbenchError, match="positive integer"):
        Budget(rounds=0)
    with pytest.raises(RobbenchError, match="positive number of seconds"):
        Budget(seconds=-1)


def test_an_example_broken_earlier_is_correct_clean_not_broken_here_and_not_attacked():
    evidence = Evidence(stages=["square/square"], status="==+0-+")
    assert evidence.clean_correct().tolist() == [True, True, True, True, False, True]
    assert evidence.broken().tolist() == [False, False, False, True, False, False]
    assert evidence.broken_earlier().sum() == 2
    [square] = evidence.attack_results()
    assert (square.stages[0].n_attacked, square.stages[0].n_broken) == (3, 1)
    assert evidence.robust_accuracy() == 2 / 6  # best-known after this run: the earlier breaks count


def _board_and_escalation(status_board: str, status_escalation: str, flag: str = "masked-gradients"):
    board = make_record("m", status=status_board, test_size=len(status_board), timestamp="2024-01-01T00:00:00+00:00")
    board = board.model_copy(update={"flags": [Flag(code=flag, message="doubt")]})
    escalation = make_record("m", status=status_escalation, test_size=len(status_board), attacks=("square",),
                             timestamp="2024-01-02T00:00:00+00:00")
    config = escalation.config.model_copy(update={"escalation": EscalationOf(
        continues=[board.config.run_id], flags=[flag], round=1)})
    return board, escalation.model_copy(update={"config": config})


def test_the_board_flag_says_what_the_escalations_did_to_the_best_known_number():
    # 20 examples: the board run leaves 10 (50 %), the escalation breaks 8 of them: 10 % (McNemar p = 2·0.5^8)
    board, escalation = _board_and_escalation("+" * 10 + "0" * 10, "+" * 2 + "0" * 8 + "=" * 10)
    [entry], problems = board_entries([board, escalation])
    assert problems == []
    assert entry.robust_accuracy == 0.1
    assert flags_text(entry) == "masked-gradients: 1 escalation in 1 round, best-known 50.00 → 10.00 % (p = 0.0078)"


def test_an_escalation_that_changed_nothing_significant_says_so():
    board, escalation = _board_and_escalation("+" * 10 + "0" * 10, "0" + "+" * 9 + "=" * 10)
    [entry], _ = board_entries([board, escalation])
    assert flags_text(entry) == ("masked-gradients: 1 escalation in 1 round, best-known 50.00 → 45.00 % "
                                 "(no significant change, p = 1)")


def test_an_escalation_whose_continued_run_is_missing_is_a_problem():
    board, escalation = _board_and_escalation("+" * 10 + "0" * 10, "+" * 2 + "0" * 8 + "=" * 10)
    _, problems = board_entries([escalation])
    assert problems == [f"m: escalation run {escalation.config.run_id} continues {board.config.run_id}, which is not "
                        "in the store; the examples it skipped count as robust"]
    # continuing two runs, both absent: named in order
    other = make_record("m", status="+" * 20, test_size=20, seed=1).config.run_id
    config = escalation.config.model_copy(update={"escalation": escalation.config.escalation.model_copy(
        update={"continues": [other, board.config.run_id]})})
    _, problems = board_entries([escalation.model_copy(update={"config": config})])
    first, second = sorted([other, board.config.run_id])
    assert problems == [f"m: escalation run {config.run_id} continues {first}, {second}, which is not in the "
                        "store; the examples it skipped count as robust"]


def test_committed_records_keep_their_run_ids():
    """RunConfig.escalation is left out of the key when absent: every committed record's file is named by its key."""
    for path in sorted((REPO / "results").rglob("*.json")):
        assert read_record(path).config.run_id == path.stem, path


# --------------------------------------------------------------------------------------------
# end to end: the test defences (tests/defences.py) and an honest model

N_EXAMPLES = 200


@pytest.fixture(scope="module")
def linear_model(single_thread):
    from .helpers import fit_linear_fashion_mnist

    return fit_linear_fashion_mnist()


@pytest.fixture(scope="module")
def test_examples():
    from robbench import load_dataset

    return load_dataset("fashion-mnist", n=N_EXAMPLES)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name", ["test-quantized", "test-opened", "test-random-phase", "test-saturating"])
def test_adaptive_comes_within_two_points_of_the_attack_written_for_the_defence(name, linear_model, test_examples, tmp_path):
    from robbench.pipeline import evaluate
    from robbench.threat_models import linf

    from . import defences
    from .helpers import write_submission

    defences.register()
    model = defences.defended(name, linear_model)
    submission = write_submission(tmp_path / name, name, name, model.state_dict())
    # one round: on these defences the later rounds add nothing (measured: docs/adaptive.md), and cost twice the first
    records = evaluate(submission, threat_models="linf", n_examples=N_EXAMPLES, device="cpu", adaptive=Budget(rounds=1),
                       results_dir=tmp_path / "results")
    [entry], problems = board_entries(records)
    x, y = test_examples
    cheaper_eot = {"steps": 50, "restarts": 2, "eot_samples": 50} if name == "test-random-phase" else {}
    reference = float(defences.reference_robust(name, model, x, y, linf(0.1), **cheaper_eot).float().mean())
    protocol = records[0]
    assert problems == [] and protocol.config.escalation is None and len(records) > 1
    assert protocol.attack_accuracies["pgd"] > reference + 0.2  # the defence fools gradient attacks
    assert entry.robust_accuracy <= reference + 0.02, (
        f"{name}: protocol {protocol.robust_accuracy}, adaptive {entry.robust_accuracy}, reference {reference}"
    )
    if name != "test-random-phase":  # a randomized model's break need not repeat on another draw
        from robbench.verify import verify_record

        for record in records[1:]:
            file = tmp_path / "results" / relative_record_path(record)
            assert verify_record(file, submission).ok


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_escalations_cannot_push_an_honest_model_below_its_exact_robust_accuracy(linear_model, test_examples, tmp_path):
    """A linear model's L-inf robust accuracy is exact (tests/helpers.exact_linf_robust): every escalation runs on
    it (its stored protocol record given every flag) and the best-known number must not fall below the truth."""
    import json

    from robbench.pipeline import evaluate

    from .helpers import exact_linf_robust, write_submission

    submission = write_submission(tmp_path / "linear", "fmnist-linear", "linear", linear_model.state_dict())
    results = tmp_path / "results"
    [protocol] = evaluate(submission, threat_models="linf", n_examples=N_EXAMPLES, device="cpu", results_dir=results)
    stored = results / relative_record_path(protocol)
    data = json.loads(stored.read_text())
    data["flags"] = [{"code": code, "message": "injected by the test"} for code in ESCALATIONS]
    stored.write_text(json.dumps(data))
    records = evaluate(submission, threat_models="linf", n_examples=N_EXAMPLES, device="cpu", adaptive=Budget(rounds=2),
                       results_dir=results)
    assert records[0].config.run_id == protocol.config.run_id  # continued, not run again
    escalations = records[1:]
    assert {r.attacks[0].name for r in escalations} >= {"apgd", "rays", "square"}
    x, y = test_examples
    weight, bias = linear_model[1].weight.detach(), linear_model[1].bias.detach()
    exact = int(exact_linf_robust(weight, bias, x, y, 0.1).sum()) / N_EXAMPLES
    [entry], _ = board_entries(records)
    assert entry.robust_accuracy >= exact
    assert entry.robust_accuracy == protocol.robust_accuracy == exact  # AutoAttack already finds the truth here


def test_the_adaptive_flags_build_the_budget_of_evaluate_and_queue_run():
    from robbench.cli import build_parser
    from robbench.cli.terminal import run_options

    parser = build_parser()
    for command in (["evaluate", "model.yaml"], ["queue", "run"]):
        options = run_options(parser.parse_args([*command, "--adaptive", "--adaptive-rounds", "2", "--adaptive-seconds", "60"]))
        assert options.adaptive == Budget(rounds=2, seconds=60.0)
        assert run_options(parser.parse_args(command)).adaptive is None


def test_a_bad_budget_is_a_one_line_error_before_anything_runs(capsys, tmp_path):
    from robbench.cli import main

    assert main(["evaluate", "no-such-model", "--adaptive", "--adaptive-rounds", "0", "--results-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "robbench: error: --adaptive-rounds must be a positive integer, got 0"
    assert not any(tmp_path.iterdir())
