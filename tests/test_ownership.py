"""Names on the boards are owned by the source of their weights (robbench.ownership)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from robbench.ownership import conflicting_owner, same_owner

A, B = "a" * 64, "b" * 64


def record(name: str, sha256: str, repo: str | None = None):
    """What the rule reads of an EvalRecord: its name, checkpoint and file path."""
    from pathlib import PurePosixPath

    return SimpleNamespace(
        name=name, checkpoint=SimpleNamespace(sha256=sha256, repo=repo),
        relative_path=lambda: PurePosixPath("fashion-mnist/linf") / f"{name}.json",
    )


@pytest.mark.parametrize(
    ("ours", "theirs", "same"),
    [
        ((A, None), (A, None), True),  # local weights, same bytes: a re-evaluation
        ((A, None), (B, None), False),  # local weights, other bytes
        ((A, "org/x"), (B, "org/x"), True),  # a repo's new commit replaces its own record
        ((None, "org/x"), (A, "org/x"), True),  # hub weights not downloaded yet
        ((A, "org/y"), (A, "org/x"), False),  # another repo, even with the same bytes
        ((A, "org/x"), (A, None), False),  # a hub repo never takes a local model's name
        ((A, None), (A, "org/x"), False),  # nor local weights a hub model's
    ],
)
def test_same_owner(ours, theirs, same):
    assert same_owner(*ours, *theirs) is same


def test_conflicting_owner_names_the_record_and_its_source():
    records = [record("other", B, "org/z"), record("taken", A, "org/x")]
    assert conflicting_owner("taken", B, "org/y", records) == "the record fashion-mnist/linf/taken.json of hub repo org/x"
    assert conflicting_owner("taken", B, "org/x", records) is None
    assert conflicting_owner("free", B, "org/y", records) is None
    assert conflicting_owner("taken", None, None, [record("taken", A)]) == (
        f"the record fashion-mnist/linf/taken.json of local weights {A[:12]}"
    )


def test_a_source_is_described_by_its_repo_else_its_digest():
    from robbench.ownership import describe_source

    assert describe_source(A, "org/x") == "hub repo org/x"
    assert describe_source(A, None) == "local weights aaaaaaaaaaaa"  # the first 12 hex digits
    assert describe_source(None, None) == "local weights ?"  # a record always has a digest; this must not crash
