"""Pictures of a run: the grid of synthetic images per class."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from .rundir import atomic_write


def image_grid(images: torch.Tensor, labels: torch.Tensor, num_classes: int, max_per_class: int = 10,
               pad: int = 1) -> torch.Tensor:
    """One row per class, up to `max_per_class` images each, as a (C, H, W) tensor in [0, 1]."""
    images = images.detach().cpu().float().clamp(0, 1)
    c, h, w = images.shape[1:]
    cols = max(1, min(max_per_class, max(int((labels == k).sum()) for k in range(num_classes))))
    grid = torch.ones(c, num_classes * (h + pad) + pad, cols * (w + pad) + pad)
    for k in range(num_classes):
        for j, img in enumerate(images[labels.cpu() == k][:cols]):
            top, left = pad + k * (h + pad), pad + j * (w + pad)
            grid[:, top:top + h, left:left + w] = img
    return grid


def save_grid(path: str | os.PathLike, images: torch.Tensor, labels: torch.Tensor,
              class_names: Sequence[str], max_per_class: int = 10, title: str | None = None) -> Path:
    """Write the class-by-row grid as a PNG with class names on the left."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = image_grid(images, labels, len(class_names), max_per_class)
    rows = len(class_names)
    cols = grid.shape[2] / (grid.shape[1] / rows)   # grid width in units of one row's height
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * cols, 0.3 + 0.8 * rows), dpi=100)
    pixels = grid.permute(1, 2, 0).numpy()
    ax.imshow(pixels[..., 0] if pixels.shape[2] == 1 else pixels, cmap="gray" if pixels.shape[2] == 1 else None,
              vmin=0, vmax=1, interpolation="nearest")
    step = grid.shape[1] / rows
    ax.set_yticks([step * (k + 0.5) for k in range(rows)])
    ax.set_yticklabels(list(class_names), fontsize=8)
    ax.set_xticks([])
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return path
