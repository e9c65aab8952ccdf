from __future__ import annotations

import subprocess
import sys
import types
from importlib.metadata import EntryPoint

import pytest
import torch

import robbench
from robbench import registry as registry_module
from robbench.errors import RobbenchError
from robbench.data import DATASETS
from robbench.models import ARCHITECTURES


def test_import_robbench_loads_no_architecture_or_torch():
    code = (
        "import sys, robbench; "
        "print(sorted(m for m in sys.modules if m.startswith('robbench')), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['robbench'] False"


@pytest.mark.slow
def test_evaluating_local_weights_imports_no_hub_client(linear_submission):
    """huggingface_hub and its HTTP stack load only for hf:// weights (GPU hosts often lack them)."""
    code = (
        "import sys; from robbench import evaluate; "
        f"evaluate({str(linear_submission)!r}, threat_models='linf', attacks=[], n_examples=5, device='cpu'); "
        "print([m for m in ('huggingface_hub', 'httpx2', 'robbench.hub') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_create_model_builds_registered_architectures():
    model = robbench.create_model("small-cnn", num_classes=10)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    linear = robbench.create_model("linear", input_shape=(3, 4), num_classes=5)
    assert linear(torch.zeros(2, 3, 4)).shape == (2, 5)


def test_unknown_name_lists_known_ones():
    with pytest.raises(RobbenchError) as info:
        robbench.create_model("small_cnn")
    message = str(info.value)
    assert "unknown architecture 'small_cnn'" in message
    assert "did you mean 'small-cnn'" in message
    assert "linear" in message and "\n" not in message


def test_entry_point_plugin_is_loaded_only_when_asked(monkeypatch):
    plugin = types.ModuleType("robbench_test_plugin")
    calls = []

    def tiny(input_shape=(1, 28, 28), num_classes=10):
        """A plugin architecture."""
        calls.append(num_classes)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, num_classes))

    plugin.tiny = tiny
    monkeypatch.setitem(sys.modules, "robbench_test_plugin", plugin)
    point = EntryPoint(name="tiny-plugin", value="robbench_test_plugin:tiny", group="robbench.architectures")
    monkeypatch.setattr(
        registry_module, "entry_points", lambda group: [point] if group == "robbench.architectures" else []
    )
    monkeypatch.delitem(ARCHITECTURES._entries, "tiny-plugin", raising=False)
    assert "tiny-plugin" in ARCHITECTURES.names()
    assert "tiny-plugin" not in ARCHITECTURES._entries  # listed, not imported
    model = robbench.create_model("tiny-plugin", num_classes=3)
    assert calls == [3] and model(torch.zeros(1, 1, 28, 28)).shape == (1, 3)
    ARCHITECTURES._entries.pop("tiny-plugin")


def test_broken_plugin_is_a_one_line_error(monkeypatch):
    point = EntryPoint(name="broken", value="no_such_module_xyz:thing", group="robbench.datasets")
    monkeypatch.setattr(registry_module, "entry_points", lambda group: [point] if group == "robbench.datasets" else [])
    with pytest.raises(RobbenchError, match="failed to import"):
        robbench.load_dataset("broken")


def test_list_shows_every_kind(capsys):
    """One row per registered entry, under its kind; each dataset's row names its threat models."""
    from robbench.attacks import ATTACKS
    from robbench.cli import main
    from robbench.data import threat_models_text

    assert main(["list"]) == 0
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in capsys.readouterr().out.splitlines()
             if line.startswith("│ ")]
    listed = {(row[0], row[1]) for row in cells if row[0]}
    expected = {(registry.kind, entry.name) for registry in (ARCHITECTURES, DATASETS, ATTACKS) for entry in registry.entries()}
    assert {kind for kind, _ in expected} == {"architecture", "dataset", "attack"}
    assert listed == expected
    description = " ".join(" ".join(row[3:]) for row in cells).replace("  ", " ")
    for entry in DATASETS.entries():
        assert f"[threat models: {threat_models_text(entry.name)}]" in description


def _plugins(monkeypatch, wanted: str, *points: EntryPoint) -> None:
    monkeypatch.setattr(registry_module, "entry_points", lambda group: list(points) if group == wanted else [])


def test_list_survives_a_broken_plugin_and_names_it(monkeypatch, capsys):
    from robbench.cli import main

    _plugins(monkeypatch, "robbench.datasets", EntryPoint(name="broken", value="no_such_module_xyz:thing", group="robbench.datasets"))
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "small-cnn" in out and "fashion-mnist" in out and "pgd" in out  # the rest is listed
    broken = [e for e in DATASETS.entries() if e.name == "broken"]
    assert len(broken) == 1 and broken[0].factory is None
    assert "failed to import" in broken[0].description and "no_such_module_xyz" in broken[0].description


def test_plugin_with_a_built_in_name_is_ignored_with_a_warning(monkeypatch, caplog):
    plugin = types.ModuleType("robbench_test_shadow")
    plugin.impostor = lambda input_shape=(1, 28, 28), num_classes=10: torch.nn.Identity()
    monkeypatch.setitem(sys.modules, "robbench_test_shadow", plugin)
    _plugins(monkeypatch, "robbench.architectures",
             EntryPoint(name="small-cnn", value="robbench_test_shadow:impostor", group="robbench.architectures"))
    monkeypatch.setattr(ARCHITECTURES, "_warned", set())
    with caplog.at_level("WARNING", logger="robbench"):
        entry = ARCHITECTURES.get("small-cnn")
    assert entry.source == "built-in" and entry.factory is not plugin.impostor
    assert any("'small-cnn'" in r.getMessage() and "built-in is used" in r.getMessage() for r in caplog.records)
    listed = [e for e in ARCHITECTURES.entries() if e.name == "small-cnn"]
    assert [e.source for e in listed] == ["built-in", "robbench_test_shadow"]
    assert "built-in is used" in listed[1].description
