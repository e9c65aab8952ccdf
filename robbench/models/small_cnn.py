"""``small-cnn``: the 4-conv + 3-FC network the TRADES paper uses on MNIST-like 28x28 data.

Layer names follow the TRADES code (``feature_extractor.conv1`` ... ``classifier.fc3``) so its
published MNIST checkpoints load without conversion.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from . import ARCHITECTURES


class SmallCNN(nn.Module):
    def __init__(self, input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, drop_rate: float = 0.5):
        super().__init__()
        channels, height, width = input_shape
        self.feature_extractor = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(channels, 32, 3),
                relu1=nn.ReLU(),
                conv2=nn.Conv2d(32, 32, 3),
                relu2=nn.ReLU(),
                maxpool1=nn.MaxPool2d(2, 2),
                conv3=nn.Conv2d(32, 64, 3),
                relu3=nn.ReLU(),
                conv4=nn.Conv2d(64, 64, 3),
                relu4=nn.ReLU(),
                maxpool2=nn.MaxPool2d(2, 2),
            )
        )
        features = ((height - 4) // 2 - 4) // 2 * ((width - 4) // 2 - 4) // 2 * 64
        self.classifier = nn.Sequential(
            OrderedDict(
                fc1=nn.Linear(features, 200),
                relu1=nn.ReLU(),
                drop=nn.Dropout(drop_rate),
                fc2=nn.Linear(200, 200),
                relu2=nn.ReLU(),
                fc3=nn.Linear(200, num_classes),
            )
        )
        for module in self.feature_extractor:  # TRADES' initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.zeros_(self.classifier.fc3.weight)
        nn.init.zeros_(self.classifier.fc3.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.feature_extractor(x).flatten(1))


@ARCHITECTURES.register("small-cnn")
def small_cnn(input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, drop_rate: float = 0.5) -> nn.Module:
    """TRADES' SmallCNN: 4 conv + 3 FC layers, for 28x28 single-channel images."""
    return SmallCNN(tuple(input_shape), num_classes, drop_rate)
