"""Differentiable siamese augmentation (DSA, Zhao & Bilen 2021) and CutMix (Yun et al. 2019) with soft targets.

All randomness comes from an explicit torch.Generator (drawn on its own device, then moved to the images'
device), so the same generator state gives the same augmentation on any device.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from . import determinism
from .errors import DreamddError

# DSA's parameter ranges (DSA repo, ParamDiffAug).
BRIGHTNESS = 1.0      # x + (u - 0.5) * 1.0
SATURATION = 2.0      # channel-mean deviation scaled by u * 2
CONTRAST = 0.5        # image-mean deviation scaled by u + 0.5
CROP_RATIO = 0.125    # translate by up to 1/8 of the size, zero fill
CUTOUT_RATIO = 0.5    # zero a square of half the size
FLIP_PROB = 0.5
SCALE_RATIO = 1.2     # per-axis scale in [1/1.2, 1.2]
ROTATE_DEGREES = 15.0

OPS = ("color", "crop", "cutout", "flip", "scale", "rotate")
# How many ops of a strategy one call applies (the originals differ, so each use names its mode):
#   all:    every op of the strategy, in order.
#   single: ONE op of the strategy, drawn per call (DC/DSA/DM/MTT's ParamDiffAug aug_mode 'S').
#   idc:    flip, color and cutout whenever the strategy has them, plus ONE of the others (crop, scale,
#           rotate) drawn per call (IDC/DREAM's DiffAug with single_aug, used for matching, network updates
#           and evaluation); with at most one of the others this equals `all`.
MODES = ("all", "single", "idc")
IDC_ALWAYS = ("flip", "color", "cutout")


def _rand(n: int, generator: torch.Generator, device, *shape: int) -> torch.Tensor:
    """Uniform [0, 1) floats of shape (n, *shape) from `generator`, on `device`."""
    return torch.rand((n, *shape), generator=generator, device=generator.device).to(device)


def _view(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-sample value (N,) as (N, 1, 1, 1) in x's dtype, for broadcasting over an image batch."""
    return p.to(x.dtype).view(-1, 1, 1, 1)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Warp each image by its 2x3 matrix (bilinear, zero padding), as DSA's scale and rotate do."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=True)
    if determinism.enabled():      # grid_sample's backward has no deterministic CUDA kernel
        return determinism.sample_bilinear(x, grid)
    return F.grid_sample(x, grid, align_corners=True)


def _color(x, p):
    x = x + (_view(p["brightness"], x) - 0.5) * BRIGHTNESS
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_view(p["saturation"], x) * SATURATION) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_view(p["contrast"], x) + CONTRAST) + mean


def _crop(x, p):
    """Translate each image by an integer shift of up to CROP_RATIO of its size; pixels shifted in are zero."""
    n, c, h, w = x.shape
    index = []
    for axis, size in ((0, h), (1, w)):
        reach = int(size * CROP_RATIO + 0.5)
        shift = (p["crop"][:, axis] * (2 * reach + 1)).floor().long() - reach          # (N,) in [-reach, reach]
        index.append(torch.arange(size, device=x.device) + shift[:, None])             # source pixel, (N, size)
    rows, cols = index
    out = x.gather(2, rows.clamp(0, h - 1)[:, None, :, None].expand(n, c, h, w))
    out = out.gather(3, cols.clamp(0, w - 1)[:, None, None, :].expand(n, c, h, w))
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    return out * inside[:, None].to(x.dtype)


def _cutout(x, p):
    """Zero a square of CUTOUT_RATIO of the size around a random center (clipped at the border)."""
    n, _, h, w = x.shape
    inside = []
    for axis, size in ((0, h), (1, w)):
        length = int(size * CUTOUT_RATIO + 0.5)
        center = (p["cutout"][:, axis] * (size + 1 - length % 2)).floor().long()       # DSA: randint(0, size + (1 - length % 2))
        start = center - length // 2
        pos = torch.arange(size, device=x.device)[None, :]
        inside.append((pos >= start[:, None]) & (pos < (start + length)[:, None]))
    keep = ~(inside[0][:, :, None] & inside[1][:, None, :])
    return x * keep[:, None].to(x.dtype)


def _flip(x, p):
    return torch.where(p["flip"].view(-1, 1, 1, 1) < FLIP_PROB, x.flip(3), x)


def _scale(x, p):
    s = p["scale"] * (SCALE_RATIO - 1.0 / SCALE_RATIO) + 1.0 / SCALE_RATIO             # (N, 2): sx, sy
    zero = torch.zeros_like(s[:, 0])
    theta = torch.stack([torch.stack([s[:, 0], zero, zero], 1), torch.stack([zero, s[:, 1], zero], 1)], 1)
    return _affine(x, theta)


def _rotate(x, p):
    a = (p["rotate"] - 0.5) * 2 * ROTATE_DEGREES / 180 * math.pi
    cos, sin, zero = torch.cos(a), torch.sin(a), torch.zeros_like(a)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    return _affine(x, theta)


# op -> (its transform, its parameters as name -> per-sample shape of uniform draws)
_OPS = {
    "color": (_color, {"brightness": (), "saturation": (), "contrast": ()}),
    "crop": (_crop, {"crop": (2,)}),
    "cutout": (_cutout, {"cutout": (2,)}),
    "flip": (_flip, {"flip": ()}),
    "scale": (_scale, {"scale": (2,)}),
    "rotate": (_rotate, {"rotate": ()}),
}


class SiameseAugment:
    """DSA's differentiable siamese augmentation (the method DSA is methods.dc.DSA), by a strategy such as
    "color_crop_cutout" and a mode (see MODES): which of the strategy's ops one call applies; applied ops keep
    the strategy's order.

    "color" is brightness, saturation and contrast. Parameters are uniform draws in [0, 1) mapped to DSA's ranges
    inside the ops, so they do not depend on the image size. An empty strategy is the identity.
    """

    def __init__(self, strategy: str = "color_crop_cutout", mode: str = "all"):
        self.strategy, self.mode = strategy, mode
        self.ops = [op for op in strategy.split("_") if op]
        unknown = [op for op in self.ops if op not in _OPS]
        if unknown:
            raise DreamddError(f"unknown augmentation op(s) {', '.join(map(repr, unknown))} in '{strategy}'; "
                               f"valid ops: {', '.join(OPS)} (joined by '_', e.g. 'color_crop_cutout')")
        if mode not in MODES:
            raise DreamddError(f"unknown augmentation mode {mode!r}; use one of {', '.join(MODES)}")

    def __repr__(self) -> str:
        return f"SiameseAugment({self.strategy!r}, mode={self.mode!r})"

    def draw_ops(self, generator: torch.Generator) -> list[str]:
        """The ops of one call under the mode. A draw is made only when there is a choice, so a strategy with
        nothing to choose consumes no random numbers (IDC's color_crop_cutout is the same in idc and all)."""
        if self.mode == "all":
            return self.ops
        fixed = [op for op in self.ops if op in IDC_ALWAYS] if self.mode == "idc" else []
        choice = [op for op in self.ops if op not in fixed]
        if len(choice) > 1:
            choice = [choice[int(torch.randint(len(choice), (), generator=generator, device=generator.device))]]
        return [op for op in self.ops if op in fixed or op in choice]

    def sample_params(self, n: int, generator: torch.Generator, device,
                      ops: list[str] | None = None) -> dict[str, torch.Tensor]:
        """Random parameters of `ops` (default: all of the strategy's) for n samples: name -> (n, ...) uniform
        [0, 1) tensor on `device`."""
        return {name: _rand(n, generator, device, *shape)
                for op in (self.ops if ops is None else ops) for name, shape in _OPS[op][1].items()}

    def apply(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Augment x (N, C, H, W) by the ops whose parameters are given (parameters for one sample are used for
        the whole batch), in the strategy's order."""
        params = {k: v.to(x.device).expand(x.shape[0], *v.shape[1:]) for k, v in params.items()}
        for op in self.ops:
            if all(name in params for name in _OPS[op][1]):
                x = _OPS[op][0](x, params)
        return x

    def __call__(self, x: torch.Tensor, generator: torch.Generator, shared: bool = False) -> torch.Tensor:
        """Augment with the mode's ops and fresh parameters: one set per sample, or (shared=True) one set for the
        whole batch, so that real and synthetic images concatenated in one batch get exactly the same transform
        (siamese; the same op too, as the originals' shared seed gives)."""
        if not self.ops:
            return x
        ops = self.draw_ops(generator)
        return self.apply(x, self.sample_params(1 if shared else x.shape[0], generator, x.device, ops))


def _beta(beta: float, generator: torch.Generator) -> float:
    """lam ~ Beta(beta, beta) from `generator`. torch.distributions would use the global RNG, so for beta != 1
    a NumPy generator seeded by one draw from `generator` samples it; Beta(1, 1) is Uniform(0, 1)."""
    if beta == 1.0:
        return float(torch.rand((), generator=generator, device=generator.device))
    seed = int(torch.randint(2 ** 62, (1,), generator=generator, device=generator.device))
    return float(np.random.default_rng(seed).beta(beta, beta))


def _targets(y: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """(N,) integer labels as one-hot rows, or (N, num_classes) soft targets as they are."""
    if y.dim() == 2 and y.shape[1] == num_classes and y.is_floating_point():
        return y.to(dtype)
    if y.dim() != 1 or y.is_floating_point():
        raise DreamddError(f"cutmix needs (N,) integer labels or (N, {num_classes}) soft targets, "
                           f"got shape {tuple(y.shape)} of {y.dtype}")
    # scatter rather than F.one_hot, which reads the labels' range back (a host sync on a GPU)
    return torch.zeros(y.shape[0], num_classes, dtype=dtype, device=y.device).scatter_(1, y.long().unsqueeze(1), 1.0)


def cutmix(x: torch.Tensor, y: torch.Tensor, num_classes: int, generator: torch.Generator,
           beta: float = 1.0, prob: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix as in the paper's code: with probability `prob`, paste one box (area 1 - lam, lam ~ Beta(beta, beta))
    from a permuted partner into every image. Returns (images, soft targets (N, num_classes)), the targets mixed
    by the box's actual area. Otherwise x unchanged and one-hot targets. Differentiable w.r.t. x."""
    if not 0.0 <= prob <= 1.0:
        raise DreamddError(f"cutmix prob must lie in [0, 1], got {prob}")
    targets = _targets(y, num_classes, x.dtype if x.is_floating_point() else torch.float32).to(x.device)
    if prob == 0.0 or float(torch.rand((), generator=generator, device=generator.device)) >= prob:
        return x, targets
    if beta <= 0:
        raise DreamddError(f"cutmix beta must be > 0, got {beta}; set the cutmix prob to 0 to disable CutMix")
    n, _, h, w = x.shape
    lam = _beta(beta, generator)
    perm = torch.randperm(n, generator=generator, device=generator.device).to(x.device)
    cut = math.sqrt(1.0 - lam)
    box = []
    for size in (h, w):
        length = int(size * cut)
        center = int(torch.randint(size, (), generator=generator, device=generator.device))
        box.append((min(max(center - length // 2, 0), size), min(max(center + length // 2, 0), size)))
    (r0, r1), (c0, c1) = box
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    inside = ((rows >= r0) & (rows < r1))[:, None] & ((cols >= c0) & (cols < c1))[None, :]
    mixed = torch.where(inside, x[perm], x)
    lam = 1.0 - (r1 - r0) * (c1 - c0) / (h * w)
    return mixed, targets * lam + targets[perm] * (1.0 - lam)


def soft_cross_entropy(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the cross-entropy against soft targets (rows summing to 1)."""
    return -(soft_targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
