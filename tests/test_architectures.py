"""CIFAR architectures: state-dict layouts of the field's checkpoints, and a real third-party checkpoint."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from robbench import create_model
from robbench.checkpoints import load_weights
from robbench.config import load_model_spec
from robbench.data import sources
from robbench.errors import RobbenchError
from robbench.attacks import AttackRules
from robbench.evaluation import run_attacks
from robbench.loader import load_submission
from robbench.threat_models import get_threat_model

from .helpers import REPO

PYAUTOATTACK = Path(importlib.util.find_spec("pyautoattack").submodule_search_locations[0])
EXAMPLES = PYAUTOATTACK / "examples"
SUBMISSION = REPO / "submissions" / "cifar10" / "autoattack-resnet18" / "model.yaml"
SHARED = sources.shared_dirs("cifar10")


def _reference_resnet18() -> torch.nn.Module:
    """The ResNet-18 class that AutoAttack's eval.py builds (its own file, not robbench's code)."""
    spec = importlib.util.spec_from_file_location("autoattack_example_resnet", EXAMPLES / "resnet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ResNet18()


def _layout(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def test_resnet18_has_the_layout_of_autoattacks_resnet18():
    assert _layout(create_model("resnet18")) == _layout(_reference_resnet18())
    assert sum(p.numel() for p in create_model("resnet18").parameters()) == 11_173_962


def test_preact_resnet18_has_wong_et_al_layout():
    layout = _layout(create_model("preact-resnet18"))
    assert layout["conv1.weight"] == (64, 3, 3, 3) and "bn1.weight" not in layout
    assert layout["layer1.0.bn1.weight"] == (64,) and "layer1.0.shortcut.0.weight" not in layout
    assert layout["layer2.0.bn1.weight"] == (64,) and layout["layer2.0.shortcut.0.weight"] == (128, 64, 1, 1)
    assert "layer2.0.shortcut.1.weight" not in layout  # a bare convolution, no batch-norm
    assert layout["bn.weight"] == (512,) and layout["linear.weight"] == (10, 512)


@pytest.mark.parametrize(("depth", "parameters"), [(28, 36_479_194), (34, 46_160_474)])
def test_wide_resnet_has_robustbench_layout_and_size(depth, parameters):
    with torch.device("meta"):  # no memory for 46M parameters
        model = create_model("wide-resnet", depth=depth, widen_factor=10)
    layout = _layout(model)
    blocks = (depth - 4) // 6
    assert layout["block1.layer.0.convShortcut.weight"] == (160, 16, 1, 1)
    assert f"block1.layer.{blocks - 1}.conv2.weight" in layout and f"block1.layer.{blocks}.conv1.weight" not in layout
    assert "block1.layer.1.convShortcut.weight" not in layout
    assert layout["bn1.weight"] == (640,) and layout["fc.weight"] == (10, 640) and "fc.bias" in layout
    assert sum(p.numel() for p in model.parameters()) == parameters


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("resnet18", {"width": 4}), ("preact-resnet18", {"width": 4}), ("wide-resnet", {"depth": 10, "widen_factor": 1})],
)
def test_tiny_versions_train_on_colour_and_grey_images(name, kwargs):
    for shape in ((3, 32, 32), (1, 28, 28)):
        model = create_model(name, input_shape=shape, num_classes=7, **kwargs)
        x = torch.rand(2, *shape, requires_grad=True)
        logits = model(x)
        assert logits.shape == (2, 7)
        logits.sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()


def test_wide_resnet_refuses_an_impossible_depth():
    with pytest.raises(RobbenchError, match="depth = 6n"):
        create_model("wide-resnet", depth=27)


@pytest.mark.slow
@pytest.mark.skipif(not SHARED, reason="no shared/data/cifar10 folder near the working directory or checkout")
def test_autoattacks_checkpoint_loads_as_is_and_its_clean_accuracy_is_exact(tmp_path):
    """937 of CIFAR-10 test images 0..999, by robbench and by a plain PyTorch loop alike."""
    checkpoint = EXAMPLES / "model_test.pt"
    pinned = yaml.safe_load(SUBMISSION.read_text())
    model = create_model("resnet18")
    assert load_weights(model, checkpoint) == pinned["sha256"]  # no key renamed, nothing converted

    spec = {**pinned, "checkpoint": str(checkpoint)}
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(spec))
    loaded = load_submission(load_model_spec(tmp_path / "model.yaml"))  # what `robbench evaluate` runs, minus its flags
    x_test, y_test = loaded.dataset.load("test", 1000)
    outcome = run_attacks(
        loaded.model, x_test, y_test, rules=AttackRules(get_threat_model(loaded.dataset, "linf"), (0.0, 1.0), 10),
        attacks=[], batch_size=250,
    )
    assert outcome.n_examples == 1000

    reference = _reference_resnet18()  # eval.py's way: its own class, torch.load, ToTensor-style [0, 1] inputs
    reference.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    reference.eval()
    data = np.load(SHARED[0] / "test-0-999.npz")
    x = torch.from_numpy(data["x"]).permute(0, 3, 1, 2).float().div(255)
    y = torch.from_numpy(data["y"])
    with torch.inference_mode():
        correct = sum(int((reference(x[i : i + 250]).argmax(1) == y[i : i + 250]).sum()) for i in range(0, 1000, 250))
    assert correct == 937
    assert round(outcome.clean_accuracy * 1000) == correct
