"""``lenet5``: the 2-conv + 2-FC LeNet-5 variant of advertorch's MNIST examples.

Layer names follow advertorch (``conv1``, ``conv2``, ``linear1``, ``linear2``) so its published
checkpoints (``mnist_lenet5_clntrained.pt``, ``mnist_lenet5_advtrained.pt``) load strictly without
conversion.
"""

from __future__ import annotations

import torch
from torch import nn

from . import ARCHITECTURES


class LeNet5(nn.Module):
    def __init__(self, input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, hidden: int = 200):
        super().__init__()
        channels, height, width = input_shape
        self.conv1 = nn.Conv2d(channels, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.linear1 = nn.Linear(64 * (height // 4) * (width // 4), hidden)
        self.linear2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pool(torch.relu(self.conv1(x)))
        out = self.pool(torch.relu(self.conv2(out)))
        return self.linear2(torch.relu(self.linear1(out.flatten(1))))


@ARCHITECTURES.register("lenet5")
def lenet5(input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, hidden: int = 200) -> nn.Module:
    """advertorch's LeNet-5: conv 32 and 64 (3x3, padding 1) each with 2x2 max-pooling, FC 200, FC classes."""
    return LeNet5(tuple(input_shape), num_classes, hidden)
