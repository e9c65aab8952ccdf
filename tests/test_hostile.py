"""Hostile and malformed input, as a table: each case is one line and must give a one-line error,
exit status 2, and write nothing (no results folder, no file anywhere else, no code run).

Cases run in-process through ``robbench.cli.main`` (the function ``python -m robbench`` calls), so
models registered below are reachable from a model.yaml; one case also runs as a real subprocess.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import nn

from robbench.cli import main
from robbench.data import DATASETS, Dataset, get_dataset, idx
from robbench.models import ARCHITECTURES
from .helpers import RunsCode

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


def _npy_claiming(shape: tuple[int, ...]) -> bytes:
    """An .npy member whose header claims ``shape`` (uint8) but which holds 16 bytes."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + bytes(16)


def _aliases_expanding_to(length: int) -> str:
    """A YAML flow list a few hundred bytes long that expands to ``length`` characters."""
    return f"[&r [&w {'x' * 100}{', *w' * 19}]{', *r' * (length // 2000 - 1)}]"


@dataclass
class Corpus:
    """Writes the input files of the cases below under ``root``; each case writes its own."""

    root: Path
    good_yaml: Path

    @property
    def good(self) -> dict:
        return yaml.safe_load(self.good_yaml.read_text())

    @property
    def weights(self) -> Path:
        return self.good_yaml.parent / "model.safetensors"

    @property
    def marker(self) -> Path:
        return self.root / "pwned"

    def spec_text(self, **changes) -> str:
        return yaml.safe_dump({**self.good, "checkpoint": str(self.weights), **changes})

    def spec(self, label: str, **changes) -> str:
        return self.text(label, self.spec_text(**changes))

    def text(self, label: str, content: str) -> str:
        path = self.root / f"{label}.yaml"
        path.write_text(content)
        return str(path)

    def checkpoint(self, label: str, suffix: str, content: "bytes | dict | object") -> str:
        path = self.root / f"{label}{suffix}"
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif suffix == ".safetensors":
            save_file(content, str(path))
        else:
            torch.save(content, path)
        return self.spec(label, checkpoint=str(path))

    def tensors(self, **changes: torch.Tensor) -> dict:
        return {**load_file(str(self.weights)), **changes}

    def bias(self, dtype: torch.dtype, value: float) -> dict:
        return self.tensors(**{"1.bias": torch.full((10,), value, dtype=dtype)})

    def data_dir(self, label: str, damage: Callable[[bytes], bytes]) -> str:
        folder = self.root / label / "fashion-mnist"
        folder.mkdir(parents=True)
        for source in (idx.BUNDLED / "fashion-mnist").glob("t10k-*.gz"):
            (folder / source.name).write_bytes(damage(source.read_bytes()) if "images" in source.name else source.read_bytes())
        return str(self.root / label)

    def npz(self, label: str, shape: tuple[int, ...]) -> str:
        path = self.root / f"{label}.npz"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("x.npy", _npy_claiming(shape))
            archive.writestr("y.npy", _npy_claiming(shape[:1]))
        return self.spec(label, dataset="npz", dataset_kwargs={"path": str(path)})

    @property
    def evaluated(self) -> Path:
        """A genuine record (20 examples, PGD) of the good submission, made once; cases edit copies of it."""
        folder = self.root / "evaluated"
        if not folder.exists():
            from robbench import evaluate

            evaluate(self.good_yaml, threat_models=["linf"], attacks=["pgd"], n_examples=20, device="cpu", results_dir=folder)
        return next(folder.rglob("*.json"))

    def verify(self, label: str, edit_record: Callable[[str], str] = lambda t: t,
               adversarial: "Callable[[Path], None] | None" = None) -> list[str]:
        """``verify`` of a copy of the genuine record: its text edited, its adversarial file replaced by ``adversarial``.

        A replaced file's digest goes into the record, so the check under test is the one that must refuse it.
        """
        from robbench.adversarial import digest
        from robbench.store import adversarial_path

        folder = self.root / label
        folder.mkdir()
        record, source = folder / self.evaluated.name, self.evaluated
        adv = adversarial_path(record)
        adv.write_bytes(adversarial_path(source).read_bytes())
        text = source.read_text()
        if adversarial is not None:
            adv.unlink()
            adversarial(adv)
            if adv.is_file() and not adv.is_symlink():
                text = text.replace(json.loads(text)["adversarial_examples"]["sha256"], digest(adv.read_bytes()))
        if edit_record(text) is not None:
            record.write_text(edit_record(text))
        return ["verify", str(record), "--model", str(self.good_yaml), "--device", "cpu"]

    def queue(self, label: str) -> str:
        """A queue folder holding one PENDING request (never evaluated by these cases)."""
        from robbench.publishing.evaluation_queue import Request, pin_digest

        folder = self.root / label
        folder.mkdir()
        checkpoint = f"hf://org/model/model.safetensors@{'a' * 40}"
        spec = {**self.good, "checkpoint": checkpoint}
        request = Request(
            id="fmnist-linear-linf-aaaaaaaaaaaa", checkpoint=checkpoint, spec=spec, threat_model="linf", eps=0.1,
            pinned=pin_digest(checkpoint, spec, "linf", 0.1), submitted="2025-01-01T00:00:00", updated="2025-01-01T00:00:00",
        )
        (folder / f"{request.id}.json").write_text(request.model_dump_json(indent=2))
        return str(folder)


def _npz(path: Path, members: dict[str, tuple[tuple[int, ...], str, int]]) -> None:
    """An .npz whose members have ``.npy`` headers claiming (shape, dtype) and then that many zero bytes, streamed."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, (shape, dtype, zeros) in members.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as handle:
                np.lib.format.write_array_header_1_0(handle, {"descr": dtype, "fortran_order": False, "shape": shape})
                for _ in range(zeros // 2**20):
                    handle.write(bytes(2**20))
                handle.write(bytes(zeros % 2**20))


def _claims_1e11_floats(path: Path) -> None:
    _npz(path, {"index": ((1,), "<i8", 8), "x_adv": ((10**11 // 784, 1, 28, 28), "<f4", 16)})


def _zip_bomb(path: Path) -> None:
    """Headers matching a 3-example record, then 256 MiB of zeros where 3 examples' 9,408 bytes belong."""
    _npz(path, {"index": ((3,), "<i8", 24), "x_adv": ((3, 1, 28, 28), "<f4", 256 * 2**20)})


def _deeply_nested(text: str) -> str:
    return text.replace('"notes": [', '"notes": [' + "[" * 200_000 + "]" * 200_000 + ",", 1)


def _huge_integer(text: str) -> str:
    return text.replace('"seed": 0', '"seed": ' + "9" * 5000, 1)


def _count(n: int) -> Callable[[str], str]:
    """The record's adversarial-example count set to ``n``, to match a replaced file."""
    def edit(text: str) -> str:
        data = json.loads(text)
        data["adversarial_examples"]["count"] = n
        return json.dumps(data)

    return edit


def _record_linked_to_dev_zero(args: list[str]) -> list[str]:
    Path(args[1]).unlink()
    Path(args[1]).symlink_to("/dev/zero")
    return args


def _link(target: str) -> Callable[[Path], None]:
    return lambda path: path.symlink_to(target)


def _module_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The module budget lowered, so depth 1000000 is refused in milliseconds here (seconds at the real limit)."""
    from robbench import loader

    monkeypatch.setattr(loader, "MAX_MODULES", 500)


def ev(*args: str) -> list[str]:
    return ["evaluate", *args]


def run_queue(corpus: Corpus, label: str, *options: str) -> list[str]:
    return ["queue", "run", "--queue-dir", corpus.queue(label), *options]


def _full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)


LYING = {"1.weight": {"dtype": "F32", "shape": [10, 784], "data_offsets": [0, 31360]}}
NAN = float("nan")

#: class -> case name -> (corpus -> (CLI arguments, a fragment the one-line error must contain[, a patch of the environment]))
CASES_BY_CLASS: dict[str, dict[str, Callable[[Corpus], tuple]]] = {
    "checkpoints": {
        "pickle that runs code": lambda c: (ev(c.checkpoint("evil", ".pt", pickle.dumps({"1.weight": RunsCode(c.marker)}))), "never unpickles"),
        "torch.save of a malicious object": lambda c: (ev(c.checkpoint("evil-save", ".pth", {"1.weight": RunsCode(c.marker)})), "never unpickles"),
        "torch.save of a whole module": lambda c: (ev(c.checkpoint("module", ".pt", nn.Linear(784, 10))), "never unpickles"),
        "pickle holding a bare tensor": lambda c: (ev(c.checkpoint("bare", ".pt", torch.zeros(3))), "does not hold a state_dict"),
        "unpickler fails: empty stack (IndexError)": lambda c: (ev(c.checkpoint("pop", ".pt", b"\x80\x02.")), "not a readable PyTorch checkpoint"),
        "unpickler fails: unknown memo (KeyError)": lambda c: (ev(c.checkpoint("memo", ".pt", b"\x80\x02h\x05.")), "not a readable PyTorch checkpoint"),
        "unpickler fails: short integer (struct.error)": lambda c: (ev(c.checkpoint("short", ".pt", b"\x80\x02J\x01")), "not a readable PyTorch checkpoint"),
        "self-referential state dict": lambda c: (ev(c.checkpoint("loop", ".pt", _self_referential())), "does not hold a state_dict"),
        "state dict with a non-string key": lambda c: (ev(c.checkpoint("int-key", ".pt", {**c.tensors(), 1: torch.zeros(3)})), "names that are not strings"),
        "sparse tensor": lambda c: (ev(c.checkpoint("sparse", ".pt", c.tensors(**{"1.bias": torch.zeros(10).to_sparse()}))), "'1.bias' is not a dense tensor"),
        "meta tensor": lambda c: (ev(c.checkpoint("meta", ".pt", c.tensors(**{"1.bias": torch.empty(10, device="meta")}))), "'1.bias' is not a dense tensor"),
        "float8 NaN that isfinite cannot see": lambda c: (ev(c.checkpoint("fp8", ".safetensors", c.bias(torch.float8_e4m3fn, NAN))), "1.bias contains NaN or Inf"),
        "float64 weights that overflow float32": lambda c: (ev(c.checkpoint("fp64", ".safetensors", c.bias(torch.float64, 1e300))), "1.bias contains NaN or Inf"),
        "not a safetensors file": lambda c: (ev(c.checkpoint("fake", ".safetensors", b"this is not a safetensors file")), "not a valid safetensors"),
        "empty safetensors file": lambda c: (ev(c.checkpoint("empty", ".safetensors", b"")), "not a valid safetensors"),
        "header lies about sizes": lambda c: (ev(c.checkpoint("lying", ".safetensors", _safetensors_bytes(LYING, bytes(64)))), "not a valid safetensors"),
        "header length absurd": lambda c: (ev(c.checkpoint("huge", ".safetensors", struct.pack("<Q", 2**60) + b"{}")), "not a valid safetensors"),
        "wrong shapes": lambda c: (ev(c.checkpoint("shapes", ".safetensors", c.tensors(**{"1.bias": torch.zeros(3)}))), "1.bias has shape (3,)"),
        "wrong architecture": lambda c: (ev(c.spec("arch", architecture="small-cnn")), "does not match the architecture"),
        "checkpoint without tensors": lambda c: (ev(c.checkpoint("no-tensors", ".safetensors", {})), "missing keys"),
        "integer weights": lambda c: (ev(c.checkpoint("ints", ".safetensors", c.bias(torch.int64, 0))), "dtype torch.int64"),
        "NaN weights": lambda c: (ev(c.checkpoint("nan", ".safetensors", c.bias(torch.float32, NAN))), "NaN or Inf"),
        "Inf weights": lambda c: (ev(c.checkpoint("inf", ".safetensors", c.bias(torch.float32, float("inf")))), "NaN or Inf"),
        "unknown format": lambda c: (ev(c.checkpoint("weights", ".h5", b"\x89HDF")), "unknown checkpoint format"),
        "missing checkpoint": lambda c: (ev(c.spec("missing", checkpoint=str(c.root / "absent.safetensors"))), "not found"),
        "checkpoint name of 300 characters": lambda c: (ev(c.spec("long", checkpoint=str(c.root / f"{'w' * 300}.safetensors"))), "not found"),
        "checkpoint path with a newline": lambda c: (ev(c.spec("newline", checkpoint=str(c.root / "two\nlines.safetensors"))), "two\\nlines"),
        "sha256 pin differs": lambda c: (ev(c.spec("pin", sha256="0" * 64)), "pins 0000"),
    },
    "configs": {
        "missing model.yaml": lambda c: (ev(str(c.root / "nope.yaml")), "no such file"),
        "malformed YAML": lambda c: (ev(c.text("malformed", "name: x\ndataset: [unclosed\n")), "malformed YAML at line 3"),
        "YAML tag that would run code": lambda c: (ev(c.text("tag", f"name: !!python/object/apply:os.system ['touch {c.marker}']\n")), "malformed YAML"),
        "YAML that is not a mapping": lambda c: (ev(c.text("list", "- name\n- dataset\n")), "expected a mapping"),
        "YAML duplicate key drops a pin": lambda c: (ev(c.text("duplicate", f"sha256: {'0' * 64}\n{c.spec_text()}sha256: null\n")), "duplicate key 'sha256'"),
        "YAML non-string key": lambda c: (ev(c.text("int-key", f"1: one\n{c.spec_text()}")), "key 1 is not a string"),
        "YAML nested 5,000 deep": lambda c: (ev(c.text("deep", f"{c.spec_text()}architecture_kwargs: {{a: {'[' * 5000}{']' * 5000}}}\n")), "nested deeper than"),
        "YAML aliases expanding to 80,000 characters": lambda c: (ev(c.text("aliases", f"{c.spec_text(dataset='tsipras')}dataset_kwargs: {{d: {_aliases_expanding_to(80_000)}}}\n")), "tsipras needs"),
        "unknown key": lambda c: (ev(c.spec("key", checkpoints="x")), "unknown key 'checkpoints'"),
        "wrong type (list)": lambda c: (ev(c.spec("type", threat_models="linf")), "key 'threat_models'"),
        "wrong type (mapping)": lambda c: (ev(c.spec("kwargs", architecture_kwargs="wide")), "key 'architecture_kwargs'"),
        "name climbs out": lambda c: (ev(c.spec("climb", name="../../etc/x")), "key 'name'"),
        "name is ..": lambda c: (ev(c.spec("dots", name="..")), "key 'name'"),
        "name has a separator": lambda c: (ev(c.spec("slash", name="a/b")), "key 'name'"),
        "name with a newline": lambda c: (ev(c.spec("name-newline", name="a\nb")), "key 'name'"),
        "zero std": lambda c: (ev(c.spec("std", normalization={"mean": [0.5], "std": [0.0]})), "std must be positive"),
        "unknown architecture": lambda c: (ev(c.spec("unknown-arch", architecture="resnet-9000")), "unknown architecture 'resnet-9000'"),
        "unknown architecture argument": lambda c: (ev(c.spec("arch-kwarg", architecture_kwargs={"depth": 3})), "rejected its arguments"),
        "architecture argument out of range": lambda c: (ev(c.spec("dropout", architecture="small-cnn", architecture_kwargs={"drop_rate": 5})), "rejected its arguments"),
        "negative number of classes": lambda c: (ev(c.spec("negative", architecture_kwargs={"num_classes": -5})), "rejected its arguments"),
        "negative input shape": lambda c: (ev(c.spec("negative-shape", architecture_kwargs={"input_shape": [-1, 28, 28]})), "rejected its arguments"),
        "10^13 classes": lambda c: (ev(c.spec("huge-classes", architecture_kwargs={"num_classes": 10**13})), "parameters, over the limit"),
        "unknown dataset": lambda c: (ev(c.spec("unknown-data", dataset="imagenet-9000")), "unknown dataset 'imagenet-9000'"),
        "unknown dataset argument": lambda c: (ev(c.spec("data-kwarg", dataset_kwargs={"colour": True})), "rejected dataset_kwargs"),
        "tsipras eta that is a word": lambda c: (ev(c.spec("eta", dataset="tsipras", dataset_kwargs={"eta": "abc"})), "tsipras needs"),
        "tsipras fractional d": lambda c: (ev(c.spec("d-float", dataset="tsipras", dataset_kwargs={"d": 2.5})), "tsipras needs"),
        "tsipras d of 10^9": lambda c: (ev(c.spec("d-huge", dataset="tsipras", dataset_kwargs={"d": 10**9})), "tsipras needs"),
        "tsipras n of 10^13": lambda c: (ev(c.spec("n-huge", dataset="tsipras", dataset_kwargs={"n": 10**13})), "tsipras needs"),
        "tsipras infinite eta": lambda c: (ev(c.spec("eta-inf", dataset="tsipras", dataset_kwargs={"eta": float("inf")})), "tsipras needs"),
        "npz header claiming 10^13 examples": lambda c: (ev(c.npz("claims", (10**13, 28, 28))), "claims"),
        "hub repo id ending in .git": lambda c: (ev(c.spec("git", checkpoint="hf://a/b.git@main/model.safetensors")), "cannot end by '.git'"),
        "hub repo id with non-ASCII letters": lambda c: (ev(c.spec("ascii", checkpoint="hf://\u00e4/b@main/model.safetensors")), "key 'checkpoint'"),
        "hub repo id with --": lambda c: (ev(c.spec("dashes", checkpoint="hf://a/b--c@main/model.safetensors")), "key 'checkpoint'"),
        "dataset/threat-model mismatch": lambda c: (ev(c.spec("mismatch", threat_models=["l1"])), "has no threat model 'l1'"),
        "YAML file of 5 MB (a million-entry normalization list)": lambda c: (ev(c.text("million", c.spec_text(normalization={"mean": [0.5] * 10**6, "std": [0.5] * 10**6}))), "over the limit of 65,536"),
        "normalization list of 2,000 entries": lambda c: (ev(c.spec("channels", normalization={"mean": [0.5] * 2000, "std": [0.5] * 2000})), "key 'normalization.mean'"),
        "model.yaml that is a FIFO": lambda c: (ev(_fifo(c.root / "fifo.yaml")), "not a regular file"),
        "model.yaml linked to /dev/zero": lambda c: (ev(_symlink(c.root / "zero.yaml", "/dev/zero")), "not a regular file"),
        "wide-resnet of depth 1000000": lambda c: (ev(c.spec("deep-wrn", architecture="wide-resnet", architecture_kwargs={"depth": 1000000})), "builds over 500 modules", _module_limit),
    },
    "options": {
        "negative eps": lambda c: (ev(str(c.good_yaml), "--threat-model", "linf", "--eps", "-1"), "--eps must be a positive"),
        "zero eps": lambda c: (ev(str(c.good_yaml), "--threat-model", "linf", "--eps", "0"), "--eps must be a positive"),
        "NaN eps": lambda c: (ev(str(c.good_yaml), "--threat-model", "linf", "--eps", "nan"), "--eps must be a positive"),
        "absurd eps": lambda c: (ev(str(c.good_yaml), "--threat-model", "linf", "--eps", "50"), "over 100x"),
        "unknown threat model": lambda c: (ev(str(c.good_yaml), "--threat-model", "l1"), "has no threat model 'l1'"),
        "unknown attack": lambda c: (ev(str(c.good_yaml), "--attacks", "pgdd"), "unknown attack 'pgdd'"),
        "no attacks": lambda c: (ev(str(c.good_yaml), "--attacks", ","), "--attacks is empty"),
        "zero examples": lambda c: (ev(str(c.good_yaml), "--n-examples", "0"), "--n-examples must be a positive"),
        "zero batch size": lambda c: (ev(str(c.good_yaml), "--batch-size", "0"), "--batch-size must be a positive integer or 'auto', got 0"),
        "batch size that is a word": lambda c: (ev(str(c.good_yaml), "--batch-size", "big"), "--batch-size must be a positive integer or 'auto', got 'big'"),
        "batch size 1e20": lambda c: (ev(str(c.good_yaml), "--batch-size", "1e20"), "--batch-size must be a positive integer or 'auto', got '1e20'"),
        "batch size 10^20": lambda c: (ev(str(c.good_yaml), "--batch-size", str(10**20)), "--batch-size must be at most"),
        "negative seed": lambda c: (ev(str(c.good_yaml), "--seed", "-1"), "--seed must be between"),
        "seed 1e3": lambda c: (ev(str(c.good_yaml), "--seed", "1e3"), "argument --seed: invalid int value: '1e3'"),
        "missing train config": lambda c: (["train", str(c.root / "none.yaml")], "no such file"),
        "threads 1000000": lambda c: (ev(str(c.good_yaml), "--threads", "1000000"), "--threads must be at most 4096"),
    },
    "writing": {
        "results folder is a file": lambda c: (ev(str(c.good_yaml), "--results-dir", str(c.good_yaml)), "cannot write"),
        "full disk": lambda c: (ev(str(c.good_yaml)), "No space left on device", _full_disk),
    },
    "queue": {  # a bad option changes no request
        "queue run with an unknown attack": lambda c: (run_queue(c, "q-attack", "--attacks", "pgdd"), "unknown attack 'pgdd'"),
        "queue run with zero examples": lambda c: (run_queue(c, "q-examples", "--n-examples", "0"), "--n-examples must be a positive"),
        "queue run with CUDA absent": lambda c: (run_queue(c, "q-cuda", "--device", "cuda"), "no CUDA GPU is available"),
        "queue run with an unknown device": lambda c: (run_queue(c, "q-device", "--device", "tpu"), "unknown device 'tpu'"),
        "queue run with zero batch size": lambda c: (run_queue(c, "q-batch", "--batch-size", "0"), "--batch-size must be a positive"),
        "queue run with a negative seed": lambda c: (run_queue(c, "q-seed", "--seed", "-1"), "--seed must be between"),
        "queue status with a file as the folder": lambda c: (["queue", "status", "--queue-dir", str(c.good_yaml)],
                                                             f"queue folder '{c.good_yaml}' is a file, not a folder: pass the folder "
                                                             "holding the request files (--queue-dir)"),
        "queue run with a file as the folder": lambda c: (["queue", "run", "--queue-dir", str(c.good_yaml)],
                                                          f"queue folder '{c.good_yaml}' is a file, not a folder"),
    },
    "models": {
        "wrong number of classes": lambda c: (ev(c.spec("classes", architecture="hostile-wrong-classes")), "expected logits of shape (20, 10)"),
        "NaN outputs": lambda c: (ev(c.spec("nan-out", architecture="hostile-nan")), "NaN or Inf logits"),
        "changes its input in place": lambda c: (ev(c.spec("in-place", architecture="hostile-in-place")), "changes its input in place"),
        "returns a tuple": lambda c: (ev(c.spec("tuple", architecture="hostile-tuple")), "not a tensor of logits"),
        "forward crashes": lambda c: (ev(c.spec("crash", architecture="hostile-crash")), "the model failed on test inputs"),
        "switches itself to training": lambda c: (ev(c.spec("trains", architecture="hostile-trains-itself")), "switches itself to training"),
    },
    "records": {  # records and adversarial-example files from strangers, through `verify`
        "record holding a 5,000-digit integer": lambda c: (c.verify("r-int", _huge_integer), "an integer of 5,000 digits"),
        "record nested 200,000 levels deep": lambda c: (c.verify("r-deep", _deeply_nested), "nested deeper than 64 levels"),
        "record linked to /dev/zero": lambda c: (_record_linked_to_dev_zero(c.verify("r-zero")), "the record is not a regular file"),
        "record of 5 MB": lambda c: (c.verify("r-big", lambda t: t.replace('"notes": [', '"notes": ["' + "x" * 5 * 2**20 + '",', 1)), "over the limit of 4,194,304"),
        "adversarial file that is a FIFO": lambda c: (c.verify("a-fifo", adversarial=os.mkfifo), "adversarial-example file is not a regular file"),
        "adversarial file linked to /dev/zero": lambda c: (c.verify("a-zero", adversarial=_link("/dev/zero")), "adversarial-example file is not a regular file"),
        "npz header claiming 10^11 floats": lambda c: (c.verify("a-claims", _count(1), adversarial=_claims_1e11_floats), "x_adv has shape (127551020, 1, 28, 28), expected (1, 1, 28, 28)"),
        "zip bomb (256 MiB of zeros for 3 examples)": lambda c: (c.verify("a-bomb", _count(3), adversarial=_zip_bomb), "x_adv holds more bytes than its header's 9,408"),
    },
    "data": {
        "corrupt dataset file": lambda c: (ev(str(c.good_yaml), "--data-dir", c.data_dir("corrupt", lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:])), "corrupt or truncated"),
        "truncated dataset file": lambda c: (ev(str(c.good_yaml), "--data-dir", c.data_dir("truncated", lambda b: b[: len(b) // 2])), "corrupt or truncated"),
        "labels out of range": lambda c: (ev(c.spec("labels", dataset="labels-out-of-range")), "labels fall outside"),
    },
}
CASES = {name: case for cases in CASES_BY_CLASS.values() for name, case in cases.items()}


def _fifo(path: Path) -> str:
    os.mkfifo(path)
    return str(path)


def _symlink(path: Path, target: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return str(path)


def _self_referential() -> dict:
    state: dict = {}
    state["state_dict"] = state
    return state


def _snapshot(*roots: Path, folders: bool = True) -> dict[Path, bytes]:
    """Every file's bytes (and every folder) under ``roots``."""
    return {
        path: path.read_bytes() if path.is_file() else b"<folder>"
        for root in roots for path in root.rglob("*") if folders or path.is_file()
    }


@pytest.fixture(scope="module")
def corpus(linear_submission, tmp_path_factory) -> Corpus:
    return Corpus(tmp_path_factory.mktemp("corpus"), linear_submission)


def test_the_corpus_covers_every_class(corpus):
    """Every class of hostile input has cases, no case name is in two classes, and every hostile model has a case."""
    classes = ("checkpoints", "configs", "options", "writing", "queue", "models", "records", "data")
    assert {label: len(cases) > 0 for label, cases in CASES_BY_CLASS.items()} == {label: True for label in classes}
    assert len(CASES) == sum(len(cases) for cases in CASES_BY_CLASS.values())
    evaluated = {yaml.safe_load(Path(case(corpus)[0][1]).read_text())["architecture"]
                 for case in CASES_BY_CLASS["models"].values()}
    assert evaluated == {f"hostile-{name}" for name in HOSTILE_MODELS}


#: cases that take seconds (writing two million floats as YAML; compressing 256 MiB of zeros): the slow tier runs them
SLOW_CASES = {"YAML file of 5 MB (a million-entry normalization list)", "zip bomb (256 MiB of zeros for 3 examples)"}


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name in SLOW_CASES else name for name in CASES])
def test_hostile_case(name, corpus, tmp_path, monkeypatch, capsys):
    """Exit 2, one line naming the problem, no traceback, nothing written anywhere, no code run."""
    if "CUDA" in name and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    args, fragment, *patch = CASES[name](corpus)
    monkeypatch.chdir(tmp_path)  # relative defaults (results/, queue/) land here
    extra = ["--device", "cpu", "--n-examples", "20"] if args[0] == "evaluate" else []
    roots = (corpus.root, corpus.good_yaml.parent, tmp_path)
    before = _snapshot(*roots, folders=not patch)
    for apply in patch:
        apply(monkeypatch)
    code = main([args[0], *extra, *args[1:]])  # a case's own options come last, so they win
    monkeypatch.undo()
    captured = capsys.readouterr()
    # off a terminal, progress lines (what runs, each stage) may come first; the error is one line, the last
    *progress, error = captured.err.strip().splitlines()
    assert code == 2 and error.startswith("robbench: error: "), captured.err
    assert all(line.startswith("robbench: ") and "error" not in line and "Traceback" not in line for line in progress)
    lines = [error]
    assert fragment in lines[0] and len(lines[0]) <= 600, lines[0]
    assert not captured.out
    assert _snapshot(*roots, folders=not patch) == before
    assert not corpus.marker.exists()


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
