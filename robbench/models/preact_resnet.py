"""``preact-resnet18``: the pre-activation ResNet-18 (He et al., 2016b) of Wong et al. (2020) and Rice et al. (2020).

Layout as in locuslab/fast_adversarial and locuslab/robust_overfitting (``conv1``,
``layer1``..``layer4`` of ``PreActBlock``s with ``bn1``/``conv1``/``bn2``/``conv2`` and a bare
1x1 ``shortcut`` convolution, then ``bn`` and ``linear``), so their checkpoints load as saved.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import ARCHITECTURES
from .resnet import add_stages


class PreActBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x  # the projection sees the activation
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + shortcut


class PreActResNet(nn.Module):
    def __init__(self, num_blocks: tuple[int, ...], in_channels: int, num_classes: int, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        planes = add_stages(self, PreActBlock, num_blocks, width)
        self.bn = nn.BatchNorm2d(planes)
        self.linear = nn.Linear(planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        out = F.relu(self.bn(out))
        out = F.avg_pool2d(out, out.shape[2:])
        return self.linear(out.flatten(1))


@ARCHITECTURES.register("preact-resnet18")
def preact_resnet18(input_shape: tuple[int, ...] = (3, 32, 32), num_classes: int = 10, width: int = 64) -> nn.Module:
    """PreAct ResNet-18 of Wong et al./Rice et al. (conv1, layer1..4, bn, linear); width 64."""
    return PreActResNet((2, 2, 2, 2), input_shape[0], num_classes, width)
