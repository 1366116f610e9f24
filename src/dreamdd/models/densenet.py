"""The CIFAR DenseNet-121 (growth 32, blocks [6, 12, 24, 16], bottleneck, compression 0.5, 3x3 stem), batch norm."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .classic import check_positive
from .registry import register_model


class Bottleneck(nn.Module):
    """BN, ReLU, conv 1x1 (4 x growth), BN, ReLU, conv 3x3 (growth); the output is concatenated to the input."""

    def __init__(self, in_planes: int, growth: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([out, x], 1)


class Transition(nn.Module):
    """BN, ReLU, conv 1x1 (compression), then a 2x2 average pool unless `pool` is False."""

    def __init__(self, in_planes: int, out_planes: int, pool: bool = True):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_planes)
        self.conv = nn.Conv2d(in_planes, out_planes, 1, bias=False)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(F.relu(self.bn(x)))
        return F.avg_pool2d(out, 2) if self.pool else out


class DenseNet(nn.Module):
    """DenseNet for small images: conv 3x3 (2 x growth), dense blocks joined by transitions, BN, ReLU, global
    average pooling, one linear classifier.

    A transition skips its pooling when the maps would become smaller than 2x2 (batch norm on 1x1 maps of a
    single image is undefined), so 8x8 inputs end at 2x2; 32x32 inputs end at 4x4 as usual.
    """

    def __init__(self, num_classes: int, channels: int, image_size: tuple[int, int], blocks=(6, 12, 24, 16),
                 growth: int = 32, reduction: float = 0.5):
        super().__init__()
        h, w = int(image_size[0]), int(image_size[1])
        check_positive("DenseNet", num_classes=num_classes, channels=channels, image_height=h, image_width=w,
                       width=growth)
        planes = 2 * growth
        self.conv1 = nn.Conv2d(channels, planes, 3, padding=1, bias=False)
        stages: list[nn.Module] = []
        for index, count in enumerate(blocks):
            layers = []
            for _ in range(count):
                layers.append(Bottleneck(planes, growth))
                planes += growth
            stages.append(nn.Sequential(*layers))
            if index < len(blocks) - 1:
                out_planes = int(math.floor(planes * reduction))
                pool = min(h, w) // 2 >= 2
                if pool:
                    h, w = h // 2, w // 2
                stages.append(Transition(planes, out_planes, pool))
                planes = out_planes
        self.features = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(planes)
        self.final_map = (h, w)
        self.feature_dim = planes
        self.classifier = nn.Linear(planes, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The globally average-pooled final map after BN and ReLU (input of the classifier)."""
        out = F.relu(self.bn(self.features(self.conv1(x))))
        return out.mean(dim=(2, 3))   # global average pooling (adaptive_avg_pool2d's CUDA backward is not
                                      # deterministic: dreamdd.determinism)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


@register_model("densenet121")
def densenet121(num_classes: int, channels: int, image_size: tuple[int, int], width: int = 32) -> DenseNet:
    """CIFAR DenseNet-121; `width` is the growth rate (32; the stem has 2 x growth channels)."""
    return DenseNet(num_classes, channels, image_size, blocks=(6, 12, 24, 16), growth=width)
