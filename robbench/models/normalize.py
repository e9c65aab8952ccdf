"""Keep per-channel normalisation inside the model, so every attack works in input (pixel) space."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class Normalized(nn.Module):
    """``model((x - mean) / std)``; mean and std are buffers, not weights to load."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)  # channels on dim 1, whatever the rank
        return self.model((x - self.mean.view(shape)) / self.std.view(shape))
