"""Published models and their reported numbers: the ``reported`` block, the test against it, the checkpoints."""

from __future__ import annotations

import importlib.util
import sys
from math import comb
from pathlib import Path

import pytest
import torch
import yaml

from robbench.config import Metadata, Reported, load_model_spec
from robbench.digests import file_digest
from robbench.errors import RobbenchError
from robbench.leaderboard.cells import BELOW_REPORTED_MARK, reported_gap_text, reported_sentence, reported_text
from robbench.leaderboard.entries import combine
from robbench.models import create_model
from robbench.stats import below_reported_p

from .helpers import REPO, make_record

TRADES = REPO / "submissions" / "mnist" / "small-cnn-trades-official"
ADVERTORCH = REPO / "submissions" / "mnist" / "lenet5-pgd-at-advertorch"

REPORTED = {
    "threat_model": "linf", "eps": 0.3, "clean_accuracy": 0.99, "robust_accuracy": 0.95,
    "attack": "PGD-40", "source": "https://example.org/paper", "where": "Table 1",
}


def _spec_with(tmp_path: Path, reported: object) -> Path:
    spec = yaml.safe_load((TRADES / "model.yaml").read_text(encoding="utf-8"))
    spec["checkpoint"] = str(TRADES / spec["checkpoint"])
    spec["metadata"]["reported"] = reported
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"robust_accuracy": 95.6}, "key 'metadata.reported.0.robust_accuracy': Input should be less than or equal to 1"),
        ({"clean_accuracy": -0.1}, "key 'metadata.reported.0.clean_accuracy': Input should be greater than or equal to 0"),
        ({"source": "javascript:alert(1)"}, "key 'metadata.reported.0.source': String should match pattern"),
        ({"source": "ftp://example.org/x"}, "key 'metadata.reported.0.source': String should match pattern"),
        ({"eps": 0}, "key 'metadata.reported.0.eps': Input should be greater than 0"),
        ({"robust": 0.9}, "unknown key 'metadata.reported.0.robust'; remove it or check its spelling"),
    ],
)
def test_a_bad_reported_block_is_refused_naming_its_key(tmp_path, change, message):
    with pytest.raises(RobbenchError) as error:
        load_model_spec(_spec_with(tmp_path, [{**REPORTED, **change}]))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_missing_field_and_a_second_entry_for_one_threat_model_are_refused(tmp_path):
    without_source = {k: v for k, v in REPORTED.items() if k != "source"}
    with pytest.raises(RobbenchError, match="missing required key 'metadata.reported.0.source'"):
        load_model_spec(_spec_with(tmp_path, [without_source]))
    with pytest.raises(RobbenchError, match="at most one reported entry per threat model"):
        load_model_spec(_spec_with(tmp_path, [REPORTED, {**REPORTED, "robust_accuracy": 0.9}]))


def test_the_one_sided_binomial_test_matches_the_binomial_sum():
    # independent source: P(X <= k) for X ~ Binomial(n, p), summed term by term
    def lower_tail(k: int, n: int, p: float) -> float:
        return sum(comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))

    for k, n, p in [(8, 10, 0.95), (17, 20, 0.95), (90, 100, 0.9607), (0, 5, 0.5), (5, 5, 0.5)]:
        assert below_reported_p(k, n, p) == pytest.approx(lower_tail(k, n, p), rel=1e-9)
    with pytest.raises(ValueError):
        below_reported_p(11, 10, 0.5)


def _entry(robust: float, reported: float | None, *, threat: str = "linf", eps: float = 0.3, n: int = 100):
    record = make_record("m", clean=1.0, robust=robust, dataset="mnist", threat=threat, eps=eps, test_size=n)
    entries = [] if reported is None else [Reported(**{**REPORTED, "robust_accuracy": reported})]
    return combine([record.model_copy(update={"metadata": Metadata(reported=entries)})])


def test_the_marker_appears_exactly_when_the_measured_number_is_significantly_below():
    # 90 of 100 against 96 %: P(X <= 90) = 0.006844 (binomial sum, math.comb) < 0.05 -> marked
    marked = _entry(0.90, 0.96)
    assert marked.below_reported_p() == pytest.approx(0.006844, abs=5e-7)
    assert reported_gap_text(marked) == f"−6.00 {BELOW_REPORTED_MARK}"
    # 93 of 100 against 96 %: P(X <= 93) = 0.10639 >= 0.05 -> a gap, but no marker
    unmarked = _entry(0.93, 0.96)
    assert unmarked.below_reported_p() == pytest.approx(0.10639, abs=5e-6)
    assert reported_gap_text(unmarked) == "−3.00"
    # above the reported number: positive gap, never marked
    assert reported_gap_text(_entry(0.99, 0.96)) == "+3.00"
    assert reported_text(marked) == "96.00"


def test_a_reported_number_for_another_radius_or_threat_model_is_not_shown():
    assert _entry(0.9, 0.96, eps=0.2).reported is None
    assert _entry(0.9, 0.96, threat="l2", eps=0.3).reported is None
    assert reported_text(_entry(0.9, None)) == "—" and reported_sentence(_entry(0.9, None)) is None


def test_the_model_page_sentence_names_the_attack_the_source_line_and_the_verdict():
    sentence = reported_sentence(_entry(0.90, 0.96))
    assert sentence.startswith("96.00 % robust reported (clean 99.00 %) (Table 1), measured with: PGD-40;")
    assert "robbench's best-known 90.00 % on 100 examples is significantly below it" in sentence


def test_the_official_trades_checkpoint_is_the_published_file_and_loads_strictly_into_small_cnn():
    spec = load_model_spec(TRADES / "model.yaml")
    assert file_digest(spec.checkpoint_path()) == spec.sha256 == (
        "5b99888064f692047d5592b38df2dde126aa1b991a26c6aad683ce709634bea0"  # TRADES repository blob d8285c7
    )
    state = torch.load(spec.checkpoint_path(), map_location="cpu", weights_only=True)
    create_model("small-cnn").load_state_dict(state, strict=True)
    assert (TRADES / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")


#: the names and shapes of the 8 tensors of advertorch 0.2.3's mnist_lenet5_advtrained.pt (read from the file)
ADVERTORCH_KEYS = {
    "conv1.weight": (32, 1, 3, 3), "conv1.bias": (32,), "conv2.weight": (64, 32, 3, 3), "conv2.bias": (64,),
    "linear1.weight": (200, 3136), "linear1.bias": (200,), "linear2.weight": (10, 200), "linear2.bias": (10,),
}


def test_lenet5_has_exactly_advertorchs_keys_and_shapes():
    model = create_model("lenet5")
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == ADVERTORCH_KEYS
    published = {k: torch.randn(shape) for k, shape in ADVERTORCH_KEYS.items()}
    model.load_state_dict(published, strict=True)
    missing = dict(published)
    missing.pop("linear2.bias")
    with pytest.raises(RuntimeError, match="Missing key"):
        model.load_state_dict(missing, strict=True)
    x = torch.rand(3, 1, 28, 28)
    assert model(x).shape == (3, 10)


def _fetch_module():
    spec = importlib.util.spec_from_file_location("fetch_advertorch", REPO / "submissions" / "mnist" / "fetch_advertorch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_fetched_file_with_another_digest_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    fetch = _fetch_module()
    for folder in fetch.MEMBERS:
        (tmp_path / folder).mkdir()
        source = REPO / "submissions" / "mnist" / folder / "model.yaml"
        (tmp_path / folder / "model.yaml").write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(fetch, "HERE", tmp_path)
    monkeypatch.setattr(fetch, "download_sdist", lambda folder: folder / "advertorch-0.2.3.tar.gz")
    monkeypatch.setattr(fetch, "extract", lambda archive, member, target: target.write_bytes(b"not the published weights"))
    assert fetch.main() == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.yaml pins b89abfcf" in err and "refusing it" in err
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".pt", ".part")]  # nothing half-written


def test_the_advertorch_submission_pins_the_published_digest_and_is_not_committed():
    spec = load_model_spec(ADVERTORCH / "model.yaml")
    assert spec.sha256 == "b89abfcfe8b33235fe8f8e964188d82a97c56a12ffe25132eaba197e40ac7658"  # advertorch 0.2.3 sdist member
    assert spec.architecture == "lenet5" and spec.metadata.reported[0].robust_accuracy == 0.932  # 1 - 6.8 % success
    ignored = (REPO / ".gitignore").read_text(encoding="utf-8")
    assert "lenet5-pgd-at-advertorch/mnist_lenet5_advtrained.pt" in ignored
    assert "lenet5-standard-advertorch/mnist_lenet5_clntrained.pt" in ignored


def test_the_board_and_the_model_page_show_the_reported_number_beside_the_measured_one(tmp_path):
    from robbench.leaderboard import render_all
    from robbench.store import write_record

    record = make_record("published", clean=1.0, robust=0.90, dataset="mnist", eps=0.3, stop=100)
    record = record.model_copy(update={"metadata": Metadata(reported=[Reported(**{**REPORTED, "robust_accuracy": 0.96})])})
    write_record(record, tmp_path / "results")
    files, problems = render_all(tmp_path / "results")
    assert not problems
    (row,) = [line for line in files["mnist-linf-0p3.md"].decode().split("<details>")[0].splitlines() if line.startswith("| 1 |")]
    assert "| 96.00 | −6.00 ▼ |" in row  # 90 of 100 against 96 %: p = 0.0068 (the binomial sum above)
    page = files["models/published.md"].decode()
    assert "96.00 % robust reported (clean 99.00 %) (Table 1), measured with: PGD-40;" in page
    assert "[source](https://example.org/paper)" in page
    site = files["site/mnist-linf-0p3.html"].decode()
    assert "−6.00 ▼" in site and "PGD-40 (Table 1)" in site  # the cell and its tooltip
