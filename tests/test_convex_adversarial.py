"""Wong & Kolter's provably robust CNNs (github.com/locuslab/convex_adversarial): the architecture's
keys, the committed checkpoints and the recipe that extracts a cascade's first stage."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import robbench
from robbench.config import load_model_spec
from robbench.digests import file_digest
from robbench.loader import load_submission
from robbench.models import create_model

from .helpers import REPO

SUBMISSIONS = {
    "mnist": REPO / "submissions" / "mnist" / "convex-small-wong-scaled",
    "fashion-mnist": REPO / "submissions" / "fashion-mnist" / "convex-small-wong-kolter",
    "cifar10": REPO / "submissions" / "cifar10" / "convex-small-wong-scaled",
}

#: names and shapes of the 8 tensors of models/fashion_mnist.pth and of each stage of
#: models_scaled/mnist_small_0_3.pth (read from the files): nn.Sequential indices, Flatten at 4
SMALL_28 = {
    "0.weight": (16, 1, 4, 4), "0.bias": (16,), "2.weight": (32, 16, 4, 4), "2.bias": (32,),
    "5.weight": (100, 1568), "5.bias": (100,), "7.weight": (10, 100), "7.bias": (10,),
}
#: examples/problems.py's mnist_model_large: convs at 0, 2, 4, 6, Flatten at 8, linears at 9, 11, 13
LARGE_28 = {
    "0.weight": (32, 1, 3, 3), "0.bias": (32,), "2.weight": (32, 32, 4, 4), "2.bias": (32,),
    "4.weight": (64, 32, 3, 3), "4.bias": (64,), "6.weight": (64, 64, 4, 4), "6.bias": (64,),
    "9.weight": (512, 3136), "9.bias": (512,), "11.weight": (512, 512), "11.bias": (512,),
    "13.weight": (10, 512), "13.bias": (10,),
}


def _shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_convex_small_and_large_have_exactly_the_published_sequential_keys():
    assert _shapes(create_model("convex-small")) == SMALL_28
    assert _shapes(create_model("convex-large")) == LARGE_28
    cifar = _shapes(create_model("convex-small", input_shape=(3, 32, 32)))
    assert cifar["0.weight"] == (16, 3, 4, 4) and cifar["5.weight"] == (100, 2048)  # cifar_small_8px.pth
    model = create_model("convex-small")
    published = {k: torch.randn(shape) for k, shape in SMALL_28.items()}
    model.load_state_dict(published, strict=True)
    published.pop("7.bias")
    with pytest.raises(RuntimeError, match="Missing key"):
        model.load_state_dict(published, strict=True)
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize(
    ("dataset", "sha256"),
    [  # independent source: sha256sum of the published blob, or of the file extract_convex_cascade.py writes
        ("fashion-mnist", "b90cca41cc42b427d5ba1d1c10d90a5a8b6b5219538a3a4d1c6f825d3f612bc5"),  # blob f5efeb0
        ("mnist", "ee7f6c27794712408d332fdb99f010ec7bbd9f8049f27e78aad193e589a8de63"),  # stage 0 of blob f0cc721
        ("cifar10", "6948e46cbdc145968b3d1c9115cc04b2e24ca60f3e41b5885ffe473999cc078d"),  # stage 0 of blob 8586acc
    ],
)
def test_each_committed_checkpoint_is_pinned_and_loads_strictly(dataset, sha256):
    folder = SUBMISSIONS[dataset]
    spec = load_model_spec(folder / "model.yaml")
    assert spec.sha256 == sha256 and spec.architecture == "convex-small"
    loaded = load_submission(spec)  # strict keys and shapes, and the pin, or a RobbenchError
    assert loaded.checkpoint.sha256 == sha256
    license_text = (folder / "LICENSE").read_text(encoding="utf-8")
    assert license_text.startswith("MIT License") and "Copyright (c) 2018 Eric Wong" in license_text


@pytest.mark.slow
def test_the_fashion_mnist_model_classifies_7827_of_the_10000_bundled_test_images():
    # identifies the file: measured when it was added (78.27 %), the whole bundled test set
    loaded = load_submission(load_model_spec(SUBMISSIONS["fashion-mnist"] / "model.yaml"))
    x, y = robbench.load_dataset("fashion-mnist", split="test")
    with torch.no_grad():
        predicted = torch.cat([loaded.model(batch).argmax(1) for batch in x.split(1000)])
    assert int((predicted == y).sum()) == 7827


def _extract_module():
    spec = importlib.util.spec_from_file_location("extract_convex_cascade", REPO / "submissions" / "extract_convex_cascade.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_cascade(tmp_path):
    """A checkout holding a cascade checkpoint shaped like the published ones, with its digest pinned."""
    stages = [{k: torch.randn(shape) for k, shape in SMALL_28.items()} for _ in range(3)]
    source_path = "models_scaled/mnist_small_0_3.pth"
    original = tmp_path / "checkout" / source_path
    original.parent.mkdir(parents=True)
    torch.save({"state_dict": stages, "err": 0.3364, "epoch": 22, "sampler_indices": [torch.arange(5)]}, original)
    (tmp_path / "out" / "mnist" / "convex-small-wong-scaled").mkdir(parents=True)
    return stages, {"mnist/convex-small-wong-scaled": (source_path, file_digest(original))}


def test_the_extraction_writes_stage_0_unchanged_and_then_checks_it(tmp_path, monkeypatch, capsys):
    extract = _extract_module()
    stages, sources = _fake_cascade(tmp_path)
    monkeypatch.setattr(extract, "SOURCES", sources)
    monkeypatch.setattr(extract, "HERE", tmp_path / "out")
    assert extract.main(["--from", str(tmp_path / "checkout")]) == 0
    written = tmp_path / "out" / "mnist" / "convex-small-wong-scaled" / "model.safetensors"
    state = load_file(str(written))
    assert state.keys() == stages[0].keys() and all(torch.equal(state[k], stages[0][k]) for k in state)
    with safe_open(str(written), "pt") as handle:
        assert handle.metadata()["cascade_stage"] == "0"
        assert handle.metadata()["source_sha256"] == sources["mnist/convex-small-wong-scaled"][1]
    assert extract.main(["--from", str(tmp_path / "checkout")]) == 0  # a second run checks instead of writing
    assert "holds stage 0 of models_scaled/mnist_small_0_3.pth" in capsys.readouterr().out
    # a committed file that is not stage 0 (here: stage 1) is an error
    save_file(stages[1], str(written))
    assert extract.main(["--from", str(tmp_path / "checkout")]) == 1
    assert "does not hold stage 0" in capsys.readouterr().err


def test_a_published_file_with_another_digest_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    extract = _extract_module()
    _, sources = _fake_cascade(tmp_path)
    monkeypatch.setattr(extract, "SOURCES", {k: (path, "0" * 64) for k, (path, _) in sources.items()})
    monkeypatch.setattr(extract, "HERE", tmp_path / "out")
    assert extract.main(["--from", str(tmp_path / "checkout")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the pin is 0000000000" in err and "refusing it" in err
    assert not list((tmp_path / "out").rglob("*.safetensors")) and not list((tmp_path / "out").rglob("*.part"))
