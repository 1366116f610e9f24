"""The ConvNet of DC/DSA/DM/IDC: depth x [conv 3x3, norm, ReLU, 2x2 pool], then one linear classifier."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import DreamddError
from .registry import register_model

NORMS = ("instance", "batch", "layer", "none")
POOLINGS = ("avg", "max", "none")


def _norm(kind: str, width: int) -> nn.Module:
    if kind == "instance":
        return nn.GroupNorm(width, width, affine=True)   # one group per channel = instance norm with affine
    if kind == "batch":
        return nn.BatchNorm2d(width)
    if kind == "layer":
        return nn.GroupNorm(1, width, affine=True)
    return nn.Identity()


def _pool(kind: str) -> nn.Module:
    return {"avg": nn.AvgPool2d(2, 2), "max": nn.MaxPool2d(2, 2)}[kind]


class ConvNet(nn.Module):
    """ConvNet-`depth` of width `width`. A 28x28 input gets padding 3 in the first conv (maps become 32x32, as in DC).

    A block skips its pooling when that would leave a following block a 1x1 map (instance norm would erase it)
    or the last block a map below 1x1, so every depth works for every image size; standard setups are unchanged.
    """

    def __init__(self, num_classes: int, channels: int, image_size: tuple[int, int], width: int = 128,
                 depth: int = 3, norm: str = "instance", pooling: str = "avg"):
        super().__init__()
        if norm not in NORMS:
            raise DreamddError(f"unknown ConvNet norm '{norm}'; use one of: {', '.join(NORMS)}")
        if pooling not in POOLINGS:
            raise DreamddError(f"unknown ConvNet pooling '{pooling}'; use one of: {', '.join(POOLINGS)}")
        h, w = int(image_size[0]), int(image_size[1])
        for label, value in (("width", width), ("depth", depth), ("num_classes", num_classes),
                             ("channels", channels), ("image height", h), ("image width", w)):
            if int(value) < 1:
                raise DreamddError(f"ConvNet {label} must be at least 1, got {value}")
        layers: list[nn.Module] = []
        in_channels = channels
        for block in range(depth):
            padding = 3 if block == 0 and (h, w) == (28, 28) else 1
            layers += [nn.Conv2d(in_channels, width, 3, padding=padding), _norm(norm, width), nn.ReLU(inplace=True)]
            h, w = h + 2 * padding - 2, w + 2 * padding - 2
            last = block == depth - 1
            if pooling != "none" and (min(h, w) >= 4 or (last and min(h, w) >= 2)):
                layers.append(_pool(pooling))
                h, w = h // 2, w // 2
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.feature_shape = (width, h, w)
        self.feature_dim = width * h * w
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate feature: the flattened output of the last block (input of the classifier)."""
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


def _register(name: str, doc: str, **fixed) -> None:
    """Register a ConvNet factory; `fixed` options (e.g. depth=4) cannot be overridden with another value."""
    def factory(num_classes: int, channels: int, image_size: tuple[int, int], width: int | None = None,
                depth: int | None = None, norm: str | None = None, pooling: str | None = None) -> ConvNet:
        options = {"width": width, "depth": depth, "norm": norm, "pooling": pooling}
        for key, value in fixed.items():
            if options[key] is not None and options[key] != value:
                raise DreamddError(f"model '{name}' has {key}={value}, got {key}={options[key]}; "
                                   f"use model 'convnet' with {key}={options[key]} instead")
            options[key] = value
        return ConvNet(num_classes, channels, image_size, **{k: v for k, v in options.items() if v is not None})

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = doc
    register_model(name)(factory)


_register("convnet", "ConvNet, depth 3 by default; width, depth, norm and pooling can be set.")
_register("convnet3", "ConvNet-3 (the DC/IDC default network).", depth=3)
_register("convnet4", "ConvNet-4 (used for 64x64 inputs in DC/IDC).", depth=4)
_register("convnetd2", "ConvNet-2.", depth=2)
_register("convnet3_bn", "ConvNet-3 with batch norm.", depth=3, norm="batch")
