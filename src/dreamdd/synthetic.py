"""SyntheticSet: the learned images (pixel values in [0, 1]), their labels and multi-formation decoding."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from . import determinism
from .errors import DreamddError


def decode(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Cut every image into factor x factor tiles, each upsampled (bilinear) back to full size.

    (n, C, H, W) -> (n * factor^2, C, H, W); the tiles of image i come out consecutively, row by row.
    """
    if factor == 1:
        return images
    n, c, h, w = images.shape
    th, tw = h // factor, w // factor
    tiles = images[:, :, : th * factor, : tw * factor].reshape(n, c, factor, th, factor, tw)
    tiles = tiles.permute(0, 2, 4, 1, 3, 5).reshape(n * factor * factor, c, th, tw)
    if determinism.enabled():      # upsample_bilinear2d's backward has no deterministic CUDA kernel
        return determinism.resize_bilinear(tiles, (h, w))
    return F.interpolate(tiles, size=(h, w), mode="bilinear", align_corners=False)


def mosaic(real: torch.Tensor, factor: int) -> torch.Tensor:
    """The inverse layout of decode(): groups of factor^2 real images, each shrunk (nearest) into one tile.

    (n * factor^2, C, H, W) -> (n, C, H, W).
    """
    if factor == 1:
        return real
    m, c, h, w = real.shape
    if m % (factor * factor):
        raise ValueError(f"mosaic needs a multiple of {factor * factor} images, got {m}")
    th, tw = h // factor, w // factor
    small = F.interpolate(real, size=(th, tw), mode="nearest")
    n = m // (factor * factor)
    tiles = small.reshape(n, factor, factor, c, th, tw).permute(0, 3, 1, 4, 2, 5)
    out = real.new_zeros(n, c, h, w)
    out[:, :, : th * factor, : tw * factor] = tiles.reshape(n, c, th * factor, tw * factor)
    return out


class SyntheticSet:
    """IPC stored images per class, grouped by class; each stored image decodes into factor^2 training images."""

    def __init__(self, images: torch.Tensor, num_classes: int, factor: int = 1):
        if images.dim() != 4 or images.shape[0] % num_classes:
            raise ValueError("images must be (num_classes * ipc, C, H, W)")
        if factor < 1 or images.shape[-1] // factor < 1 or images.shape[-2] // factor < 1:
            raise DreamddError(f"factor {factor} is too large for {tuple(images.shape[-2:])} images; "
                               "lower synth.factor")
        self.images = images.detach().clone().requires_grad_(True)
        self.num_classes = num_classes
        self.ipc = images.shape[0] // num_classes
        self.factor = factor

    @property
    def labels(self) -> torch.Tensor:
        """Class of every stored image (grouped: ipc images of class 0, then class 1, ...)."""
        return torch.arange(self.num_classes, device=self.images.device).repeat_interleave(self.ipc)

    def class_slice(self, c: int) -> slice:
        return slice(c * self.ipc, (c + 1) * self.ipc)

    def sample(self, c: int, max_images: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoded images of class c (in the graph), a random subset of `max_images` when there are more."""
        return _sample(self.images[self.class_slice(c)], c, self.factor, max_images, generator)

    def class_rows(self, c: int) -> "ClassRows":
        return ClassRows(self, c)

    def decoded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every decoded training image (detached) and its label: what a network is evaluated on."""
        images = decode(self.images.detach(), self.factor)
        return images, self.labels.repeat_interleave(self.factor ** 2)

    def clamp_(self) -> None:
        with torch.no_grad():
            self.images.clamp_(0.0, 1.0)


def _sample(images: torch.Tensor, c: int, factor: int, max_images: int,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    decoded = decode(images, factor)
    if decoded.shape[0] > max_images:
        keep = torch.randperm(decoded.shape[0], generator=generator)[:max_images].to(decoded.device)
        decoded = decoded[keep]
    return decoded, torch.full((decoded.shape[0],), c, dtype=torch.long, device=decoded.device)


class ClassRows:
    """Class c's stored images as a leaf of their own (a copy that requires grad), sampled as SyntheticSet
    samples them: the gradient of a class's image step then holds that class alone, not the whole set
    (ImageSGD.class_step writes the step back into the set)."""

    def __init__(self, synthetic: SyntheticSet, c: int):
        self.c, self.factor = c, synthetic.factor
        self.images = synthetic.images.detach()[synthetic.class_slice(c)].clone().requires_grad_(True)

    def sample(self, c: int, max_images: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if c != self.c:
            raise ValueError(f"these are class {self.c}'s rows, not class {c}'s")
        return _sample(self.images, c, self.factor, max_images, generator)


def initial_images(init: str, num_classes: int, ipc: int, factor: int, shape: Sequence[int],
                   choose_real: Callable[[int, int], torch.Tensor] | None, generator: torch.Generator,
                   device: torch.device) -> torch.Tensor:
    """Starting pixels for a SyntheticSet.

    init = "noise": Gaussian noise around grey, clamped to [0, 1] (as IDC).
    init = "real" or "representative": `choose_real(c, n)` returns n real images of class c in [0, 1]
    (random or representative ones, the caller decides); with factor > 1, ipc * factor^2 of them are pasted
    as the tiles of the ipc stored images.
    """
    c_, h, w = shape
    if init == "noise":
        noise = torch.randn((num_classes * ipc, c_, h, w), generator=generator).to(device)
        return (noise / 4 + 0.5).clamp(0, 1)
    if choose_real is None:
        raise ValueError(f"init={init!r} needs real images")
    per_class = []
    for c in range(num_classes):
        real = choose_real(c, ipc * factor * factor).to(device)
        if real.shape[0] < ipc * factor * factor:  # fewer real images than tiles: reuse them cyclically
            repeat = -(-ipc * factor * factor // real.shape[0])
            real = real.repeat(repeat, 1, 1, 1)[: ipc * factor * factor]
        per_class.append(mosaic(real, factor))
    return torch.cat(per_class)
