"""End to end through the ``robbench`` command, and bad input as a user meets it."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from robbench.cli import main
from tests.conftest import write_submission
from tests.test_checkpoints import _RunsCode


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robbench", *args], capture_output=True, text=True, cwd=cwd)


def test_evaluate_writes_a_complete_record(linear_submission, tmp_path):
    results = tmp_path / "results"
    code = main([
        "evaluate", str(linear_submission), "--threat-model", "linf", "--attacks", "pgd",
        "--n-examples", "100", "--device", "cpu", "--results-dir", str(results),
    ])
    assert code == 0
    record = json.loads((results / "fashion-mnist" / "linf" / "fmnist-linear.json").read_text())
    assert record["threat_model"] == {"name": "linf", "norm": "Linf", "eps": 0.1, "standard": True}
    assert record["examples"] == {"split": "test", "start": 0, "stop": 100, "test_size": 10000}
    assert 0 <= record["robust_accuracy"] <= record["clean_accuracy"] <= 1
    assert record["robust_accuracy"] * 100 == pytest.approx(round(record["robust_accuracy"] * 100))  # count/100
    assert set(record["versions"]) == {"robbench", "torch", "pyautoattack", "python"}
    assert len(record["checkpoint"]["sha256"]) == 64 and record["seed"] == 0
    assert record["attacks"][0]["config"]["step_size"] == pytest.approx(2.5 * 0.1 / 20)


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
    record = json.loads((tmp_path / "fashion-mnist" / "linf-eps0.05" / "fmnist-linear.json").read_text())
    assert record["threat_model"]["standard"] is False and record["threat_model"]["eps"] == 0.05


def _bad_inputs(tmp_path: Path, linear_submission: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (CLI args, expected fragment of the one-line error)."""
    good = yaml.safe_load(linear_submission.read_text())
    weights = linear_submission.parent / "model.safetensors"

    def spec(label: str, **changes) -> str:
        path = tmp_path / f"{label}.yaml"
        path.write_text(yaml.safe_dump({**good, "checkpoint": str(weights), **changes}))
        return str(path)

    malformed = tmp_path / "malformed.yaml"
    malformed.write_text("name: x\ndataset: [unclosed\n")
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as handle:
        pickle.dump({"1.weight": _RunsCode(tmp_path / "pwned")}, handle)
    small = write_submission(tmp_path / "small", "small", "small-cnn", {})  # empty safetensors
    return {
        "missing file": (["evaluate", str(tmp_path / "nope.yaml")], "no such file"),
        "malformed yaml": (["evaluate", str(malformed)], "malformed YAML at line 3"),
        "unknown architecture": (["evaluate", spec("arch", architecture="resnet-9000")], "unknown architecture 'resnet-9000'"),
        "unknown key": (["evaluate", spec("key", checkpoints="x")], "unknown key 'checkpoints'"),
        "wrong type": (["evaluate", spec("type", threat_models="linf")], "key 'threat_models'"),
        "path in name": (["evaluate", spec("name", name="../../etc/x")], "key 'name'"),
        "wrong shapes": (["evaluate", spec("shapes", architecture="small-cnn")], "does not match the architecture"),
        "empty checkpoint": (["evaluate", str(small)], "missing keys"),
        "pickle runs code": (["evaluate", spec("evil", checkpoint=str(evil))], "never unpickles"),
        "sha256 pin": (["evaluate", spec("pin", sha256="0" * 64)], "pins 0000"),
        "negative eps": (["evaluate", str(linear_submission), "--threat-model", "linf", "--eps", "-1"], "--eps must be a positive"),
        "absurd eps": (["evaluate", str(linear_submission), "--threat-model", "linf", "--eps", "50"], "over 100x"),
        "unknown threat model": (["evaluate", str(linear_submission), "--threat-model", "l1"], "has no threat model 'l1'"),
        "unknown attack": (["evaluate", str(linear_submission), "--attacks", "pgdd"], "unknown attack 'pgdd'"),
        "missing train config": (["train", str(tmp_path / "none.yaml")], "no such file"),
    }


def test_bad_input_gives_one_line_error_and_writes_nothing(linear_submission, tmp_path):
    cases = _bad_inputs(tmp_path, linear_submission)
    results = tmp_path / "results"
    for name, (args, fragment) in cases.items():
        extra = ["--results-dir", str(results), "--device", "cpu"] if args[0] == "evaluate" else []
        done = run_cli(*args, *extra, cwd=tmp_path)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (name, done.stderr)
        assert len(lines) == 1 and lines[0].startswith("robbench: error: "), (name, done.stderr)
        assert fragment in lines[0], (name, lines[0])
    assert not results.exists()
    assert not (tmp_path / "pwned").exists()
