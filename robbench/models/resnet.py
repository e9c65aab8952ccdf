"""``resnet18``: the CIFAR ResNet-18 (He et al., 2016) of AutoAttack's and RobustBench's checkpoints.

The layout (``conv1``, ``bn1``, ``layer1``..``layer4`` of ``BasicBlock``s with ``shortcut``
convolutions, ``linear``) is the one of kuangliu/pytorch-cifar that those checkpoints were
saved from, so they load without renaming a key. A 3x3 stem with stride 1 suits 32x32 inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import ARCHITECTURES


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()  # identity; a projection when the shape changes
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def add_stages(module: nn.Module, block: type[nn.Module], num_blocks: tuple[int, ...], width: int) -> int:
    """``layer1``..``layer4`` (widths ×1, ×2, ×4, ×8; stride 2 from the second); returns the last width.

    Shared by ResNet and PreAct ResNet so both keep the key layout published checkpoints use.
    """
    in_planes = width
    for i, count in enumerate(num_blocks):
        out_planes = width * 2**i
        blocks = []
        for stride in [1 if i == 0 else 2] + [1] * (count - 1):
            blocks.append(block(in_planes, out_planes, stride))
            in_planes = out_planes
        module.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
    return in_planes


class ResNet(nn.Module):
    def __init__(self, num_blocks: tuple[int, ...], in_channels: int, num_classes: int, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        planes = add_stages(self, BasicBlock, num_blocks, width)
        self.linear = nn.Linear(planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.avg_pool2d(out, out.shape[2:])  # 4x4 for 32x32 inputs, as the original code pools
        return self.linear(out.flatten(1))


@ARCHITECTURES.register("resnet18")
def resnet18(input_shape: tuple[int, ...] = (3, 32, 32), num_classes: int = 10, width: int = 64) -> nn.Module:
    """CIFAR ResNet-18 (conv1, bn1, layer1..4, linear), as AutoAttack/RobustBench checkpoints; width 64."""
    return ResNet((2, 2, 2, 2), input_shape[0], num_classes, width)
