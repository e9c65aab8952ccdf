"""End to end through the ``robbench`` command (bad input: tests/test_hostile.py)."""

from __future__ import annotations

import json

import pytest

from robbench.cli import main

from .helpers import REPO


def test_evaluate_writes_a_complete_record(linear_submission, tmp_path):
    results = tmp_path / "results"
    code = main([
        "evaluate", str(linear_submission), "--threat-model", "linf", "--attacks", "pgd",
        "--n-examples", "100", "--device", "cpu", "--results-dir", str(results),
    ])
    assert code == 0
    (path,) = (results / "fashion-mnist" / "linf" / "fmnist-linear").glob("*.json")
    record = json.loads(path.read_text())
    config = record["config"]
    assert config["threat_model"] == {"name": "linf", "norm": "Linf", "eps": 0.1, "standard": True}
    assert config["examples"] == {"split": "test", "start": 0, "stop": 100, "test_size": 10000}
    assert 0 <= record["robust_accuracy"] <= record["clean_accuracy"] <= 1
    assert set(config["versions"]) == {"robbench", "torch", "pyautoattack", "python"}
    assert len(config["checkpoint"]["sha256"]) == 64 and config["seed"] == 0 and config["normalization"] is None
    assert config["attacks"][0]["config"]["step_size"] == pytest.approx(2.5 * 0.1 / 20)
    # the totals are counts of the per-example evidence, one character per example
    status = record["evidence"]["status"]
    assert len(status) == 100 and record["evidence"]["stages"] == ["pgd/pgd"]
    assert record["clean_accuracy"] == sum(c != "-" for c in status) / 100
    assert record["robust_accuracy"] == status.count("+") / 100
    assert record["adversarial_examples"]["count"] == status.count("0")
    assert path.with_name(path.name.replace(".json", ".adv.npz")).is_file()


def test_same_seed_same_numbers_on_cpu(linear_submission):
    from robbench import evaluate

    kwargs = dict(threat_models="l2", attacks=["pgd"], n_examples=100, device="cpu", seed=7)
    first, second = evaluate(linear_submission, **kwargs)[0], evaluate(linear_submission, **kwargs)[0]
    volatile = {"wall_time_s", "timestamp"}
    assert first.model_dump(exclude=volatile) == second.model_dump(exclude=volatile)


def test_non_standard_eps_is_marked_and_stored_apart(linear_submission, tmp_path):
    code = main([
        "evaluate", str(linear_submission), "--threat-model", "linf", "--eps", "0.05", "--attacks", "pgd",
        "--n-examples", "50", "--device", "cpu", "--results-dir", str(tmp_path),
    ])
    assert code == 0
    (path,) = (tmp_path / "fashion-mnist" / "linf-eps0.05" / "fmnist-linear").glob("*.json")
    threat = json.loads(path.read_text())["config"]["threat_model"]
    assert threat["standard"] is False and threat["eps"] == 0.05


def test_an_attack_bug_exits_3_not_as_a_user_error(linear_submission, monkeypatch, capsys):
    import robbench.pipeline
    from robbench.errors import AttackBugError, RobbenchError

    assert not issubclass(AttackBugError, RobbenchError)

    def buggy(*args, **kwargs):
        raise AttackBugError("attack stage 'cheat' produced 1 misclassified points outside the Linf ball")

    monkeypatch.setattr(robbench.pipeline, "evaluate", buggy)
    code = main(["evaluate", str(linear_submission), "--device", "cpu", "--results-dir", "unused"])
    assert code == 3
    assert capsys.readouterr().err.strip() == (
        "robbench: attack bug: attack stage 'cheat' produced 1 misclassified points outside the Linf ball"
    )


def test_library_errors_name_the_parameter_and_the_cli_the_flag():
    from robbench.errors import RobbenchError
    from robbench.threat_models import linf

    with pytest.raises(RobbenchError) as caught:
        linf(0.1).with_eps(-1.0)
    assert str(caught.value) == "eps must be a positive finite number, got -1.0"
    assert caught.value.cli_message() == "--eps must be a positive finite number, got -1.0"
    assert RobbenchError("no such file").cli_message() == "no such file"


def test_pinned_pyautoattack_version_is_read_from_the_package_metadata():
    import re

    from robbench.flags import BOARD
    from robbench.runtime import pinned_version

    (pin,) = re.findall(r'"pyautoattack==([^"]+)"', (REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert BOARD.pyautoattack == pinned_version("pyautoattack") == pin
    assert pinned_version("torch") is None  # a lower bound, not a pin
