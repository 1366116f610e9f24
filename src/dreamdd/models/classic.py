"""The small classic networks of DC/DSA (networks.py): VGG-11, AlexNet, LeNet and an MLP.

Every factory has the signature `factory(num_classes, channels, image_size, width=...)`; `width` sets the width of
the first layer and the other layers scale with it (the defaults give the published networks). Every model has
`embed(x)` (the input of its last linear layer, flattened) and `feature_dim`.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import DreamddError
from .convnet import _norm
from .registry import register_model


def check_positive(model: str, **values: int) -> None:
    """Raise DreamddError unless every value (sizes, widths, class counts) is at least 1."""
    for label, value in values.items():
        if int(value) < 1:
            raise DreamddError(f"{model} {label.replace('_', ' ')} must be at least 1, got {value}")


def _scaled(base: int, width: int, default: int) -> int:
    """A layer width `base` of the published network, scaled by width/default (at least 1)."""
    return max(1, round(base * width / default))


def _conv_out(size: int, kernel: int, padding: int, stride: int = 1) -> int:
    return (size + 2 * padding - kernel) // stride + 1


# --------------------------------------------------------------------------------------------------- VGG-11

VGG11_CFG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG(nn.Module):
    """VGG of DC's networks.py: [conv 3x3, norm, ReLU] and 2x2 max-pools as in `cfg`, then one linear classifier on
    the flattened final map (512 x 1 x 1 for 32x32 inputs). A 28x28 input gets padding 3 in the first conv (maps
    become 32x32, as in DC).

    A max-pool is skipped when a normalised conv would follow it on a 1x1 map (instance norm would erase the signal)
    or when the last pool would go below 1x1; 32x32 and 28x28 inputs keep all five pools.
    """

    def __init__(self, num_classes: int, channels: int, image_size: tuple[int, int], width: int = 64,
                 norm: str = "instance", cfg: tuple = VGG11_CFG):
        super().__init__()
        h, w = int(image_size[0]), int(image_size[1])
        check_positive("VGG", num_classes=num_classes, channels=channels, image_height=h, image_width=w, width=width)
        layers: list[nn.Module] = []
        in_channels = channels
        first = True
        for i, item in enumerate(cfg):
            if item == "M":
                last_pool = "M" not in cfg[i + 1:]
                if min(h, w) // 2 >= 2 or (last_pool and min(h, w) // 2 >= 1):
                    layers.append(nn.MaxPool2d(2, 2))
                    h, w = h // 2, w // 2
                continue
            out = _scaled(item, width, 64)
            padding = 3 if first and (h, w) == (28, 28) else 1
            layers += [nn.Conv2d(in_channels, out, 3, padding=padding), _norm(norm, out), nn.ReLU(inplace=True)]
            h, w = _conv_out(h, 3, padding), _conv_out(w, 3, padding)
            in_channels, first = out, False
        self.features = nn.Sequential(*layers)
        self.feature_shape = (in_channels, h, w)
        self.feature_dim = in_channels * h * w
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


@register_model("vgg11")
def vgg11(num_classes: int, channels: int, image_size: tuple[int, int], width: int = 64) -> VGG:
    """VGG-11 with instance norm (DC's 'VGG11', the network used while distilling)."""
    return VGG(num_classes, channels, image_size, width=width, norm="instance")


@register_model("vgg11_bn")
def vgg11_bn(num_classes: int, channels: int, image_size: tuple[int, int], width: int = 64) -> VGG:
    """VGG-11 with batch norm (DC's 'VGG11BN')."""
    return VGG(num_classes, channels, image_size, width=width, norm="batch")


# --------------------------------------------------------------------------------------------------- AlexNet

class AlexNet(nn.Module):
    """AlexNet of DC's networks.py for small images: conv 5x5 128, pool, conv 5x5 192, pool, conv 3x3 256, 192, 192,
    pool (ReLU after each conv, no norm), then one linear classifier on the flattened 192 x 4 x 4 map (32x32 input).
    A 28x28 input gets padding 4 in the first conv (maps become 32x32, as in DC); a pool that would go below 1x1
    is skipped.
    """

    def __init__(self, num_classes: int, channels: int, image_size: tuple[int, int], width: int = 128):
        super().__init__()
        h, w = int(image_size[0]), int(image_size[1])
        check_positive("AlexNet", num_classes=num_classes, channels=channels, image_height=h, image_width=w,
                       width=width)
        c1, c2, c3, c4, c5 = (_scaled(c, width, 128) for c in (128, 192, 256, 192, 192))
        plan = [(channels, c1, 5, 4 if (h, w) == (28, 28) else 2, True), (c1, c2, 5, 2, True),
                (c2, c3, 3, 1, False), (c3, c4, 3, 1, False), (c4, c5, 3, 1, True)]
        layers: list[nn.Module] = []
        for cin, cout, kernel, padding, pool in plan:
            layers += [nn.Conv2d(cin, cout, kernel, padding=padding), nn.ReLU(inplace=True)]
            h, w = _conv_out(h, kernel, padding), _conv_out(w, kernel, padding)
            if pool and min(h, w) >= 2:
                layers.append(nn.MaxPool2d(2, 2))
                h, w = h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.feature_shape = (c5, h, w)
        self.feature_dim = c5 * h * w
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


@register_model("alexnet")
def alexnet(num_classes: int, channels: int, image_size: tuple[int, int], width: int = 128) -> AlexNet:
    """DC's AlexNet for small images (channels 128-192-256-192-192 at the default width)."""
    return AlexNet(num_classes, channels, image_size, width=width)


# --------------------------------------------------------------------------------------------------- LeNet

class LeNet(nn.Module):
    """LeNet-5 as in DC: conv 5x5 6, ReLU, pool, conv 5x5 16, ReLU, pool, fc 120, fc 84, linear classifier.

    32x32 inputs use unpadded convs (16 x 5 x 5 features); smaller inputs get padding 2 in the first conv (28x28 ->
    16 x 5 x 5, as DC does for MNIST) and, if the second conv would leave less than a 5x5 map, padding 2 there too
    (8x8 -> 16 x 2 x 2). A pool that would go below 1x1 is skipped.
    """

    def __init__(self, num_classes: int, channels: int, image_size: tuple[int, int], width: int = 6):
        super().__init__()
        h, w = int(image_size[0]), int(image_size[1])
        check_positive("LeNet", num_classes=num_classes, channels=channels, image_height=h, image_width=w,
                       width=width)
        c1, c2 = width, _scaled(16, width, 6)
        layers: list[nn.Module] = []
        for index, (cin, cout) in enumerate(((channels, c1), (c1, c2))):
            padding = 0 if min(h, w) >= (32 if index == 0 else 9) else 2
            layers += [nn.Conv2d(cin, cout, 5, padding=padding), nn.ReLU(inplace=True)]
            h, w = _conv_out(h, 5, padding), _conv_out(w, 5, padding)
            if min(h, w) >= 2:
                layers.append(nn.MaxPool2d(2, 2))
                h, w = h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.feature_shape = (c2, h, w)
        self.fc = nn.Sequential(nn.Linear(c2 * h * w, 120), nn.ReLU(inplace=True),
                                nn.Linear(120, 84), nn.ReLU(inplace=True))
        self.feature_dim = 84
        self.classifier = nn.Linear(84, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The 84-d output of the second fully connected layer (input of the classifier)."""
        return self.fc(self.features(x).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


@register_model("lenet")
def lenet(num_classes: int, channels: int, image_size: tuple[int, int], width: int = 6) -> LeNet:
    """LeNet-5 (conv 6, conv 16, fc 120, fc 84); `width` is the first conv's channels, the second scales with it."""
    return LeNet(num_classes, channels, image_size, width=width)


# --------------------------------------------------------------------------------------------------- MLP

class MLP(nn.Module):
    """DC's 3-layer MLP on the flattened image: fc `width`, ReLU, fc `width`, ReLU, linear classifier.

    The first layer is written as a convolution whose kernel covers the whole image: exactly a linear layer on
    the flattened input (same weights, same count), but its weight is 4-D, so `matching_parameters` (conv weights
    only) has something to match for this network too.
    """

    def __init__(self, num_classes: int, channels: int, image_size: tuple[int, int], width: int = 128):
        super().__init__()
        h, w = int(image_size[0]), int(image_size[1])
        check_positive("MLP", num_classes=num_classes, channels=channels, image_height=h, image_width=w,
                       width=width)
        self.fc_1 = nn.Conv2d(channels, width, (h, w))
        self.fc_2 = nn.Linear(width, width)
        self.feature_dim = width
        self.classifier = nn.Linear(width, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The output of the second hidden layer (input of the classifier)."""
        return torch.relu(self.fc_2(torch.relu(self.fc_1(x)).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


@register_model("mlp")
def mlp(num_classes: int, channels: int, image_size: tuple[int, int], width: int = 128) -> MLP:
    """3-layer MLP (hidden `width`, `width`) on the flattened input."""
    return MLP(num_classes, channels, image_size, width=width)
