"""``convex-small`` and ``convex-large``: the provably robust CNNs of Wong & Kolter (ICML 2018) and
Wong, Schmidt, Metzen & Kolter (NeurIPS 2018).

Built as the flat ``nn.Sequential`` of ``examples/problems.py`` in github.com/locuslab/convex_adversarial
(``mnist_model``/``cifar_model`` and ``mnist_model_large``/``cifar_model_large``), with the Flatten at the
same index, so the published state dicts (``0.weight``, ``2.weight``, ...) load strictly without
conversion. One builder serves both sizes: they differ only in their layer lists.
"""

from __future__ import annotations

from torch import nn

from . import ARCHITECTURES

#: (out_channels, kernel, stride) per convolution, each followed by a ReLU; padding is always 1
SMALL_CONVS = ((16, 4, 2), (32, 4, 2))
LARGE_CONVS = ((32, 3, 1), (32, 4, 2), (64, 3, 1), (64, 4, 2))


def _convex_cnn(convs: tuple[tuple[int, int, int], ...], hidden: tuple[int, ...],
                input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    channels, height, width = input_shape
    layers: list[nn.Module] = []
    for out_channels, kernel, stride in convs:
        layers += [nn.Conv2d(channels, out_channels, kernel, stride=stride, padding=1), nn.ReLU()]
        channels = out_channels
        height = (height + 2 - kernel) // stride + 1
        width = (width + 2 - kernel) // stride + 1
    layers.append(nn.Flatten())
    features = channels * height * width
    for size in hidden:
        layers += [nn.Linear(features, size), nn.ReLU()]
        features = size
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)


@ARCHITECTURES.register("convex-small")
def convex_small(input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10) -> nn.Module:
    """Wong & Kolter's small CNN: conv 16 and 32 (4x4, stride 2), FC 100, FC classes (Sequential keys)."""
    return _convex_cnn(SMALL_CONVS, (100,), tuple(input_shape), num_classes)


@ARCHITECTURES.register("convex-large")
def convex_large(input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10) -> nn.Module:
    """Wong et al.'s large CNN: conv 32, 32, 64, 64 (3x3 s1 / 4x4 s2), FC 512, 512, classes (Sequential keys)."""
    return _convex_cnn(LARGE_CONVS, (512, 512), tuple(input_shape), num_classes)
