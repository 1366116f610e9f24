"""`--deterministic`: the same seed and settings give the same bytes on a CUDA device too.

On the CPU dreamdd is deterministic without it (every random stream is seeded, and the CPU kernels it uses do not
accumulate in an arbitrary order), and the test suite checks identical bytes. On CUDA several kernels accumulate
with atomics, so two runs differ by float rounding that grows over a distillation. mode(True) turns on
torch.use_deterministic_algorithms (with cuBLAS's fixed workspace and cuDNN's deterministic algorithms), under
which PyTorch raises on the kernels that have no deterministic version; the places where dreamdd would meet one
call the exact equivalents below instead, on every device, so a run in this mode gives the same result each time
(on the same device, software and settings), while differing from a run without it by float rounding:

- multi-formation decoding's bilinear upsampling (synthetic.decode): two interpolation matrices, resize_bilinear();
- DSA's scale and rotate (grid_sample): four gathers of corner pixels, sample_bilinear();
- k-means++'s cumulative distribution (a float cumsum): an integer cumsum in fixed point, cumulative();
- global average pooling of the ResNet and DenseNet evaluators (adaptive_avg_pool2d): a mean over the pixels,
  which they use in any mode.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch

CUBLAS_WORKSPACE = ":4096:8"    # what cuBLAS needs to be deterministic (CUDA's reproducibility notes)
FIXED_POINT_BITS = 52           # resolution of cumulative(): 2^-52 of the total


def enabled() -> bool:
    """Whether deterministic algorithms are on (mode(True), or the caller's own torch setting)."""
    return torch.are_deterministic_algorithms_enabled()


@contextlib.contextmanager
def mode(on: bool) -> Iterator[None]:
    """Deterministic algorithms on (`on`) for the block, the earlier settings restored after it; off: nothing."""
    if not on:
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)    # read when cuBLAS starts
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]


def _interpolation_matrix(size_in: int, size_out: int, like: torch.Tensor) -> torch.Tensor:
    """(size_out, size_in) weights of bilinear resizing along one axis, as F.interpolate(align_corners=False)
    computes them: source coordinate (i + 0.5) * in / out - 0.5, clamped at 0, between its two neighbours."""
    scale = size_in / size_out
    source = ((torch.arange(size_out, dtype=torch.float64) + 0.5) * scale - 0.5).clamp(min=0)
    low = source.floor().long().clamp(max=size_in - 1)
    high = (low + 1).clamp(max=size_in - 1)
    weight = source - low
    matrix = torch.zeros(size_out, size_in, dtype=torch.float64)
    rows = torch.arange(size_out)
    matrix.index_put_((rows, low), 1 - weight, accumulate=True)
    matrix.index_put_((rows, high), weight, accumulate=True)
    return matrix.to(like.device, like.dtype)


def resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """F.interpolate(x, size, mode="bilinear", align_corners=False) as two matrix products (whose backward is
    deterministic on CUDA, unlike upsample_bilinear2d's)."""
    rows = _interpolation_matrix(x.shape[-2], size[0], x)
    cols = _interpolation_matrix(x.shape[-1], size[1], x)
    return rows @ x @ cols.T


def sample_bilinear(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True) by gathering the four
    corner pixels of each sampling point (gather's backward is deterministic on CUDA, grid_sample's is not)."""
    n, c, h, w = x.shape
    gx = (grid[..., 0] + 1) * (w - 1) / 2                  # (N, Ho, Wo) pixel coordinates
    gy = (grid[..., 1] + 1) * (h - 1) / 2
    x0, y0 = gx.floor(), gy.floor()
    flat = x.reshape(n, c, h * w)
    out = x.new_zeros(n, c, grid.shape[1] * grid.shape[2])
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        cx, cy = x0 + dx, y0 + dy
        weight = (1 - (gx - cx).abs()) * (1 - (gy - cy).abs())
        inside = (cx >= 0) & (cx <= w - 1) & (cy >= 0) & (cy <= h - 1)
        index = (cy.clamp(0, h - 1) * w + cx.clamp(0, w - 1)).long().reshape(n, 1, -1).expand(n, c, -1)
        out = out + flat.gather(2, index) * (weight * inside).reshape(n, 1, -1).to(x.dtype)
    return out.reshape(n, c, grid.shape[1], grid.shape[2])


def cumulative(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cumulative sums, total) of non-negative `weights` for inverse-CDF sampling (draw u * total, then
    searchsorted), in fixed point: each weight as an integer share of 2^FIXED_POINT_BITS of the whole, summed in
    int64, which CUDA sums deterministically (a float cumsum it does not). Where every weight is 0 the shares are
    equal."""
    total = weights.double().sum()
    share = torch.where(total > 0, weights.double() / total, torch.full_like(weights, 1 / weights.numel(),
                                                                             dtype=torch.float64))
    steps = (share * 2.0 ** FIXED_POINT_BITS).floor().long().cumsum(0)
    return steps, steps[-1]
