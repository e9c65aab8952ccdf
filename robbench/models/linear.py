"""``linear``: one affine map over the flattened input; its robustness can be computed exactly."""

from __future__ import annotations

import math

from torch import nn

from . import ARCHITECTURES


@ARCHITECTURES.register("linear")
def linear(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """One nn.Linear over the flattened input (layout: flatten, fc)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
