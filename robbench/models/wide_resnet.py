"""``wide-resnet``: WideResNet-depth-k (Zagoruyko & Komodakis, 2016) as RobustBench lays it out.

Keys follow TRADES' and RobustBench's code (``conv1``, ``block1.layer.0.bn1`` ... with
``convShortcut`` where the width changes, then ``bn1`` and ``fc``), so WRN-28-10 and WRN-34-10
checkpoints from the CIFAR-10 board load without conversion.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RobbenchError
from . import ARCHITECTURES


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int, drop_rate: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.equal_in_out = in_planes == out_planes
        self.convShortcut = None if self.equal_in_out else nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        if not self.equal_in_out:  # the projection, like conv1, sees the activation; an identity sees x
            x = out
        out = F.relu(self.bn2(self.conv1(out)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        return out + (x if self.convShortcut is None else self.convShortcut(x))


class NetworkBlock(nn.Module):
    def __init__(self, count: int, in_planes: int, out_planes: int, stride: int, drop_rate: float):
        super().__init__()
        self.layer = nn.Sequential(
            *[BasicBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, drop_rate) for i in range(count)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen_factor: int, in_channels: int, num_classes: int, drop_rate: float):
        super().__init__()
        count = (depth - 4) // 6
        channels = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, channels[0], 3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(count, channels[0], channels[1], 1, drop_rate)
        self.block2 = NetworkBlock(count, channels[1], channels[2], 2, drop_rate)
        self.block3 = NetworkBlock(count, channels[2], channels[3], 2, drop_rate)
        self.bn1 = nn.BatchNorm2d(channels[3])
        self.fc = nn.Linear(channels[3], num_classes)
        for module in self.modules():  # TRADES' initialisation, for training from scratch
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn1(out))
        out = F.avg_pool2d(out, out.shape[2:])  # 8x8 for 32x32 inputs
        return self.fc(out.flatten(1))


@ARCHITECTURES.register("wide-resnet")
def wide_resnet(
    input_shape: tuple[int, ...] = (3, 32, 32),
    num_classes: int = 10,
    depth: int = 28,
    widen_factor: int = 10,
    drop_rate: float = 0.0,
) -> nn.Module:
    """WideResNet (conv1, block1..3, bn1, fc) as RobustBench lays it out; depth 28, widen_factor 10."""
    if depth < 10 or (depth - 4) % 6 or widen_factor < 1 or not 0 <= drop_rate < 1:
        raise RobbenchError(
            f"wide-resnet needs depth = 6n + 4 >= 10, widen_factor >= 1 and 0 <= drop_rate < 1; "
            f"got depth={depth}, widen_factor={widen_factor}, drop_rate={drop_rate}"
        )
    return WideResNet(depth, widen_factor, input_shape[0], num_classes, drop_rate)
