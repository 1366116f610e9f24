"""Herding (Welling 2009): greedily add the sample that keeps the running mean closest to the class mean."""
from __future__ import annotations

import torch
from torch import nn

from .base import ImagesFn, Selector, register_selector
from .representative import embed_images


def herding_order(features: torch.Tensor, n: int) -> torch.Tensor:
    """Positions of n samples, in the order herding picks them (deterministic: no randomness involved)."""
    target = features.mean(0)
    chosen: list[int] = []
    total = torch.zeros_like(target)
    available = torch.ones(features.shape[0], dtype=torch.bool, device=features.device)
    for step in range(1, min(n, features.shape[0]) + 1):
        gap = ((total.unsqueeze(0) + features) / step - target).pow(2).sum(1)
        gap[~available] = float("inf")
        pick = int(gap.argmin())
        chosen.append(pick)
        available[pick] = False
        total += features[pick]
    return torch.tensor(chosen, dtype=torch.long)


@register_selector("herding")
class HerdingSelector(Selector):
    """Herding in the network's embedding space; a coreset baseline."""

    name = "herding"

    def __init__(self, chunk_size: int = 512):
        self.chunk_size = chunk_size

    def select(self, c: int, candidates: torch.Tensor, n: int, *, net: nn.Module | None = None,
               images_fn: ImagesFn | None = None, generator: torch.Generator) -> torch.Tensor:
        if candidates.numel() <= n:
            return candidates
        features = embed_images(net, images_fn, candidates, self.chunk_size)
        return candidates[herding_order(features, n).to(candidates.device)]
