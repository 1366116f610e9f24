"""CIFAR-style ResNets of DC/IDC: ResNet-10/18 (batch norm) and IDC's ResNetAP-10 (average-pool downsampling).

Stem: conv 3x3 stride 1, norm, ReLU (no max-pool); four stages of BasicBlocks with widths w, 2w, 4w, 8w (w = 64),
the last three downsampling by 2; global average pooling; one linear classifier.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .classic import check_positive
from .convnet import _norm
from .registry import register_model


class BasicBlock(nn.Module):
    """Two 3x3 convs with norm and a residual connection (a 1x1 conv + norm when the shape changes).

    `avgpool_down=False`: downsampling by stride 2 in the first conv and in the shortcut conv (standard ResNet).
    `avgpool_down=True` (IDC's BasicBlock_AP): convs keep stride 1 and a 2x2 average pool follows the first conv
    (and the shortcut's 1x1 conv) instead.
    """
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, norm: str = "batch",
                 avgpool_down: bool = False):
        super().__init__()
        self.stride = stride
        self.avgpool_down = avgpool_down
        conv_stride = 1 if avgpool_down else stride
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=conv_stride, padding=1, bias=False)
        self.bn1 = _norm(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = _norm(norm, planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            if avgpool_down:
                layers = [nn.Conv2d(in_planes, planes, 1, stride=1, bias=False)]
                if stride != 1:
                    layers.append(nn.AvgPool2d(2, 2))
                self.shortcut = nn.Sequential(*layers, _norm(norm, planes))
            else:
                self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                              _norm(norm, planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        if self.avgpool_down and self.stride != 1:
            out = F.avg_pool2d(out, kernel_size=2, stride=2)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet with a CIFAR stem for small images; `blocks` BasicBlocks per stage (e.g. (2, 2, 2, 2) = ResNet-18).

    A stage skips its downsampling when the maps would become smaller than 2x2 (a norm on a 1x1 map erases the
    signal for instance norm and is degenerate for batch norm), so 8x8 inputs end at 2x2; 28x28 and 32x32 inputs
    are downsampled three times as usual. The classifier sees the globally average-pooled last map.
    """

    def __init__(self, num_classes: int, channels: int, image_size: tuple[int, int], blocks=(2, 2, 2, 2),
                 width: int = 64, norm: str = "batch", avgpool_down: bool = False):
        super().__init__()
        h, w = int(image_size[0]), int(image_size[1])
        check_positive("ResNet", num_classes=num_classes, channels=channels, image_height=h, image_width=w,
                       width=width)
        self.conv1 = nn.Conv2d(channels, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = _norm(norm, width)
        self.stage_names: list[str] = []
        in_planes = width
        for index, count in enumerate(blocks):
            planes = width * 2 ** index
            stride = 1
            if index > 0:
                nh, nw = ((h // 2, w // 2) if avgpool_down else ((h - 1) // 2 + 1, (w - 1) // 2 + 1))
                if min(nh, nw) >= 2:
                    stride, h, w = 2, nh, nw
            layers = []
            for block in range(count):
                layers.append(BasicBlock(in_planes, planes, stride if block == 0 else 1, norm, avgpool_down))
                in_planes = planes
            self.stage_names.append(f"layer{index + 1}")   # layer1..layer4, the state-dict keys of DC/IDC
            self.add_module(self.stage_names[-1], nn.Sequential(*layers))
        self.final_map = (h, w)
        self.feature_dim = in_planes
        self.classifier = nn.Linear(in_planes, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The globally average-pooled output of the last stage (input of the classifier)."""
        out = F.relu(self.bn1(self.conv1(x)))
        for name in self.stage_names:
            out = getattr(self, name)(out)
        return out.mean(dim=(2, 3))   # global average pooling (adaptive_avg_pool2d's CUDA backward is not
                                      # deterministic: dreamdd.determinism)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


@register_model("resnet10_bn")
def resnet10_bn(num_classes: int, channels: int, image_size: tuple[int, int], width: int = 64) -> ResNet:
    """ResNet-10 (BasicBlock, [1, 1, 1, 1]) with batch norm."""
    return ResNet(num_classes, channels, image_size, blocks=(1, 1, 1, 1), width=width, norm="batch")


@register_model("resnet10_ap")
def resnet10_ap(num_classes: int, channels: int, image_size: tuple[int, int], width: int = 64) -> ResNet:
    """IDC's ResNetAP-10: [1, 1, 1, 1] blocks, 2x2 average-pool downsampling, instance norm."""
    return ResNet(num_classes, channels, image_size, blocks=(1, 1, 1, 1), width=width, norm="instance",
                  avgpool_down=True)


@register_model("resnet18_bn")
def resnet18_bn(num_classes: int, channels: int, image_size: tuple[int, int], width: int = 64) -> ResNet:
    """ResNet-18 (BasicBlock, [2, 2, 2, 2]) with batch norm."""
    return ResNet(num_classes, channels, image_size, blocks=(2, 2, 2, 2), width=width, norm="batch")
