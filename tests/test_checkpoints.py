from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

from robbench.checkpoints import load_weights, read_state_dict
from robbench.errors import RobbenchError
from robbench.models import create_model

from .helpers import RunsCode


def test_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"weight": RunsCode(marker)}, handle)
    with pytest.raises(RobbenchError, match="never unpickles"):
        read_state_dict(path)
    assert not marker.exists()


def test_torch_save_checkpoint_with_wrapper_prefix_loads(tmp_path):
    model = create_model("linear", input_shape=(4,), num_classes=3)
    path = tmp_path / "w.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 3}, path)
    fresh = create_model("linear", input_shape=(4,), num_classes=3)
    digest = load_weights(fresh, path)
    assert len(digest) == 64
    assert torch.equal(fresh[1].weight, model[1].weight)


def test_shape_mismatch_names_the_key(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file(create_model("linear", input_shape=(5,), num_classes=3).state_dict(), str(path))
    with pytest.raises(RobbenchError, match=r"1\.weight has shape \(3, 5\), the architecture expects \(3, 4\)"):
        load_weights(create_model("linear", input_shape=(4,), num_classes=3), path)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"fc.weight": torch.zeros(3, 4)}, str(path))
    with pytest.raises(RobbenchError, match=r"missing keys 1\.bias, 1\.weight; unexpected keys fc\.weight"):
        load_weights(create_model("linear", input_shape=(4,), num_classes=3), path)


def test_fake_safetensors_and_nan_weights_are_refused(tmp_path):
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"this is not a safetensors file at all")
    with pytest.raises(RobbenchError, match="not a valid safetensors file"):
        read_state_dict(fake)
    model = create_model("linear", input_shape=(4,), num_classes=3)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["1.weight"][0, 0] = float("nan")
    path = tmp_path / "nan.safetensors"
    save_file(state, str(path))
    with pytest.raises(RobbenchError, match="NaN or Inf"):
        load_weights(model, path)


def test_loaded_submission_runs_channels_last_and_predicts_as_the_plain_model(tmp_path):
    """The loader's layout change is a speed-up only: same weights, same predictions."""
    from robbench.config import load_model_spec
    from robbench.loader import load_submission

    from .helpers import write_submission

    torch.manual_seed(0)
    plain = create_model("small-cnn", input_shape=(1, 28, 28), num_classes=10).eval()
    spec = write_submission(tmp_path / "sub", "layout-check", "small-cnn", plain.state_dict())
    loaded = load_submission(load_model_spec(spec)).model
    convs = [m for m in loaded.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    assert not all(c.weight.is_contiguous() for c in convs)  # really another layout, not a 1x1 no-op
    x = torch.rand(64, 1, 28, 28)
    with torch.inference_mode():
        expected, got = plain(x), loaded(x)
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.equal(got.argmax(1), expected.argmax(1))
