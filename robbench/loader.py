"""From a validated ModelSpec to a ready model and its dataset: the one loader.

Architectures come only from the registry (built-ins and installed plugins); weights only
through ``robbench.checkpoints``, after ``robbench.hub`` has verified any ``hf://`` download.
There are no per-model special cases here.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn
from torch.nn.modules.module import register_module_module_registration_hook

from .checkpoints import count_parameters, load_weights
from .config import ModelSpec, Normalization
from .data import Dataset, get_dataset
from .errors import RobbenchError, exception_summary, quoted
from .hub_ref import is_hub_ref, parse_checkpoint_ref
from .models import create_model
from .models.normalize import Normalized
from .results import Checkpoint

#: the most memory a model's weights may take (the largest published robust models take about 1 GiB)
MAX_MODEL_BYTES = 16 * 2**30
#: submodules a model may have: a ResNet-1001 has about 3,000, a WideResNet-1000 about 4,000
MAX_MODULES = 10_000


@dataclass(frozen=True)
class LoadedModel:
    spec: ModelSpec
    model: nn.Module
    dataset: Dataset
    checkpoint: Checkpoint  # what the result records
    parameter_count: int
    #: which examples ``dataset.load("test")`` gives: the test split, or ``"user-supplied"`` tensors (``robbench.benchmark``)
    split: str = "test"


def build_model(
    architecture: str, architecture_kwargs: dict, normalization: Normalization | None, dataset: Dataset
) -> nn.Module:
    """A fresh model for ``dataset``; normalisation, when given, lives inside the model."""
    kwargs = {"input_shape": dataset.input_shape, "num_classes": dataset.num_classes, **architecture_kwargs}
    with torch.device("meta"), _module_budget(architecture):  # shapes without memory: absurd kwargs are refused
        skeleton = _create(architecture, kwargs)                 # before anything is allocated or built for long
    size = sum(t.numel() * t.element_size() for t in (*skeleton.parameters(), *skeleton.buffers()))
    if size > MAX_MODEL_BYTES:
        raise RobbenchError(
            f"architecture {quoted(architecture)} with these architecture_kwargs has {count_parameters(skeleton):,} "
            f"parameters, over the limit of {MAX_MODEL_BYTES / 2**30:g} GiB of weights; fix architecture_kwargs"
        )
    model = _create(architecture, kwargs)
    if normalization is not None:
        channels = dataset.input_shape[0]
        if len(normalization.mean) not in (1, channels):
            raise RobbenchError(
                f"normalization has {len(normalization.mean)} values but {dataset.name} has {channels} channels"
            )
        model = Normalized(model, normalization.mean, normalization.std)
    return model


@contextmanager
def _module_budget(architecture: str) -> Iterator[None]:
    """Refuse, as soon as it is reached, a model of over ``MAX_MODULES`` submodules (``depth: 1000000``)."""
    built = 0

    def count(module: nn.Module, name: str, submodule: nn.Module | None) -> None:
        nonlocal built
        built += 1
        if built > MAX_MODULES:
            raise RobbenchError(f"architecture {quoted(architecture)} with these architecture_kwargs builds over "
                                f"{MAX_MODULES:,} modules, over the limit; fix architecture_kwargs (e.g. its depth)")

    handle = register_module_module_registration_hook(count)
    try:
        yield
    finally:
        handle.remove()


def _create(architecture: str, kwargs: dict) -> nn.Module:
    try:
        return create_model(architecture, **kwargs)
    except (ValueError, RuntimeError, OverflowError) as exc:  # e.g. a dropout rate of 2, a negative width
        raise RobbenchError(
            f"architecture {quoted(architecture)} rejected its arguments ({exception_summary(exc)}); fix architecture_kwargs"
        ) from exc


def inner_model(model: nn.Module) -> nn.Module:
    """The network whose state_dict a checkpoint holds (inside any normalisation wrapper)."""
    return model.model if isinstance(model, Normalized) else model


def dataset_of(spec: ModelSpec, data_dir: str | None = None) -> Dataset:
    """The dataset ``spec`` is evaluated on, its files looked for in ``data_dir`` first."""
    try:
        return get_dataset(spec.dataset, **_with_data_dir(spec.dataset_kwargs, data_dir))
    except (TypeError, ValueError) as exc:  # a parameter of the wrong kind, refused by the builder's own code
        raise RobbenchError(f"dataset {quoted(spec.dataset)} rejected dataset_kwargs ({exception_summary(exc)}); fix dataset_kwargs") from exc


def load_submission(spec: ModelSpec, data_dir: str | None = None) -> LoadedModel:
    dataset = dataset_of(spec, data_dir)
    model = build_model(spec.architecture, spec.architecture_kwargs, spec.normalization, dataset)
    if is_hub_ref(spec.checkpoint):  # verified against the hub and the pin before any weight is read
        from .hub import fetch  # huggingface_hub is imported only for hub weights

        fetched = fetch(parse_checkpoint_ref(spec.checkpoint), spec.sha256)
        path, source = fetched.local_path, {"path": str(fetched.ref), "repo": fetched.ref.repo, "revision": fetched.ref.revision}
    else:
        path, source = spec.checkpoint_path(), {"path": spec.checkpoint}
    sha256 = load_weights(inner_model(model), path)
    if spec.sha256 is not None and sha256 != spec.sha256:
        raise RobbenchError(f"{path}: SHA-256 is {sha256}, model.yaml pins {spec.sha256}; the file was changed")
    # Convolution weights in channels_last, the layout oneDNN and cuDNN run fastest: on one CPU thread
    # the SmallCNN's forward pass is 1.4x and its forward+backward 1.1x faster, ResNet-18's 1.2x
    # (medians, benchmarks/RESULTS.md `layout`); only float rounding differs (logits within 1e-5).
    # Models without 4-D weights are unchanged.
    model.to(memory_format=torch.channels_last).eval()
    return LoadedModel(spec, model, dataset, Checkpoint(sha256=sha256, **source), count_parameters(model))


def _with_data_dir(kwargs: dict, data_dir: str | None) -> dict:
    return {**kwargs, "data_dir": data_dir} if data_dir else dict(kwargs)
