"""This project's own backbone networks, from scratch, for the CPU: Darknet-style nets and a small ResNet.

Each is registered as a *network* (``backbones.register_network``), so every detector family takes it
as it takes a torchvision network: ``fasterrcnn_mini_darknet``, ``retinanet_darknet``,
``fasterrcnn_custom_resnet_nano_head``... Stages and channels are found automatically.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet
from torchvision.ops.misc import Conv2dNormActivation

from detection.models.backbones import register_network


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> Conv2dNormActivation:
    return Conv2dNormActivation(cin, cout, k, stride, activation_layer=lambda inplace=True: nn.LeakyReLU(0.1, inplace=inplace))


class Residual(nn.Module):
    """Darknet's residual unit: 1x1 squeeze, 3x3 expand, added to the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(_conv(channels, channels // 2, 1), _conv(channels // 2, channels, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class Darknet(nn.Module):
    """A stem conv, then per stage a stride-2 conv and ``depth`` residual units (Darknet-53: widths
    32, 64..1024, depths 1, 2, 8, 8, 4); a pooled linear classifier on top."""

    def __init__(self, widths: tuple[int, ...], depths: tuple[int, ...], num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv(3, widths[0], 3)]
        for cin, cout, depth in zip(widths, widths[1:], depths):
            layers.append(nn.Sequential(_conv(cin, cout, 3, 2), *(Residual(cout) for _ in range(depth))))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


@register_network("darknet")
def darknet() -> nn.Module:
    """Darknet-53 (YOLOv3's backbone), 40 M parameters."""
    return Darknet((32, 64, 128, 256, 512, 1024), (1, 2, 8, 8, 4))


@register_network("mini_darknet")
def mini_darknet() -> nn.Module:
    """A Darknet at a quarter of the width and few residual units, about 1 M parameters."""
    return Darknet((16, 32, 64, 128, 192, 256), (1, 1, 2, 2, 1))


@register_network("custom_resnet")
def custom_resnet() -> nn.Module:
    """A ResNet of one BasicBlock per stage (torchvision's ResNet class), about 5 M parameters."""
    return ResNet(BasicBlock, [1, 1, 1, 1])
