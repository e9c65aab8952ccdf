"""Names on the boards are owned by the first source the results store admitted (robbench.ownership, robbench.store)."""

from __future__ import annotations

import json

import pytest

from robbench.errors import RobbenchError
from robbench.leaderboard import render_all
from robbench.ownership import Claim, Ledger, name_key
from robbench.store import LEDGER_NAME, read_ledger, read_store, record_json, relative_record_path, settle_ledger, write_record
from .helpers import make_record

A, B, C = "a" * 64, "b" * 64, "c" * 64
REV1, REV2 = "1" * 40, "2" * 40


@pytest.mark.parametrize(
    ("owner", "newcomer", "admitted"),
    [
        ((A, None), (A, None), True),  # local weights, same bytes: a re-evaluation
        ((A, None), (B, None), False),  # local weights, other bytes
        ((A, "org/x"), (B, "org/x"), True),  # a repo's later commit
        ((A, "org/x"), (None, "org/x"), True),  # hub weights not downloaded yet: the repo speaks for them
        ((A, "org/x"), (B, "org/y"), False),  # another repo
        ((A, "org/x"), (A, "org/y"), True),  # another repo holding the identical weights: the same owner
        ((A, None), (A, "org/x"), True),  # a local model's hub copy, identical digest
        ((A, None), (B, "org/x"), False),  # a hub repo with other weights never takes a local model's name
        ((A, "org/x"), (A, None), True),  # the hub model's weights evaluated locally
    ],
)
def test_who_may_join_a_name(owner, newcomer, admitted):
    ledger = Ledger([Claim("model", *owner)])
    assert (ledger.refusal(Claim("model", *newcomer)) is None) is admitted


def test_a_copy_of_the_weights_gains_no_right_to_change_them():
    """A repo admitted for holding the owner's bytes cannot then push other weights under the name."""
    ledger = Ledger([Claim("model", A, "org/owner", REV1), Claim("model", A, "org/copier", REV1)])
    assert ledger.refusal(Claim("model", B, "org/copier", REV2)) == "the name 'model' belongs to hub repo org/owner"
    assert ledger.refusal(Claim("model", B, "org/owner", REV2)) is None


@pytest.mark.parametrize("lookalike", ["model-x.", "model-x-", "model_x", "model.x", "model--x", "model-_x", "model-x__"])
def test_look_alike_names_are_one_name(lookalike):
    """PEP 503 normalisation (https://peps.python.org/pep-0503/#normalized-names), trailing separators dropped."""
    assert name_key(lookalike) == name_key("model-x") == "model-x"
    reason = Ledger([Claim("model-x", A)]).refusal(Claim(lookalike, A))
    assert reason == f"the name {lookalike!r} is a look-alike of 'model-x', which belongs to local weights {A[:12]}"


def test_a_hub_repos_latest_commit_is_current():
    ledger = Ledger([Claim("m", A, "org/x", REV1), Claim("m", B, "org/x", REV2)])
    assert ledger.current_sha256("m", {A, B}) == B
    assert ledger.current_sha256("m", {A}) == A  # a board the later commit was not evaluated on keeps the earlier
    assert ledger.current_sha256("m", set()) is None  # none of its weights evaluated here
    assert ledger.current_sha256("unclaimed", {A}) is None  # a name nobody holds has no current weights


def test_the_owners_weights_are_its_first_and_its_own_repos_later_ones():
    """As ``owner_digests`` defines them: another source's claim under the name adds none, nor does a digest-less one."""
    ledger = Ledger([Claim("m", None, "org/x", REV1), Claim("m", A, "org/x", REV2), Claim("m", B, "org/other", REV1)])
    assert ledger.owner_digests("m") == {A}
    assert Ledger([Claim("m", A), Claim("m", B)]).owner_digests("m") == {A}
    assert Ledger().owner_digests("m") == set()


def test_admitting_a_claim_twice_adds_it_once():
    ledger = Ledger()
    assert ledger.admit(Claim("m", A)) is True
    assert ledger.admit(Claim("M", A)) is True  # a look-alike's claim is another claim (refusal decides on it)
    assert ledger.admit(Claim("m", A)) is False
    assert ledger.claims == [Claim("m", A), Claim("M", A)]


def test_a_claim_describes_its_source():
    assert Claim("m", A, "org/x", REV1).describe() == "hub repo org/x"
    assert Claim("m", A).describe() == f"local weights {A[:12]}"
    assert Claim("m", None).describe() == "local weights ?"  # no digest known: said so, not left blank


def test_a_forged_early_timestamp_takes_no_row(tmp_path):
    """The genuine model's record was written first; another checkpoint's record dropped in beside it
    with an earlier timestamp is a problem line, and the genuine row stays."""
    genuine = make_record("model", 0.9, 0.5, sha256=A, stop=100, timestamp="2025-06-01T00:00:00+00:00")
    write_record(genuine, tmp_path)
    forged = make_record("model", 0.99, 0.98, sha256=B, stop=100, seed=1, timestamp="1970-01-01T00:00:00+00:00")
    path = tmp_path / relative_record_path(forged)
    path.write_text(record_json(forged))
    records, problems = read_store(tmp_path)
    assert records == [genuine]
    assert problems == [f"{path}: the name 'model' belongs to local weights {A[:12]} (results ledger); not shown"]
    with pytest.raises(RobbenchError, match="the name 'model' belongs to local weights"):
        write_record(forged, tmp_path)


def test_a_look_alike_record_is_refused_on_write_and_on_the_board(tmp_path):
    write_record(make_record("model-x", sha256=A, stop=100), tmp_path)
    lookalike = make_record("model_x", 0.99, 0.99, sha256=B, stop=100)
    with pytest.raises(RobbenchError, match="look-alike of 'model-x'"):
        write_record(lookalike, tmp_path)
    (tmp_path / relative_record_path(lookalike)).parent.mkdir(parents=True)
    (tmp_path / relative_record_path(lookalike)).write_text(record_json(lookalike))
    records, problems = read_store(tmp_path)
    assert [r.name for r in records] == ["model-x"] and "look-alike of 'model-x'" in problems[0]


def test_a_repos_later_commit_replaces_its_row_and_the_board_names_the_commit(tmp_path):
    first = make_record("hubbed", 0.9, 0.5, sha256=A, repo="org/x", revision=REV1, stop=100)
    later = make_record("hubbed", 0.8, 0.6, sha256=B, repo="org/x", revision=REV2, stop=100,
                        timestamp="2000-01-01T00:00:00+00:00")  # an older timestamp changes nothing
    write_record(first, tmp_path)
    write_record(later, tmp_path)
    assert read_store(tmp_path) == ([later], [])
    files, problems = render_all(tmp_path)
    board = files["fashion-mnist-linf-0p1.md"].decode()
    assert f"org/x@{REV2[:7]}" in board and REV1[:7] not in board and not problems


def test_the_ledger_is_written_in_admission_order_and_settles_hand_copied_records(tmp_path):
    write_record(make_record("zeta", sha256=A, stop=100), tmp_path)
    copied = make_record("alpha", sha256=B, stop=100)
    (tmp_path / relative_record_path(copied)).parent.mkdir(parents=True)
    (tmp_path / relative_record_path(copied)).write_text(record_json(copied))
    assert [c.name for c in read_ledger(tmp_path).claims] == ["zeta"]
    settle_ledger(tmp_path)
    lines = (tmp_path / LEDGER_NAME).read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"name": "zeta", "sha256": A, "repo": None, "revision": None},
        {"name": "alpha", "sha256": B, "repo": None, "revision": None},
    ]
