"""ZCA whitening (as kornia's ZCAWhitening, used by MTT on CIFAR): fitted on the training set with torch only,
applied as a fixed first layer so that images stay pixels in [0, 1] everywhere else."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


FIT_CHUNK = 2048     # images per step of the covariance sum (memory only: it is accumulated in float64)


@torch.no_grad()
def fit_zca(images_fn: Callable[[torch.Tensor], torch.Tensor], count: int, eps: float = 0.1,
            chunk: int = FIT_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (D,), matrix (D, D)) of the ZCA transform x -> (x - mean) @ matrix, fitted on `count` images that
    images_fn(indices) returns (normalized), accumulated in float64 chunks: covariance / (N - 1), eigen-
    decomposition, U diag(1 / sqrt(S + eps)) U^T."""
    total, outer = None, None
    for start in range(0, count, chunk):
        x = images_fn(torch.arange(start, min(start + chunk, count))).flatten(1).double().cpu()
        total = x.sum(0) if total is None else total + x.sum(0)
        outer = x.T @ x if outer is None else outer + x.T @ x
    mean = total / count
    cov = (outer - count * torch.outer(mean, mean)) / max(count - 1, 1)
    values, vectors = torch.linalg.eigh(cov)
    matrix = vectors @ torch.diag(1.0 / torch.sqrt(values.clamp(min=0) + eps)) @ vectors.T
    return mean.float(), matrix.float()


class ZCA(nn.Module):
    """A fixed whitening layer: (N, C, H, W) -> same shape, (x - mean) @ matrix on the flattened images."""

    def __init__(self, mean: torch.Tensor, matrix: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("matrix", matrix.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Always in fp32, also inside a bf16 autocast: the whitening matrix has a wide range of eigenvalues."""
        with torch.autocast(x.device.type, enabled=False):
            return ((x.float().flatten(1) - self.mean) @ self.matrix).view_as(x)


class Preprocessed(nn.Module):
    """`net` behind a fixed input transform; keeps embed() so selectors can cluster its features."""

    def __init__(self, transform: nn.Module, net: nn.Module):
        super().__init__()
        self.transform, self.net = transform, net

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.embed(self.transform(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.transform(x))
