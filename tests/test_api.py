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


@pytest.mark.slow  # loads the submissions folder's models (zoo lookup): seconds
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


class Constant(torch.nn.Module):
    """Logits (0, 1) whatever the input: it predicts class 1 everywhere, and no attack can move it."""

    def __init__(self) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(torch.tensor([0.0, 1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], 2) + 0 * x.sum(1, keepdim=True)


class SignOfSum(torch.nn.Module):
    """Logits (-s, s) with s the sum of the input's features: under L-inf ε it moves s by at most ε · width."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.sum(1, keepdim=True)
        return torch.cat([-s, s], 1)


TSIPRAS_5 = dict(dataset="tsipras", dataset_kwargs={"d": 4}, threat_model="linf", attacks=["pgd"], device="cpu")


def test_benchmark_on_your_own_tensors_unpacks_to_robustbenchs_pair(monkeypatch):
    import robbench.data.synthetic
    from robbench.digests import data_digest

    def never(*args, **kwargs):
        raise AssertionError("the dataset's test split was loaded")

    monkeypatch.setattr(robbench.data.synthetic, "sample_tsipras", never)
    x, y = torch.zeros(10, 5), torch.tensor([1] * 7 + [0] * 3)
    record = robbench.benchmark(Constant(), x=x, y=y, **TSIPRAS_5)
    clean, robust = record
    assert (clean, robust) == (0.7, 0.7)  # 7 of the 10 labels are the constant prediction; a constant model has no gradient
    assert record.examples.split == "user-supplied" and record.examples.user_supplied
    assert (record.examples.count, record.examples.test_size) == (10, 10)
    assert record.config.data_sha256 == data_digest(x, y.long())


def test_benchmark_returns_the_adversarial_examples_aligned_with_the_inputs():
    # s = 2.0, 0.2, -1.0, -0.3, 1.0 for labels 1, 1, 0, 0, 0: at ε = 0.1 over 5 features s moves by at most 0.5, so
    # rows 0 and 2 survive, rows 1 and 3 break and row 4 is wrong already: clean 4/5, robust 2/5
    x = torch.tensor([0.4, 0.04, -0.2, -0.06, 0.2]).repeat_interleave(5).reshape(5, 5)
    y = torch.tensor([1, 1, 0, 0, 0])
    record, x_adv = robbench.benchmark(SignOfSum(), x=x, y=y, eps=0.1, return_adversarial=True, **TSIPRAS_5)
    assert tuple(record) == (0.8, 0.4) and record.attack_accuracies == {"pgd": 0.4}
    assert x_adv.shape == x.shape
    moved = (x_adv != x).any(1)
    assert moved.tolist() == [False, True, False, True, False]
    assert float((x_adv - x).abs().max()) <= 0.1 + 1e-6
    assert (SignOfSum()(x_adv[moved]).argmax(1) != y[moved]).all()


def test_records_of_your_own_tensors_stay_in_memory(tmp_path):
    from robbench.store import read_store, record_json, write_record
    from robbench.verify import verify_record

    x, y = torch.zeros(4, 5), torch.tensor([1, 1, 0, 1])
    with pytest.raises(RobbenchError, match="a record of your own x, y stays in memory"):
        robbench.benchmark(Constant(), x=x, y=y, to_disk=tmp_path / "results", **TSIPRAS_5)
    assert not (tmp_path / "results").exists()
    record = robbench.benchmark(Constant(), x=x, y=y, **TSIPRAS_5)
    with pytest.raises(RobbenchError, match="evaluated on user-supplied tensors.*it stays in memory"):
        write_record(record, tmp_path / "results")
    placed = tmp_path / "results" / "tsipras" / "linf" / record.name / f"{record.config.run_id}.json"
    placed.parent.mkdir(parents=True)
    placed.write_text(record_json(record))  # copied in by hand: not shown, and it claims no name
    records, problems = read_store(tmp_path / "results")
    assert records == [] and problems == [f"{placed}: evaluated on user-supplied tensors, not the dataset's test split, "
                                          "so no board can compare it and nobody can verify it; not shown, and no claim on its name"]
    with pytest.raises(RobbenchError, match="verify cannot check it without them"):
        verify_record(placed)


@pytest.mark.parametrize("x, y, message", [
    (torch.zeros(3, 4), torch.zeros(3, dtype=torch.long), r"x must be a non-empty float tensor of shape \(N, 5\) for tsipras"),
    (torch.zeros(3, 5), torch.zeros(2, dtype=torch.long), r"y must hold one integer label per row of x \(3\)"),
    (torch.zeros(3, 5), torch.zeros(3), r"y must hold one integer label per row of x"),
    (torch.full((3, 5), float("nan")), torch.zeros(3, dtype=torch.long), "x holds NaN or infinite values"),
    (torch.zeros(3, 5), torch.tensor([0, 1, 2]), r"y holds labels outside 0..1, the classes of tsipras"),
    (torch.zeros(3, 5), None, "pass both x= .* and y="),
])
def test_bad_tensors_are_one_line_errors(x, y, message):
    with pytest.raises(RobbenchError, match=message):
        robbench.benchmark(Constant(), x=x, y=y, **TSIPRAS_5)


def test_tensors_outside_the_value_range_are_refused():
    with pytest.raises(RobbenchError, match=r"x lies in \[0, 2\], outside fashion-mnist's value range \[0, 1\]; pass unnormalised"):
        robbench.benchmark(torch.nn.Flatten(), dataset="fashion-mnist", threat_model="linf", x=torch.linspace(0, 2, 784 * 2).reshape(2, 1, 28, 28),
                           y=torch.tensor([0, 1]))
