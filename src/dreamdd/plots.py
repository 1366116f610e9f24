"""Figures of runs (matplotlib, Agg backend): the synthetic-image grid, accuracy and loss against outer iteration.

The plotting functions take run records from `dreamdd.runs` (anything with `.label`, `.points(metric)`,
`.final_point(metric)` and `.losses()`), draw them and write a PNG atomically.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .io.rundir import atomic_write

if TYPE_CHECKING:
    import torch

    from .runs import RunRecord

METRIC_LABELS = {"val_mean": "validation accuracy (%)", "test_mean": "test accuracy (%)"}


def metric_label(metric: str) -> str:
    """The axis label of an accuracy key of the eval events: says which split it was measured on."""
    return METRIC_LABELS.get(metric, metric)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    _pyplot().close(fig)
    return path


# ---- the grid of synthetic images ----------------------------------------------------------------------------
def image_grid(images: torch.Tensor, labels: torch.Tensor, num_classes: int, max_per_class: int = 10,
               pad: int = 1) -> torch.Tensor:
    """One row per class, up to `max_per_class` images each, as a (C, H, W) tensor in [0, 1]."""
    import torch
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
    plt = _pyplot()
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
    return _save(fig, path)


# ---- curves --------------------------------------------------------------------------------------------------
def _protocol(event: dict) -> str:
    """'2 x 40 epochs' from an eval event (networks trained x epochs each), or '' when it does not say."""
    if event.get("repeats") is None or event.get("epochs") is None:
        return ""
    return f"{event['repeats']} × {event['epochs']} epochs"


def plot_accuracy(runs: Sequence["RunRecord"], path: str | os.PathLike, metric: str = "val_mean",
                  title: str | None = None, mark_finals: bool = False) -> Path:
    """Accuracy (`metric` of the eval events) against outer iteration, one colour per run.

    The periodic evaluations are a line (with a mean ± std band where more than one network was trained); the
    final evaluation is a separate marker with an error bar, joined by a dotted line because it trains its
    networks with its own (usually longer) protocol. With `mark_finals`, a dotted horizontal line marks each
    run's final accuracy (what `dreamdd compare` measures the other run against).
    """
    from matplotlib.ticker import MaxNLocator
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9.5, 4.2), dpi=100)
    std_key = metric.replace("_mean", "_std")
    drawn = False
    for k, run in enumerate(runs):
        color = f"C{k % 10}"
        points = run.points(metric)
        final = run.final_event(metric)
        if points:
            xs = [e["iteration"] for e in points]
            ys = [e[metric] for e in points]
            sd = [e.get(std_key) or 0.0 for e in points]
            protocol = _protocol(points[-1])
            ax.plot(xs, ys, "o-", color=color, ms=4,
                    label=f"{run.label}: periodic" + (f" ({protocol})" if protocol else ""))
            if any((e.get("repeats") or 1) > 1 for e in points):
                ax.fill_between(xs, [y - s for y, s in zip(ys, sd)], [y + s for y, s in zip(ys, sd)],
                                color=color, alpha=0.18, linewidth=0)
            drawn = True
        if final is not None:
            fx, fy, fs = final["iteration"], final[metric], final.get(std_key) or 0.0
            if points:
                ax.plot([points[-1]["iteration"], fx], [points[-1][metric], fy], ":", color=color, lw=1)
            protocol = _protocol(final)
            ax.errorbar([fx], [fy], yerr=[fs], fmt="s", color=color, ms=7, capsize=4, mec="black", mew=0.6,
                        label=f"{run.label}: final" + (f" ({protocol})" if protocol else ""))
            drawn = True
        if mark_finals:
            last = run.final_accuracy(metric)
            if last is not None:
                ax.axhline(last[1], color=color, ls=":", lw=1, label=f"{run.label}'s final accuracy, {last[1]:.2f}")
    if not drawn:
        ax.text(0.5, 0.5, f"no {metric_label(metric)} recorded", ha="center", va="center",
                transform=ax.transAxes, color="gray")
    ax.set_xlabel("outer iteration")
    ax.set_ylabel(metric_label(metric))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    name = metric_label(metric).replace(" (%)", "")
    ax.set_title(title or f"{name[:1].upper()}{name[1:]} against outer iteration", fontsize=10)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return _save(fig, path)


def plot_loss(runs: Sequence["RunRecord"], path: str | os.PathLike) -> Path:
    """The matching loss of every outer iteration (mean over its classes and inner steps), one line per run."""
    from matplotlib.ticker import MaxNLocator
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9.5, 3.2), dpi=100)
    drawn = False
    for k, run in enumerate(runs):
        losses = run.losses()
        if losses:
            ax.plot([i for i, _ in losses], [v for _, v in losses], ".-" if len(losses) <= 60 else "-",
                    color=f"C{k % 10}", label=run.label)
            drawn = True
    if drawn:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    else:
        ax.text(0.5, 0.5, "no iterations recorded", ha="center", va="center", transform=ax.transAxes,
                color="gray")
    ax.set_xlabel("outer iteration")
    ax.set_ylabel("matching loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Matching loss against outer iteration (mean over classes and inner steps)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)
