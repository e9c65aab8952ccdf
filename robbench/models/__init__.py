"""Architectures, in the style of timm: ``create_model(name, **kwargs) -> nn.Module``.

Every factory accepts ``input_shape`` and ``num_classes`` (filled from the dataset when a model
is built from a model.yaml) plus its own keyword arguments.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from ..registry import Registry

ARCHITECTURES: Registry[Callable[..., nn.Module]] = Registry(
    "architecture",
    builtin_modules=(
        "robbench.models.linear", "robbench.models.lenet", "robbench.models.small_cnn", "robbench.models.resnet",
        "robbench.models.convex_cnn",
        "robbench.models.preact_resnet", "robbench.models.wide_resnet",
    ),
    entry_point_group="robbench.architectures",
)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered architecture (random weights)."""
    from ..errors import RobbenchError, exception_summary, quoted

    try:
        return ARCHITECTURES.get(name).factory(**kwargs)
    except TypeError as exc:
        raise RobbenchError(f"architecture {quoted(name)} rejected its arguments ({exception_summary(exc)}); fix architecture_kwargs") from exc
