"""Datasets: what a model is evaluated on, and the facts attacks need about it.

A dataset is registered as a builder ``f(**params) -> Dataset``. The ``Dataset`` declares its
input shape, number of classes and value range, so attacks project onto the real domain of the
inputs ([0, 1] for images, unbounded for ``tsipras``) instead of assuming pixels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import RobbenchError, quoted
from ..registry import Registry
from ..threat_models import ThreatModel

Split = str  # "train" or "test"


@dataclass(frozen=True)
class Dataset:
    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    value_range: tuple[float, float] | None  # None: unbounded reals
    test_size: int  # size of the full standard test split, for "subset" markers
    params: dict[str, Any] = field(default_factory=dict)  # builder parameters, recorded in results
    threat_models: tuple[ThreatModel, ...] = ()  # its standard threat models, as data
    loader: Callable[[Split], tuple[torch.Tensor, torch.Tensor]] = field(repr=False, default=None)
    class_names: tuple[str, ...] | None = None  # what each label means; None: the label numbers

    def class_name(self, label: int) -> str:
        return self.class_names[label] if self.class_names else str(label)

    def load(self, split: Split = "test", n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` examples of ``split`` as (x float32, y int64)."""
        if split not in ("train", "test"):
            raise RobbenchError(f"unknown split {split!r}; use 'train' or 'test'")
        x, y = self.loader(split)
        if n is not None:
            if n <= 0:
                raise RobbenchError(f"the number of examples must be positive, got {n}")
            x, y = x[:n], y[:n]
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise RobbenchError(
                f"{self.name} {split} labels fall outside 0..{self.num_classes - 1}; the data files are corrupt"
            )
        # Copies: loaders cache their tensors, and a model that writes into its input must not
        # change the data every later evaluation in this process sees.
        return x.clone(), y.clone()


DATASETS: Registry[Callable[..., Dataset]] = Registry(
    "dataset",
    builtin_modules=("robbench.data.idx", "robbench.data.synthetic", "robbench.data.cifar", "robbench.data.npz"),
    entry_point_group="robbench.datasets",
)


def get_dataset(name: str, **params: Any) -> Dataset:
    return DATASETS.get(name).factory(**params)


def threat_models_text(name: str) -> str:
    """``linf 0.1, l2 1.5``: the standard threat models of the dataset built with default parameters."""
    try:
        dataset = get_dataset(name)
    except (RobbenchError, TypeError):  # needs parameters (npz: a path), so its radii come from them
        return "set by dataset_kwargs"
    return ", ".join(f"{t.name} {t.eps:.4g}" for t in dataset.threat_models) or "none"
def check_hub_params(name: str, params: dict[str, Any]) -> None:
    """Refuse dataset_kwargs that a hub submission may not set: any the dataset does not declare safe.

    A hub model.yaml is written by a stranger: a file path in it would be read on the evaluating
    machine, and the record would publish that file's path and digest.
    """
    allowed = DATASETS.get(name).hub_params
    refused = sorted(set(params) - allowed)
    if refused:
        raise RobbenchError(
            f"dataset_kwargs {quoted(refused[0])} of dataset {quoted(name)} cannot come from a hub submission "
            f"(allowed: {', '.join(sorted(allowed)) or 'none'}; a hub model.yaml may name no file on this machine); "
            "remove it from the repo's model.yaml"
        )


def load_dataset(name: str, split: Split = "test", n: int | None = None, **params: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)``: x float32 (NCHW in [0, 1] for images), y int64."""
    return get_dataset(name, **params).load(split, n)


def user_data_root(data_dir: str | os.PathLike | None) -> Path | None:
    """``--data-dir`` or ``ROBBENCH_DATA``: ``<root>/<dataset-name>/`` holds that dataset's files."""
    root = data_dir or os.environ.get("ROBBENCH_DATA")
    return Path(root).expanduser() if root else None


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "robbench"
