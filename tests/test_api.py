"""RobustBench-style API: ``load_model`` and ``benchmark`` give what ``evaluate`` gives, on the committed models."""

from __future__ import annotations

import hashlib

import pytest
import torch
import yaml
from safetensors.torch import save_file

import robbench
from robbench.store import relative_record_path
from robbench.errors import RobbenchError
from robbench.in_memory import state_dict_sha256
from .helpers import REPO

SUBMISSIONS = REPO / "submissions"
VOLATILE = {"wall_time_s", "timestamp"}


@pytest.mark.slow
@pytest.mark.parametrize("folder, attacks", [("small-cnn-standard", ["pgd", "autoattack"]), ("small-cnn-pgd-at", ["pgd"])])
def test_load_model_and_benchmark_give_evaluates_numbers(folder, attacks):
    model_yaml = SUBMISSIONS / "fashion-mnist" / folder / "model.yaml"
    name = yaml.safe_load(model_yaml.read_text())["name"]
    kwargs = dict(attacks=attacks, n_examples=20, device="cpu", seed=3)
    [evaluated] = robbench.evaluate(model_yaml, threat_models="linf", **kwargs)
    by_name = robbench.load_model(name, dataset="fashion-mnist", threat_model="linf", submissions_dir=SUBMISSIONS)
    assert not any(module.training for module in by_name.modules())
    record = robbench.benchmark(by_name, dataset="fashion-mnist", threat_model="linf", name=name,
                                metadata=evaluated.metadata.model_dump(), **kwargs)
    differs = {"config": {"checkpoint", "architecture"}, **{field: True for field in VOLATILE}}
    assert record.model_dump(exclude=differs) == evaluated.model_dump(exclude=differs)
    assert record.checkpoint.path == "in-memory" and record.checkpoint.sha256 == state_dict_sha256(by_name)
    assert record.architecture == "SmallCNN" and evaluated.architecture == "small-cnn"


def test_load_model_takes_a_model_yaml_and_refuses_unknown_names(tmp_path):
    model_yaml = SUBMISSIONS / "fashion-mnist" / "small-cnn-pgd-at" / "model.yaml"
    x = torch.rand(3, 1, 28, 28)
    by_path = robbench.load_model(str(model_yaml))
    by_name = robbench.load_model("fmnist-small-cnn-pgd-at", submissions_dir=SUBMISSIONS)
    assert torch.equal(by_path(x), by_name(x))
    with pytest.raises(RobbenchError, match="no submission named 'nope' in .*; known: .*fmnist-small-cnn-pgd-at"):
        robbench.load_model("nope", submissions_dir=SUBMISSIONS)
    with pytest.raises(RobbenchError, match=r"no submissions folder .*; pass submissions_dir="):
        robbench.load_model("fmnist-small-cnn-pgd-at", submissions_dir=tmp_path / "none")
    with pytest.raises(RobbenchError, match="is a fashion-mnist model, not a cifar10 one"):
        robbench.load_model(str(model_yaml), dataset="cifar10")
    with pytest.raises(RobbenchError, match="evaluated under l2, linf, not 'l3'"):
        robbench.load_model(str(model_yaml), threat_model="l3")


def test_state_dict_digest_is_the_safetensors_file_digest_and_follows_the_weights(tmp_path):
    model = robbench.create_model("small-cnn", num_classes=10)
    twin = robbench.create_model("small-cnn", num_classes=10)
    twin.load_state_dict(model.state_dict())
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    assert state_dict_sha256(model) == state_dict_sha256(twin) == hashlib.sha256((tmp_path / "w.safetensors").read_bytes()).hexdigest()
    with torch.no_grad():
        next(twin.parameters())[0].add_(1e-3)
    assert state_dict_sha256(twin) != state_dict_sha256(model)


@pytest.mark.slow
def test_robustbench_spellings_are_accepted_and_to_disk_writes_the_record(tmp_path):
    """RobustBench's call forms: load_model(model_name=...), threat_model="Linf", benchmark(model_name=..., to_disk=...)."""
    import torch

    from robbench.store import read_store

    model = robbench.load_model(model_name="fmnist-small-cnn-pgd-at", dataset="fashion-mnist", threat_model="Linf")
    assert not model.training
    with pytest.raises(robbench.RobbenchError, match="name the model once"):
        robbench.load_model()
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    record = robbench.benchmark(linear, dataset="fashion-mnist", threat_model="Linf", model_name="my-linear",
                                to_disk=tmp_path / "mine", attacks=["pgd"], n_examples=10, device="cpu")
    assert record.name == "my-linear" and record.threat_model.name == "linf"
    assert record.attack_accuracies == {"pgd": record.robust_accuracy}  # a value, not a method call
    assert record.clean_minus_robust == record.clean_accuracy - record.robust_accuracy
    (stored,), problems = read_store(tmp_path / "mine")
    assert problems == [] and stored == record
    assert (tmp_path / "mine" / relative_record_path(record)).with_name(record.adversarial_examples.file).is_file()
