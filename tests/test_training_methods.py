"""Every training method, schedule, augmentation, exact resume and early stopping, on tiny CIFAR-shaped data."""

from __future__ import annotations

from types import SimpleNamespace

import json

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from robbench import evaluate
from robbench.cli import main
from robbench.config import TrainSpec
from robbench.data import cifar
from robbench.errors import RobbenchError
from robbench.evaluation import Outcome
from robbench.training import loop
from robbench.training.loop import STATE_FILE, augment, learning_rate_factor, train

TINY = {
    "dataset": "cifar10",
    "architecture": "preact-resnet18",
    "architecture_kwargs": {"width": 4},
    "epochs": 2,
    "batch_size": 32,
    "lr": 0.05,
    "attack_steps": 2,
    "crop_padding": 4,
    "horizontal_flip": True,
    "eval_examples": 16,
    "eval_attack_steps": 2,
}


@pytest.fixture
def data_dir(tiny_cifar_dir) -> str:
    return tiny_cifar_dir


@pytest.fixture(autouse=True)
def _fresh_cache():
    cifar._load_split.cache_clear()


def _spec(**overrides) -> TrainSpec:
    return TrainSpec(**{"name": "tiny", **TINY, **overrides})


@pytest.mark.slow
@pytest.mark.parametrize("method", ["standard", "pgd-at", "trades", "fgsm-rs"])
def test_every_method_trains_and_writes_a_ready_submission(tmp_path, data_dir, method):
    log = train(_spec(method=method, epochs=1, holdout=16), tmp_path, device="cpu", data_dir=data_dir)
    (entry,) = log["epochs"]
    assert np.isfinite(entry["loss"]) and 0 <= entry["holdout_pgd_accuracy"] <= entry["holdout_clean_accuracy"] <= 1
    assert log["data"] == {"available_train_examples": 80, "train_examples": 64, "holdout_examples": 16, "test_monitor_examples": 16}
    eps = 8 / 255
    assert log["attack_step_size"] == pytest.approx(1.25 * eps if method == "fgsm-rs" else 2.5 * eps / 2)
    spec = yaml.safe_load((tmp_path / "model.yaml").read_text())
    assert spec["metadata"]["training"] == method
    cost = spec["metadata"]["training_cost"]
    assert cost["epochs"] == 1 and cost["train_examples"] == 64 and cost["device"].startswith("cpu")
    assert cost["total_seconds"] >= cost["seconds_per_epoch"] > 0
    assert not (tmp_path / STATE_FILE).exists()  # removed once the submission is written
    (record,) = evaluate(tmp_path / "model.yaml", threat_models="linf", attacks=[], n_examples=16, device="cpu", data_dir=data_dir)
    assert record.clean_accuracy == entry["clean_accuracy"]  # the same weights, the same test images


class _Interrupted(Exception):
    pass


def _crash(entry: dict) -> None:
    raise _Interrupted


def test_resume_after_an_interruption_gives_the_same_weights_bit_for_bit(tmp_path, data_dir):
    config = {"name": "tiny", **TINY, "method": "fgsm-rs", "schedule": "one-cycle", "holdout": 16, "early_stopping": True}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    whole = tmp_path / "whole"
    assert main(["train", str(tmp_path / "train.yaml"), "--out", str(whole), "--device", "cpu", "--data-dir", data_dir]) == 0

    parts = tmp_path / "parts"
    with pytest.raises(_Interrupted):
        train(TrainSpec(**config), parts, device="cpu", data_dir=data_dir, log=_crash)  # right after epoch 1's state is saved
    assert (parts / STATE_FILE).is_file() and not (parts / "model.safetensors").exists()
    assert main(["train", str(tmp_path / "train.yaml"), "--out", str(parts), "--device", "cpu", "--data-dir", data_dir, "--resume"]) == 0

    first, second = load_file(str(whole / "model.safetensors")), load_file(str(parts / "model.safetensors"))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    strip = lambda log: [{k: v for k, v in e.items() if k != "seconds"} for e in log["epochs"]]  # noqa: E731
    logs = [json.loads((folder / "train_log.json").read_text()) for folder in (whole, parts)]
    assert strip(logs[0]) == strip(logs[1]) and logs[0]["selected_epoch"] == logs[1]["selected_epoch"]
    assert logs[1]["cost"]["epochs"] == 2


def test_resume_refuses_another_config_and_a_missing_state(tmp_path, data_dir):
    with pytest.raises(_Interrupted):
        train(_spec(epochs=2), tmp_path, device="cpu", data_dir=data_dir, log=_crash)
    with pytest.raises(RobbenchError, match="another 'lr'"):
        train(_spec(epochs=2, lr=0.1), tmp_path, device="cpu", data_dir=data_dir, resume=True)
    with pytest.raises(RobbenchError, match="no interrupted run"):
        train(_spec(), tmp_path / "elsewhere", device="cpu", data_dir=data_dir, resume=True)
    older = torch.load(tmp_path / STATE_FILE, weights_only=True)
    del older["world_size"]  # as written before torchrun training
    torch.save(older, tmp_path / STATE_FILE)
    with pytest.raises(RobbenchError, match="written by an older robbench; delete it"):
        train(_spec(epochs=2), tmp_path, device="cpu", data_dir=data_dir, resume=True)


def test_early_stopping_keeps_the_best_held_out_epoch_and_stops_on_a_collapse(tmp_path, data_dir, monkeypatch):
    held_out_pgd = iter([0.30, 0.50, 0.45, 0.25, 0.60])  # epoch 4 falls 25 points below the best: collapse
    real, calls = loop.run_attacks, []

    def scripted(model, x, y, **kwargs) -> "Outcome | SimpleNamespace":
        outcome = real(model, x, y, **kwargs)
        calls.append(len(x))
        if len(calls) % 2 == 0:  # each epoch checks the test images first, then the held-out ones
            return SimpleNamespace(clean_accuracy=outcome.clean_accuracy, robust_accuracy=next(held_out_pgd))
        return outcome

    monkeypatch.setattr(loop, "run_attacks", scripted)
    saved = {}

    def remember(entry: dict) -> None:  # the state file holds the weights of the epoch just finished
        saved[entry["epoch"]] = torch.load(tmp_path / STATE_FILE, weights_only=True)["model"]

    log = train(_spec(epochs=5, holdout=16, early_stopping=True), tmp_path, device="cpu", data_dir=data_dir, log=remember)
    assert [e["epoch"] for e in log["epochs"]] == [1, 2, 3, 4]
    assert log["selected_epoch"] == 2 and "catastrophic overfitting in epoch 4" in log["stopped_early"]
    assert log["epochs"][3]["catastrophic_overfitting"] is True and "catastrophic_overfitting" not in log["epochs"][2]
    written = load_file(str(tmp_path / "model.safetensors"))
    assert all(torch.equal(written[k], saved[2][k]) for k in written)


def test_early_stopping_needs_a_holdout():
    with pytest.raises(ValueError, match="holdout"):
        _spec(early_stopping=True)


def test_schedules():
    assert [learning_rate_factor("one-cycle", p) for p in (0.0, 0.2, 0.4, 0.7, 1.0)] == pytest.approx([0, 0.5, 1, 0.5, 0])
    assert [learning_rate_factor("piecewise", p) for p in (0.1, 0.5, 0.8)] == [1.0, 0.1, 0.01]
    assert learning_rate_factor("piecewise", 0.99, [0.98]) == 0.1 and learning_rate_factor("piecewise", 0.97, [0.98]) == 1.0
    assert learning_rate_factor("cosine", 0.5) == pytest.approx(0.5) and learning_rate_factor("constant", 0.9) == 1.0
    with pytest.raises(ValueError, match="increasing fractions"):
        _spec(lr_milestones=[0.75, 0.5])


def test_augment_crops_from_the_padded_image_and_flips():
    x = torch.rand(64, 3, 8, 8)
    assert torch.equal(augment(x, 0, False, torch.Generator().manual_seed(0)), x)
    out = augment(x, 2, True, torch.Generator().manual_seed(0))
    again = augment(x, 2, True, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.equal(out, again)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):  # every output is one of the 5x5 crops of the padded image, maybe mirrored
        crops = [padded[i, :, r : r + 8, c : c + 8] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i], crop) or torch.equal(out[i], crop.flip(2)) for crop in crops)
    assert not torch.equal(out, x)
