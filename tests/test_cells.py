"""Every board cell's text (``robbench.leaderboard.cells``), exactly, for entries built from known evidence.

Where a number is expected, its source is beside it: the evidence strings (counted by hand), Wilson's
interval (``stats.wilson_interval``, checked against the formula in ``test_leaderboard.py``) and the
format each cell's docstring states.
"""

from __future__ import annotations

from robbench.config import Reported, TrainingCost
from robbench.leaderboard.cells import (
    Board, Link, attacks_text, below_hover, below_text, board_row, breaks_text, count, examples_text, flags_text, gap,
    hub_link,
    model_facts, model_marks, run_attacks_text,
    p_text, paper_link, rank_text, reported_facts, reported_gap_text, reported_hover, reported_p_hover,
    reported_sentence, reported_text, run_row, safe_url, shared_subset_text, training_cost_text, with_interval,
)
from robbench.leaderboard.entries import board_entries, combine
from robbench.stats import wilson_interval

from .helpers import make_record


def _entry(status: str, name: str = "m", **options):
    return combine([make_record(name, status=status, **options)])


def _with_metadata(record, **fields):
    return record.model_copy(update={"metadata": record.metadata.model_copy(update=fields)})


def test_an_accuracy_reads_in_percent_with_its_interval():
    # Wilson's 95 % interval of 725/1000 is (0.696504, 0.751774) (test_leaderboard.py, from the formula)
    assert with_interval(0.725, wilson_interval(725, 1000)) == "72.50 (69.7–75.2)"
    assert with_interval(1.0, (0.9, 1.0)) == "100.00 (90.0–100.0)"


def test_the_gap_is_in_points_of_the_rounded_percentages():
    assert gap(0.9, 0.5) == "40.00"
    assert gap(0.12345, 0.12345) == "0.00"
    assert gap(0.5, 0.75) == "-25.00"
    # 2 of 13 robust reads 15.38 (15.3846...), so the gap to 100.00 reads 84.62; rounding the robust
    # percentage to three places first (15.385) would print 84.61
    assert gap(1.0, 2 / 13) == "84.62"


def test_counts_read_with_three_significant_digits():
    assert [count(n) for n in (850, 999, 1_000, 431_000, 999_000, 999_999, 11_173_962, 2_500_000_000)] == [
        "850", "999", "1K", "431K", "999K", "1M", "11.2M", "2.5B"]
    # off a rounding boundary by one unit: 1,235,001 / 10^6 = 1.235001 reads 1.24 (three significant digits)
    assert [count(n) for n in (1_235_001, 1_235_000_001)] == ["1.24M", "1.24B"]
    # 999,500 is the first count whose thousands (999.5) round to 1,000 at three digits: it reads 1M, 999,499 999K
    assert [count(n) for n in (999_499, 999_500)] == ["999K", "1M"]


def test_examples_say_which_part_of_the_test_set():
    assert examples_text(_entry("+-0+", test_size=4)) == "4"
    assert examples_text(_entry("+" * 1000)) == "1,000 of 10,000 †"
    assert examples_text(_entry("+" * 1000), mark=False) == "1,000 of 10,000"
    assert examples_text(_entry("+" * 1000, start=500)) == "1,000 of 10,000 (test[500:1500]) †"


def test_training_cost_reads_in_minutes_then_hours():
    cost = TrainingCost(device="cpu", epochs=3, train_examples=60_000, seconds_per_epoch=100.0, total_seconds=300.0)
    assert training_cost_text(cost) == "3 × 60K · 5.0 min · cpu"
    assert training_cost_text(cost.model_copy(update={"total_seconds": 119.9 * 60})) == "3 × 60K · 119.9 min · cpu"
    assert training_cost_text(cost.model_copy(update={"total_seconds": 7200.0})) == "3 × 60K · 2.0 h · cpu"
    assert training_cost_text(cost.model_copy(update={"total_seconds": 36_000.0})) == "3 × 60K · 10.0 h · cpu"
    assert training_cost_text(None) == "—"


def test_ranks_p_values_and_verdicts_against_the_row_above():
    # a: 10 robust of 10; b: 9 (one discordant example, p = 1, tied); c on other examples: not compared
    a = make_record("a", status="+" * 10, stop=10)
    b = make_record("b", status="+" * 9 + "0", stop=10)
    c = make_record("c", status="+" * 5, stop=5)
    (first, second, third), _ = board_entries([a, b, c])
    assert [e.name for e in (first, second, third)] == ["a", "c", "b"]  # c's 100 % on 5 ranks beside a's
    assert [rank_text(e) for e in (first, second, third)] == ["1", "2", "3"]
    assert [p_text(e) for e in (first, second, third)] == ["—", "—", "—"]
    assert [below_text(e) for e in (first, second, third)] == ["—", "—", "—"]
    assert below_hover(first) == "first row, or evaluated on other examples than the row above: not compared"
    (first, second), _ = board_entries([a, b])
    assert (rank_text(second), p_text(second), below_text(second)) == ("=1", "1", "no")
    assert below_hover(second) == "exact McNemar test against the row above: p = 1"
    # 9 discordant examples of 10: p = 2 * 1/2**9 = 0.00390625 (the exact binomial sum)
    d = make_record("d", status="+" + "0" * 9, stop=10)
    (first, second), _ = board_entries([a, d])
    assert (rank_text(second), p_text(second), below_text(second)) == ("2", "0.00391", "yes")


def test_a_reported_number_is_shown_beside_the_measured_one():
    reported = Reported(threat_model="linf", eps=0.1, clean_accuracy=0.9, robust_accuracy=0.8, attack="AutoAttack.",
                        n_examples=10_000, source="https://example.org/paper", where="Table 2")
    # 5 of 10 robust against a published 80 %: P(Binomial(10, 0.8) <= 5) = 0.0328 (the one-sided exact sum)
    entry = combine([_with_metadata(make_record("m", status="+" * 5 + "0" * 5, stop=10), reported=[reported])])
    assert reported_text(entry) == "80.00"
    assert reported_gap_text(entry) == "−30.00 ▼"
    assert reported_hover(entry) == "AutoAttack. (Table 2)"
    assert reported_p_hover(entry) == "exact one-sided binomial test against the reported accuracy: p = 0.0328"
    assert reported_sentence(entry) == (
        "80.00 % robust reported (clean 90.00 %) on 10,000 test examples (Table 2), measured with: AutoAttack; "
        "robbench's best-known 50.00 % on 10 examples is significantly below it (one-sided exact binomial test, "
        "p = 0.0328)")
    assert reported_facts([("L-inf 0.1", entry)]) == [
        ("reported (L-inf 0.1)", [Link(reported_sentence(entry), None), Link("source", "https://example.org/paper")])]
    # 8 of 10 against 80 %: not below (p = P(Binomial(10, 0.8) <= 8) = 0.624); no clean or count given
    modest = reported.model_copy(update={"clean_accuracy": None, "n_examples": None})
    entry = combine([_with_metadata(make_record("m", status="+" * 8 + "0" * 2, stop=10), reported=[modest])])
    assert reported_gap_text(entry) == "+0.00"
    assert reported_sentence(entry) == (
        "80.00 % robust reported (Table 2), measured with: AutoAttack; robbench's best-known 80.00 % on 10 examples "
        "is not significantly below it (one-sided exact binomial test, p = 0.624)")


def test_without_a_reported_number_the_cells_say_so():
    entry = _entry("+0", stop=2)
    assert (reported_text(entry), reported_gap_text(entry), reported_p_hover(entry)) == ("—", "—", "—")
    assert reported_hover(entry) == "no published number for this threat model"
    assert reported_sentence(entry) is None and reported_facts([("t", entry)]) == []


def test_only_http_urls_are_links():
    assert safe_url(" https://example.org/a ") == "https://example.org/a"
    assert safe_url("HTTP://EXAMPLE.ORG") == "HTTP://EXAMPLE.ORG"
    for unsafe in ("javascript:alert(1)", "https://a b", "ftp://example.org", "example.org", "", None,
                   "xhttps://example.org"):
        assert safe_url(unsafe) is None, unsafe


def test_hub_and_paper_links():
    hub = make_record("m", status="+", stop=1, repo="org/m", revision="0123456789abcdef" * 2 + "01234567")
    assert hub_link(hub) == Link("org/m@0123456", "https://huggingface.co/org/m/tree/" + "0123456789abcdef" * 2 + "01234567")
    assert hub_link(make_record("m", status="+", stop=1)) == Link("—", None)
    # a link names an exact commit: a repository without its revision, or a revision without its repository, names none
    assert hub_link(make_record("m", status="+", stop=1, repo="org/m")) == Link("—", None)
    assert hub_link(make_record("m", status="+", stop=1, revision="0" * 40)) == Link("—", None)
    assert paper_link(_entry("+", stop=1, paper="https://example.org/p")) == Link("m", "https://example.org/p")
    assert paper_link(_entry("+", stop=1, paper="javascript:x")) == Link("m", None)


def test_the_subset_mark_goes_where_the_board_does_not_share_the_subset():
    full, subset = _entry("+" * 4, test_size=4), _entry("+" * 4)
    other = _entry("+" * 4, start=4)
    assert Board([subset, _entry("0" * 4)]).shared_subset == subset.examples
    assert Board([full]).shared_subset is None and Board([subset, other]).shared_subset is None
    assert not Board([subset]).marks_subset(subset) and Board([subset, other]).marks_subset(subset)
    assert Board.apart().marks_subset(subset) and not Board.apart().marks_subset(full)
    assert model_marks(subset, Board.apart()) == ("", " †")
    beside = _entry("+" * 4)
    beside.beside = "my-results"
    assert model_marks(beside, Board([beside])) == ("", " (from my-results)")
    assert shared_subset_text(subset.examples) == (
        "† Every model on this board was evaluated on the same 4 of 10,000 test images (test[0:4]); the intervals "
        "say how precise that makes each accuracy.")


def test_a_board_row_has_every_column():
    cost = TrainingCost(device="cpu", epochs=1, train_examples=850, seconds_per_epoch=6.0, total_seconds=6.0)
    record = _with_metadata(make_record("m", status="+0-+", stop=4, paper="https://example.org/p"),
                            venue="ICLR", extra_data=True, training_cost=cost)
    (entry,), _ = board_entries([record])
    row = board_row(entry)
    assert row == {
        "rank": "1", "model": Link("m", "https://example.org/p"), "clean % (95% CI)": with_interval(0.75, wilson_interval(3, 4)),
        "robust % (95% CI)": with_interval(0.5, wilson_interval(2, 4)), "reported %": "—", "vs. reported": "—",
        "clean − robust": "25.00", "below the row above?": "—", "flags": "", "attacks": "pgd 50.00 → autoattack 50.00",
        "breaks by": "pgd 1", "p vs. above": "—", "training": "pgd-at", "venue": "ICLR",
        "training cost": "1 × 850 · 0.1 min · cpu", "extra data": "yes", "architecture": "small-cnn",
        "params": "123K", "examples": "4 of 10,000", "hub": Link("—", None),
    }
    bare = board_row(_entry("+", stop=1))
    assert (bare["venue"], bare["extra data"], bare["training cost"], bare["breaks by"]) == ("—", "no", "—", "none")


def test_a_run_row_links_its_record_and_examples():
    record = make_record("m", status="+0", stop=2, timestamp="2024-03-05T10:00:00+00:00")
    row = run_row(Link("board", "b.md"), record, ("r.json", None))
    assert row == {
        "board": Link("board", "b.md"), "run (record JSON)": Link(record.config.run_id, "r.json", local=True),
        "attacks": "pgd 50.00 → autoattack 50.00", "robust % (this run)": "50.00", "seed": "0", "device": "cpu",
        "wall time": "0.0 min", "adversarial examples (.npz)": "none", "date (UTC)": "2024-03-05",
    }


def test_a_run_row_with_saved_examples_links_them_and_gives_its_time_in_minutes():
    from robbench.results import AdversarialExamples

    # 1,234 broken of 2,000 ("0": broken by the first attack), each broken one saved; 3,660 s = 61.0 min
    record = make_record("m", status="0" * 1234 + "+" * 766, stop=2000)
    saved = AdversarialExamples(file="run.adv.npz", sha256="a" * 64, count=1234)
    record = record.model_copy(update={"adversarial_examples": saved, "wall_time_s": 3660.0})
    row = run_row(Link("board", "b.md"), record, ("r.json", "run.adv.npz"))
    assert row["adversarial examples (.npz)"] == Link("1,234", "run.adv.npz", local=True)
    assert row["wall time"] == "61.0 min"
    assert row["robust % (this run)"] == "38.30"  # 766 / 2,000
    # no URL for the examples (an empty one is none): their count as plain text
    for url in (None, ""):
        assert run_row(Link("board", "b.md"), record, ("r.json", url))["adversarial examples (.npz)"] == Link(
            "1,234", None, local=True)


def test_model_facts_come_from_the_records_metadata():
    first = _with_metadata(make_record("m", status="+", stop=1, timestamp="2024-01-01T00:00:00+00:00",
                                       paper="https://example.org/p"), authors="A. B.", venue="ICLR", caveats="old")
    later = _with_metadata(make_record("m", status="+", stop=1, timestamp="2024-02-01T00:00:00+00:00",
                                       repo="org/m", revision="abcdef0123456" + "0" * 27), venue="NeurIPS", caveats="new")
    facts = dict(model_facts([first, later]))
    assert facts["paper of the training method"] == [Link("https://example.org/p", "https://example.org/p")]
    assert facts["authors"] == [Link("A. B.", None)]
    assert facts["venue"] == [Link("ICLR; NeurIPS", None)]  # distinct values, sorted
    assert facts["caveats"] == [Link("new", None)]  # the newest record's
    assert facts["extra data"] == [Link("no", None)]
    assert facts["parameters"] == [Link("123,456", None)]
    assert facts["hub commit"] == [Link("org/m@abcdef0", "https://huggingface.co/org/m/tree/abcdef0123456" + "0" * 27)]
    assert "training cost" not in facts
    cost = TrainingCost(device="cuda", epochs=10, train_examples=50_000, seconds_per_epoch=60.0, total_seconds=600.0)
    trained = dict(model_facts([_with_metadata(first, training_cost=cost, extra_data=True)]))
    assert trained["training cost"] == [Link("10 × 50K · 10.0 min · cuda (epochs × training images · wall time · device)",
                                             None)]
    assert trained["extra data"] == [Link("yes", None)]
    assert [label for label, _ in model_facts([first])] == [
        "paper of the training method", "authors", "venue", "training", "caveats", "extra data", "architecture",
        "parameters", "checkpoint SHA-256"]


def test_a_flag_says_how_many_escalations_in_how_many_rounds_and_what_they_did():
    from robbench.leaderboard.cells import flag_text
    from robbench.results import EscalationOf, Flag

    # 40 examples: the board run leaves 20 robust; two escalations (rounds 1 and 2) break 12 of them:
    # McNemar p = 2 * 0.5**12 = 0.000488 (the exact binomial sum), below 0.001
    board = make_record("m", status="+" * 20 + "0" * 20, test_size=40, timestamp="2024-01-01T00:00:00+00:00")
    board = board.model_copy(update={"flags": [Flag(code="masked-gradients", message="doubt")]})
    escalations = []
    for round_, status in ((1, "0" * 4 + "+" * 16), (2, "=" * 4 + "0" * 8 + "+" * 8)):
        run = make_record("m", status=status + "=" * 20, test_size=40, attacks=("square",),
                          timestamp=f"2024-01-0{1 + round_}T00:00:00+00:00")
        config = run.config.model_copy(update={"escalation": EscalationOf(
            continues=[board.config.run_id, *(e.config.run_id for e in escalations)], flags=["masked-gradients"],
            round=round_)})
        escalations.append(run.model_copy(update={"config": config}))
    (entry,), problems = board_entries([board, *escalations])
    assert problems == [] and entry.robust_accuracy == 8 / 40
    assert flag_text(entry, "masked-gradients") == (
        "masked-gradients: 2 escalations in 2 rounds, best-known 50.00 → 20.00 % (p < 0.001)")
    assert flag_text(entry, "other-flag") == "other-flag"  # no escalation for it: the code alone


def test_an_entry_of_two_runs_lists_each_runs_attacks_and_every_attacks_breaks():
    # status codes (robbench.evidence): "+" survived, "-" wrong clean, a digit: broken by that stage.
    # board run "+01-": pgd breaks index 1 (robust 2/4 = 50 %), autoattack index 2 (1/4 = 25 %);
    # a later square run "0++-" breaks index 0, which both attacks left: best-known 0 of 4
    board = make_record("m", status="+01-", timestamp="2024-01-01T00:00:00+00:00")
    square = make_record("m", status="0++-", attacks=("square",), seed=1, timestamp="2024-01-02T00:00:00+00:00")
    (entry,), problems = board_entries([board, square])
    assert problems == [] and entry.robust_accuracy == 0.0
    assert attacks_text(entry) == "pgd 50.00 → autoattack 25.00; square 50.00"  # square's own run: 2 of 4 left
    assert breaks_text(entry) == "pgd 1, autoattack 1, square 1"


def test_a_reported_attack_loses_only_its_trailing_full_stops():
    reported = Reported(threat_model="linf", eps=0.1, robust_accuracy=0.5, attack="PGD-20, Appendix X.",
                        source="https://example.org/paper", where="Table IX")
    entry = combine([_with_metadata(make_record("m", status="+0", stop=2), reported=[reported])])
    # 1 of 2 robust against a published 50 %: P(Binomial(2, 0.5) <= 1) = 3/4 (the one-sided exact sum)
    assert reported_sentence(entry) == (
        "50.00 % robust reported (Table IX), measured with: PGD-20, Appendix X; robbench's best-known 50.00 % on 2 "
        "examples is not significantly below it (one-sided exact binomial test, p = 0.75)")


def test_hub_commits_are_sorted_by_their_text_and_a_paper_only_shown_when_given():
    # six repositories, newest record first, so neither the records' order nor a set's is the sorted one
    revision = "0123456" + "0" * 33
    records = [make_record("m", status="+", stop=1, timestamp=f"2024-01-0{9 - i}T00:00:00+00:00", repo=f"org/{name}",
                           revision=revision) for i, name in enumerate("fedcba")]
    facts = dict(model_facts(records))
    assert [link.text for link in facts["hub commit"]] == [f"org/{name}@0123456" for name in "abcdef"]
    assert "paper of the training method" not in facts  # no record names a paper


def test_the_flags_cell_lists_reasons_to_doubt_then_departures():
    from robbench.results import Flag

    record = make_record("m", status="+0", stop=2)
    flags = [Flag(code="non-standard-attacks", message="x"), Flag(code="masked-gradients", message="y"),
             Flag(code="non-standard-seed", message="z")]
    entry = combine([record.model_copy(update={"flags": flags})])
    # reliability flags sorted, then the board run's departures in its order (robbench.flags.BOARD_DEPARTURES)
    assert flags_text(entry) == "masked-gradients; non-standard-attacks; non-standard-seed"


def test_an_attack_of_one_stage_that_refines_its_name_goes_by_the_stage():
    """Two escalation runs of ``apgd`` (CE with restarts, targeted DLR) read apgd-ce and apgd-t, not apgd twice;
    an attack whose one stage does not refine its name keeps its own (autoattack here runs apgd-ce only)."""
    board = make_record("m", status="+01-")
    ce = make_record("m", status="0++-", attacks=("apgd",), seed=1)
    targeted = make_record("m", status="+0+-", attacks=("apgd",), seed=2)
    stage = lambda record, name: record.model_copy(update={"attacks": [  # noqa: E731
        a.model_copy(update={"stages": [s.model_copy(update={"name": name}) for s in a.stages]}) for a in record.attacks]})
    assert run_attacks_text(stage(ce, "apgd-ce")) == "apgd-ce 50.00"
    assert run_attacks_text(stage(targeted, "apgd-t")) == "apgd-t 50.00"
    assert run_attacks_text(stage(ce, "apgdx")) == "apgd 50.00"  # not a refinement: a prefix without the dash
    two_stages = ce.model_copy(update={"attacks": [a.model_copy(update={"stages": [
        a.stages[0].model_copy(update={"name": "apgd-ce"}), a.stages[0].model_copy(update={"name": "apgd-t"})]})
        for a in ce.attacks]})
    assert run_attacks_text(two_stages) == "apgd 50.00"  # two stages: the attack's own name, not its first stage's
    assert run_attacks_text(board) == "pgd 50.00 → autoattack 25.00"
