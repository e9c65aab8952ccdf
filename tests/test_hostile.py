"""Hostile and malformed input, as a table: each case is one line and must give a one-line error,
exit status 2, and write nothing (no results folder, no file anywhere else, no code run).

Cases run in-process through ``robbench.cli.main`` (the function ``python -m robbench`` calls), so
models registered below are reachable from a model.yaml; one case also runs as a real subprocess.
"""

from __future__ import annotations

import json
import math
import pickle
import struct
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import nn

from robbench.cli import main
from robbench.data import DATASETS, Dataset, get_dataset, idx
from robbench.models import ARCHITECTURES
from .helpers import RunsCode

Case = tuple[list[str], str]  # (CLI arguments, a fragment the one-line error must contain)
Twist = Callable[[nn.Module, torch.Tensor], torch.Tensor]


class Twisted(nn.Sequential):
    """The ``linear`` layout (flatten, fc), so the linear checkpoint loads, with a hostile forward."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, twist: Twist):
        super().__init__(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
        self.twist = twist

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.twist(self, x)


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return nn.Sequential.forward(model, x)


def _switch_to_training(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.train()
    return logits(model, x)


HOSTILE_MODELS: dict[str, Twist] = {
    "wrong-classes": lambda m, x: logits(m, x)[:, :3],
    "nan": lambda m, x: logits(m, x) * float("nan"),
    "in-place": lambda m, x: logits(m, x.mul_(0.5)),
    "tuple": lambda m, x: (logits(m, x), None),
    "crash": lambda m, x: logits(m, x.view(-1, 3)),
    "trains-itself": _switch_to_training,
}


def _twisted_factory(twist: Twist) -> Callable[..., nn.Module]:
    def factory(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return Twisted(input_shape, num_classes, twist)

    return factory


class StaysInTraining(Twisted):
    """Ignores ``eval()``; its forward records the mode it ran in."""

    modes: list[bool] = []

    def train(self, mode: bool = True) -> "StaysInTraining":
        return super().train(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        StaysInTraining.modes.append(self.training)
        return logits(self, x)


def _sticky(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return StaysInTraining(input_shape, num_classes, logits)


def _labels_out_of_range(data_dir: str | None = None) -> Dataset:
    base = get_dataset("fashion-mnist")
    return replace(base, name="labels-out-of-range", loader=lambda split: (base.load(split)[0], base.load(split)[1] + 1))


@pytest.fixture(scope="module", autouse=True)
def hostile_entries():
    """The hostile architectures and the bad dataset, registered for this module's tests only (never at import)."""
    entries = [(ARCHITECTURES, f"hostile-{name}", _twisted_factory(twist)) for name, twist in HOSTILE_MODELS.items()]
    entries += [(ARCHITECTURES, "sticky-training", _sticky), (DATASETS, "labels-out-of-range", _labels_out_of_range)]
    for registry, name, factory in entries:
        registry.register(name)(factory)
    yield
    for registry, name, _ in entries:
        registry._entries.pop(name)


def _safetensors_bytes(header: dict, body: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


def _corpus(tmp: Path, good_yaml: Path) -> dict[str, Case]:
    good = yaml.safe_load(good_yaml.read_text())
    weights = good_yaml.parent / "model.safetensors"
    state = load_file(str(weights))
    marker = tmp / "pwned"

    def spec(label: str, **changes) -> str:
        path = tmp / f"{label}.yaml"
        path.write_text(yaml.safe_dump({**good, "checkpoint": str(weights), **changes}))
        return str(path)

    def text(label: str, content: str) -> str:
        path = tmp / f"{label}.yaml"
        path.write_text(content)
        return str(path)

    def checkpoint(label: str, suffix: str, content: "bytes | dict | object") -> str:
        path = tmp / f"{label}{suffix}"
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif suffix == ".safetensors":
            save_file(content, str(path))
        else:
            torch.save(content, path)
        return spec(label, checkpoint=str(path))

    def tensors(**changes: torch.Tensor) -> dict[str, torch.Tensor]:
        return {**state, **changes}

    def data_dir(label: str, damage: Callable[[bytes], bytes]) -> str:
        folder = tmp / label / "fashion-mnist"
        folder.mkdir(parents=True)
        for source in (idx.BUNDLED / "fashion-mnist").glob("t10k-*.gz"):
            (folder / source.name).write_bytes(damage(source.read_bytes()) if "images" in source.name else source.read_bytes())
        return str(tmp / label)

    lying = {"1.weight": {"dtype": "F32", "shape": [10, 784], "data_offsets": [0, 31360]}}
    bias = state["1.bias"]
    ev = lambda *args: ["evaluate", *args]  # noqa: E731
    linear = str(good_yaml)
    return {
        # checkpoints
        "pickle that runs code": (ev(checkpoint("evil", ".pt", pickle.dumps({"1.weight": RunsCode(marker)}))), "never unpickles"),
        "torch.save of a malicious object": (ev(checkpoint("evil-save", ".pth", {"1.weight": RunsCode(marker)})), "never unpickles"),
        "torch.save of a whole module": (ev(checkpoint("module", ".pt", nn.Linear(784, 10))), "never unpickles"),
        "pickle holding a bare tensor": (ev(checkpoint("bare", ".pt", torch.zeros(3))), "does not hold a state_dict"),
        "not a safetensors file": (ev(checkpoint("fake", ".safetensors", b"this is not a safetensors file")), "not a valid safetensors"),
        "empty safetensors file": (ev(checkpoint("empty", ".safetensors", b"")), "not a valid safetensors"),
        "header lies about sizes": (ev(checkpoint("lying", ".safetensors", _safetensors_bytes(lying, bytes(64)))), "not a valid safetensors"),
        "header length absurd": (ev(checkpoint("huge", ".safetensors", struct.pack("<Q", 2**60) + b"{}")), "not a valid safetensors"),
        "wrong shapes": (ev(checkpoint("shapes", ".safetensors", tensors(**{"1.bias": torch.zeros(3)}))), "1.bias has shape (3,)"),
        "wrong architecture": (ev(spec("arch", architecture="small-cnn")), "does not match the architecture"),
        "checkpoint without tensors": (ev(checkpoint("no-tensors", ".safetensors", {})), "missing keys"),
        "integer weights": (ev(checkpoint("ints", ".safetensors", tensors(**{"1.bias": bias.to(torch.int64)}))), "dtype torch.int64"),
        "NaN weights": (ev(checkpoint("nan", ".safetensors", tensors(**{"1.bias": bias * float("nan")}))), "NaN or Inf"),
        "Inf weights": (ev(checkpoint("inf", ".safetensors", tensors(**{"1.bias": bias + float("inf")}))), "NaN or Inf"),
        "unknown format": (ev(checkpoint("weights", ".h5", b"\x89HDF")), "unknown checkpoint format"),
        "missing checkpoint": (ev(spec("missing", checkpoint=str(tmp / "absent.safetensors"))), "not found"),
        "sha256 pin differs": (ev(spec("pin", sha256="0" * 64)), "pins 0000"),
        # configs
        "missing model.yaml": (ev(str(tmp / "nope.yaml")), "no such file"),
        "malformed YAML": (ev(text("malformed", "name: x\ndataset: [unclosed\n")), "malformed YAML at line 3"),
        "YAML tag that would run code": (ev(text("tag", f"name: !!python/object/apply:os.system ['touch {marker}']\n")), "malformed YAML"),
        "YAML that is not a mapping": (ev(text("list", "- name\n- dataset\n")), "expected a mapping"),
        "unknown key": (ev(spec("key", checkpoints="x")), "unknown key 'checkpoints'"),
        "wrong type (list)": (ev(spec("type", threat_models="linf")), "key 'threat_models'"),
        "wrong type (mapping)": (ev(spec("kwargs", architecture_kwargs="wide")), "key 'architecture_kwargs'"),
        "name climbs out": (ev(spec("climb", name="../../etc/x")), "key 'name'"),
        "name is ..": (ev(spec("dots", name="..")), "key 'name'"),
        "name has a separator": (ev(spec("slash", name="a/b")), "key 'name'"),
        "zero std": (ev(spec("std", normalization={"mean": [0.5], "std": [0.0]})), "std must be positive"),
        "unknown architecture": (ev(spec("unknown-arch", architecture="resnet-9000")), "unknown architecture 'resnet-9000'"),
        "unknown architecture argument": (ev(spec("arch-kwarg", architecture_kwargs={"depth": 3})), "rejected its arguments"),
        "architecture argument out of range": (ev(spec("dropout", architecture="small-cnn", architecture_kwargs={"drop_rate": 5})), "rejected its arguments"),
        "unknown dataset": (ev(spec("unknown-data", dataset="imagenet-9000")), "unknown dataset 'imagenet-9000'"),
        "unknown dataset argument": (ev(spec("data-kwarg", dataset_kwargs={"colour": True})), "rejected dataset_kwargs"),
        "dataset/threat-model mismatch": (ev(spec("mismatch", threat_models=["l1"])), "has no threat model 'l1'"),
        "negative eps": (ev(linear, "--threat-model", "linf", "--eps", "-1"), "--eps must be a positive"),
        "zero eps": (ev(linear, "--threat-model", "linf", "--eps", "0"), "--eps must be a positive"),
        "NaN eps": (ev(linear, "--threat-model", "linf", "--eps", "nan"), "--eps must be a positive"),
        "absurd eps": (ev(linear, "--threat-model", "linf", "--eps", "50"), "over 100x"),
        "unknown threat model": (ev(linear, "--threat-model", "l1"), "has no threat model 'l1'"),
        "unknown attack": (ev(linear, "--attacks", "pgdd"), "unknown attack 'pgdd'"),
        "no attacks": (ev(linear, "--attacks", ","), "--attacks is empty"),
        "zero examples": (ev(linear, "--n-examples", "0"), "must be positive"),
        "zero batch size": (ev(linear, "--batch-size", "0"), "--batch-size must be a positive integer or 'auto', got 0"),
        "batch size that is a word": (ev(linear, "--batch-size", "big"), "--batch-size must be a positive integer or 'auto', got 'big'"),
        "negative seed": (ev(linear, "--seed", "-1"), "--seed must be between"),
        "missing train config": (["train", str(tmp / "none.yaml")], "no such file"),
        # models
        "wrong number of classes": (ev(spec("classes", architecture="hostile-wrong-classes")), "expected logits of shape (20, 10)"),
        "NaN outputs": (ev(spec("nan-out", architecture="hostile-nan")), "NaN or Inf logits"),
        "changes its input in place": (ev(spec("in-place", architecture="hostile-in-place")), "changes its input in place"),
        "returns a tuple": (ev(spec("tuple", architecture="hostile-tuple")), "not a tensor of logits"),
        "forward crashes": (ev(spec("crash", architecture="hostile-crash")), "the model failed on test inputs"),
        "switches itself to training": (ev(spec("trains", architecture="hostile-trains-itself")), "switches itself to training"),
        # data
        "corrupt dataset file": (ev(linear, "--data-dir", data_dir("corrupt", lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:])), "corrupt or truncated"),
        "truncated dataset file": (ev(linear, "--data-dir", data_dir("truncated", lambda b: b[: len(b) // 2])), "corrupt or truncated"),
        "labels out of range": (ev(spec("labels", dataset="labels-out-of-range")), "labels fall outside"),
    }


def _files(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def test_hostile_corpus(linear_submission, tmp_path, capsys):
    cases = _corpus(tmp_path, linear_submission)
    assert len(cases) >= 25
    before = _files(tmp_path) | _files(linear_submission.parent)
    results = tmp_path / "results"
    failures = []
    for name, (args, fragment) in cases.items():
        extra = ["--results-dir", str(results), "--device", "cpu", "--n-examples", "20"] if args[0] == "evaluate" else []
        code = main([args[0], *extra, *args[1:]])  # a case's own options come last, so they win
        lines = capsys.readouterr().err.strip().splitlines()
        one_line = len(lines) == 1 and lines[0].startswith("robbench: error: ") and fragment in lines[0]
        if code != 2 or not one_line:
            failures.append(f"{name}: exit {code}, stderr {lines}")
    assert not failures, "\n".join(failures)
    assert _files(tmp_path) | _files(linear_submission.parent) == before  # no results folder, no file anywhere
    assert not (tmp_path / "pwned").exists()


@pytest.mark.slow
def test_pickle_that_runs_code_through_the_real_command(linear_submission, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"1.weight": RunsCode(marker)}))
    spec = tmp_path / "evil.yaml"
    spec.write_text(yaml.safe_dump({**yaml.safe_load(linear_submission.read_text()), "checkpoint": str(evil)}))
    done = subprocess.run(
        [sys.executable, "-m", "robbench", "evaluate", str(spec), "--results-dir", str(tmp_path / "results")],
        capture_output=True, text=True, cwd=tmp_path,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "never unpickles" in lines[0]
    assert not marker.exists() and not (tmp_path / "results").exists()


def test_model_left_in_training_mode_is_evaluated_in_eval_mode(linear_submission, tmp_path):
    from robbench import evaluate

    spec = tmp_path / "sticky.yaml"
    spec.write_text(yaml.safe_dump({
        **yaml.safe_load(linear_submission.read_text()), "architecture": "sticky-training",
        "checkpoint": str(linear_submission.parent / "model.safetensors"),
    }))
    StaysInTraining.modes.clear()
    records = evaluate(spec, threat_models=["linf", "l2"], attacks=["pgd"], n_examples=10, device="cpu")
    assert StaysInTraining.modes and not any(StaysInTraining.modes)
    assert all("evaluated in eval mode" in " ".join(r.notes) for r in records)
