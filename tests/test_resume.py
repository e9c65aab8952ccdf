"""Crash-safe, resumable, deterministic evaluation: kill -9 mid-run, rerun, same record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import robbench.evaluation as evaluation
from robbench.cli import main
from robbench.evidence import SURVIVED
from robbench.progress_state import Found, Position, StateFile
from robbench.results import EvalRecord
from robbench.store import adversarial_path, read_record, read_store, record_json, relative_record_path, state_path

pytestmark = pytest.mark.usefixtures("single_thread")  # one torch thread, as in the subprocess

#: a run of ~20 batches: PGD leaves a dozen survivors at this radius, so AutoAttack has several batches
ARGS = [
    "--threat-model", "linf", "--eps", "0.02", "--attacks", "pgd,autoattack", "--n-examples", "30",
    "--batch-size", "4", "--device", "cpu",
]


def _stable(record: EvalRecord) -> str:
    """The record as written, byte for byte, with the two fields that measure the run itself blanked."""
    return record_json(record.model_copy(update={"wall_time_s": 0.0, "timestamp": ""}))


def _state_file(results: Path) -> Path | None:
    return next(results.rglob(".*.state"), None) if results.is_dir() else None


def _saved(path: Path | None) -> dict | None:
    try:
        return json.loads(path.read_text()) if path is not None else None
    except (OSError, ValueError):
        return None


@pytest.mark.slow
def test_killed_evaluation_resumes_to_the_uninterrupted_record(linear_submission, tmp_path, monkeypatch):
    uninterrupted = tmp_path / "uninterrupted"
    assert main(["evaluate", str(linear_submission), *ARGS, "--results-dir", str(uninterrupted)]) == 0
    (expected,) = read_store(uninterrupted)[0]

    results = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "robbench", "evaluate", str(linear_submission), *ARGS, "--results-dir", str(results)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 300
        while (saved := _saved(_state_file(results))) is None or saved["stage"] < 1:  # past PGD, inside AutoAttack
            assert process.poll() is None, "the evaluation ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    state = _state_file(results)
    saved = _saved(state)
    assert not list(results.rglob("*.json"))  # no record, half or whole

    ran = []
    original = evaluation._run_stage

    def spy(number, stages, attack, stage, first_batch, *rest):
        ran.append((number, first_batch))
        return original(number, stages, attack, stage, first_batch, *rest)

    monkeypatch.setattr(evaluation, "_run_stage", spy)
    assert main(["evaluate", str(linear_submission), *ARGS, "--results-dir", str(results)]) == 0
    assert ran[0] == (saved["stage"], saved["batch"])  # continued where it stopped, did not start over
    (resumed,) = read_store(results)[0]
    assert _stable(resumed) == _stable(expected)
    assert resumed.adversarial_examples.count > 0  # the examples saved before the kill were kept, exactly
    expected_file = adversarial_path(uninterrupted / relative_record_path(expected))
    assert adversarial_path(results / relative_record_path(resumed)).read_bytes() == expected_file.read_bytes()
    assert resumed.wall_time_s >= saved["elapsed_s"]  # wall time sums every run
    assert not state.exists() and not state.with_name(state.name + ".d").exists()


def test_state_for_another_configuration_is_ignored(linear_submission, tmp_path):
    """A state consistent in every way but its key (it says PGD broke nothing) is ignored; under this run's key the
    same state is resumed, and its number shows, so only the key can be what refuses it."""
    from robbench import evaluate

    kwargs = dict(threat_models="linf", attacks=["pgd"], n_examples=20, batch_size=5, device="cpu")
    fresh = evaluate(linear_submission, results_dir=tmp_path / "fresh", **kwargs)[0]
    assert fresh.robust_accuracy < fresh.clean_accuracy  # PGD broke some, so "broke nothing" is another number
    nothing_broken = torch.tensor(fresh.evidence.codes()).clamp(max=SURVIVED)  # every stage code becomes SURVIVED

    def planted(results: Path, key: str) -> Path:
        state = state_path(results, fresh.config)
        StateFile(state, key, (1, 28, 28)).save(nothing_broken, Position(len(fresh.evidence.stages), 0), Found())
        return state

    stale = planted(tmp_path / "stale", "another configuration")
    resumed = evaluate(linear_submission, results_dir=tmp_path / "stale", **kwargs)[0]
    assert _stable(resumed) == _stable(fresh)
    assert not stale.exists() and read_record(tmp_path / "stale" / relative_record_path(resumed)) == resumed

    planted(tmp_path / "ours", fresh.config.key())
    trusted = evaluate(linear_submission, results_dir=tmp_path / "ours", **kwargs)[0]
    assert trusted.robust_accuracy == trusted.clean_accuracy == fresh.clean_accuracy


@pytest.mark.parametrize("content", ["", "{not json", '{"format": 1}', "[]"])
def test_unreadable_state_starts_afresh(tmp_path, content):
    path = tmp_path / ".x.state"
    path.write_text(content)
    assert StateFile(path, "key", (1, 28, 28)).load(torch.ones(3, dtype=torch.bool), 2) is None


@pytest.mark.slow
def test_same_seed_same_record_byte_for_byte(linear_submission):
    from robbench import evaluate

    kwargs = dict(threat_models="linf", eps=0.02, attacks=["pgd", "autoattack"], n_examples=16, batch_size=8, device="cpu", seed=5)
    first, second = evaluate(linear_submission, **kwargs)[0], evaluate(linear_submission, **kwargs)[0]
    assert _stable(first) == _stable(second)
