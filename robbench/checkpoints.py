"""Loading weights safely: checkpoints are data, never code.

``.safetensors`` is preferred; ``.pt``/``.pth`` are read only with ``torch.load(weights_only=True)``,
which refuses any pickle that would construct objects other than tensors and containers.
Keys are matched strictly; common wrapper prefixes (``module.``, ``model.``) are removed
generically, by comparing with the model's own keys, never by model name.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch
from torch import nn

from .digests import file_digest
from .errors import RobbenchError, exception_summary, quoted

WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.")  # DataParallel, wrappers, torch.compile
NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model", "net")
SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a checkpoint file, without running any code it might contain."""
    try:
        found = path.is_file()
    except OSError as exc:  # e.g. a file name longer than the file system allows
        raise RobbenchError(f"checkpoint {quoted(path)} not found ({exc.strerror}); check the 'checkpoint' path in model.yaml") from exc
    if not found:
        raise RobbenchError(f"checkpoint {quoted(path)} not found; check the 'checkpoint' path in model.yaml")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise RobbenchError(f"{path} is not a valid safetensors file ({exception_summary(exc)}); re-export the weights") from exc
    elif suffix in PICKLE_SUFFIXES:
        try:
            with warnings.catch_warnings():  # torch warns about pickle protocols; the error below says it all
                warnings.simplefilter("ignore", UserWarning)
                loaded = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise RobbenchError(
                f"{path} holds objects other than tensors, which robbench never unpickles; "
                "save a plain state_dict, preferably as .safetensors"
            ) from exc
        except Exception as exc:  # the unpickler's own failures on malformed bytes: IndexError, KeyError, struct.error, ...
            raise RobbenchError(f"{path} is not a readable PyTorch checkpoint ({exception_summary(exc)}); re-export the weights") from exc
        state = _unwrap(loaded, path)
    else:
        raise RobbenchError(f"{path}: unknown checkpoint format {quoted(suffix)}; use .safetensors (or .pt with a state_dict)")
    for key, tensor in state.items():
        if tensor.layout != torch.strided or tensor.device.type != "cpu":  # sparse, or meta (shapes without data)
            raise RobbenchError(
                f"{path}: {quoted(key)} is not a dense tensor with data ({tensor.layout}, {tensor.device}); save dense tensors"
            )
    return state


def _unwrap(loaded: object, path: Path, depth: int = 0) -> dict[str, torch.Tensor]:
    """Accept a state_dict, or a training checkpoint holding one under a usual key (two levels at most)."""
    if isinstance(loaded, dict) and not all(isinstance(v, torch.Tensor) for v in loaded.values()) and depth < 2:
        for key in NESTED_STATE_KEYS:
            if isinstance(loaded.get(key), dict):
                return _unwrap(loaded[key], path, depth + 1)
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise RobbenchError(f"{path} does not hold a state_dict (a mapping of names to tensors); save model.state_dict()")
    if not all(isinstance(k, str) for k in loaded):
        raise RobbenchError(f"{path} holds tensors under names that are not strings; save model.state_dict()")
    return dict(loaded)


def _strip_wrapper_prefixes(state: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    changed = True
    while changed and not set(state) <= expected:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if state and all(k.startswith(prefix) for k in state) and not any(k.startswith(prefix) for k in expected):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return state


def load_weights(model: nn.Module, path: Path) -> str:
    """Load ``path`` into ``model`` strictly; return the file's SHA-256."""
    state = read_state_dict(path)
    target = model.state_dict()
    state = _strip_wrapper_prefixes(state, set(target))
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_preview(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_preview(unexpected)}")
        raise RobbenchError(f"{path} does not match the architecture: {'; '.join(parts)}; check 'architecture' and its kwargs")
    for key, tensor in state.items():
        want = target[key]
        if tensor.shape != want.shape:
            raise RobbenchError(
                f"{path}: {key} has shape {tuple(tensor.shape)}, the architecture expects {tuple(want.shape)}; "
                "check architecture_kwargs"
            )
        if want.is_floating_point() != tensor.is_floating_point():
            raise RobbenchError(f"{path}: {key} has dtype {tensor.dtype}, expected {want.dtype}; re-export the weights")
    model.load_state_dict({k: v.to(target[k].dtype) for k, v in state.items()}, strict=True)
    # Checked as loaded, in the model's dtype: float64 1e300 becomes Inf in float32, and isfinite has
    # no float8 kernel (float8 NaN would pass a check before the cast).
    for key, tensor in model.state_dict().items():
        if key in state and tensor.is_floating_point() and not bool(torch.isfinite(tensor.float()).all()):
            raise RobbenchError(f"{path}: {key} contains NaN or Inf values in the model's {tensor.dtype}; the checkpoint is broken")
    return file_digest(path)


def _preview(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


