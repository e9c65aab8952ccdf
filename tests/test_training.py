from __future__ import annotations

import pytest

import json

import torch
import yaml

from robbench import evaluate
from robbench.cli import main


@pytest.mark.needs_data
def test_train_writes_a_ready_submission(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "name": "tiny-pgd-at", "dataset": "fashion-mnist", "architecture": "linear", "method": "pgd-at",
        "epochs": 2, "n_train": 512, "batch_size": 128, "attack_steps": 3, "eval_examples": 100,
        "eval_attack_steps": 5, "lr": 0.05,
    }))
    out = tmp_path / "run"
    assert main(["train", str(config), "--out", str(out), "--device", "cpu"]) == 0
    log = json.loads((out / "train_log.json").read_text())
    assert [e["epoch"] for e in log["epochs"]] == [1, 2]
    assert all(0 <= e["pgd_accuracy"] <= e["clean_accuracy"] <= 1 for e in log["epochs"])
    assert log["epochs"][-1]["clean_accuracy"] > 0.5  # it learned something
    spec = yaml.safe_load((out / "model.yaml").read_text())
    assert spec["metadata"]["training"] == "pgd-at" and len(spec["sha256"]) == 64
    (record,) = evaluate(out / "model.yaml", threat_models="linf", attacks=["pgd"], n_examples=100, device="cpu")
    assert record.clean_accuracy == log["epochs"][-1]["clean_accuracy"]  # same weights, same first 100 images


@pytest.mark.needs_data
def test_training_is_deterministic_for_a_seed(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "name": "tiny", "dataset": "fashion-mnist", "architecture": "linear", "method": "pgd-at",
        "epochs": 1, "n_train": 256, "attack_steps": 2, "eval_examples": 50, "seed": 5,
    }))
    from safetensors.torch import load_file

    for run in ("a", "b"):
        assert main(["train", str(config), "--out", str(tmp_path / run), "--device", "cpu"]) == 0
    first, second = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(torch.equal(first[k], second[k]) for k in first)
