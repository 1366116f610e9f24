"""Greedy coreset selectors in the network's embedding space: herding and k-center greedy (baselines)."""
from __future__ import annotations

import torch
from torch import nn

from .base import ImagesFn, Selector
from .kmeans import squared_distances
from .representative import EMBED_CHUNK, embed_images


def herding_order(features: torch.Tensor, n: int) -> torch.Tensor:
    """Herding (Welling 2009): positions of n samples, each keeping the running mean closest to the class mean."""
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


def kcenter_order(features: torch.Tensor, n: int, first: int) -> torch.Tensor:
    """k-center greedy (Sener and Savarese 2018): from `first`, repeatedly the sample farthest from those chosen."""
    chosen = [first]
    nearest = squared_distances(features, features[first:first + 1]).squeeze(1)
    for _ in range(1, min(n, features.shape[0])):
        pick = int(nearest.argmax())
        chosen.append(pick)
        nearest = torch.minimum(nearest, squared_distances(features, features[pick:pick + 1]).squeeze(1))
    return torch.tensor(chosen, dtype=torch.long)


class EmbeddingOrderSelector(Selector):
    """Embeds a class's candidates and keeps the first n of an order computed on the features."""

    def __init__(self, chunk_size: int = EMBED_CHUNK):
        self.chunk_size = chunk_size

    def order(self, features: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def select(self, c: int, candidates: torch.Tensor, n: int, *, net: nn.Module | None = None,
               images_fn: ImagesFn | None = None, generator: torch.Generator) -> torch.Tensor:
        if candidates.numel() <= n:
            return candidates
        features = embed_images(net, images_fn, candidates, self.chunk_size)
        return candidates[self.order(features, n, generator).to(candidates.device)]


class HerdingSelector(EmbeddingOrderSelector):
    name = "herding"

    def order(self, features, n, generator):
        return herding_order(features, n)


class KCenterSelector(EmbeddingOrderSelector):
    """k-center greedy from a random first sample."""
    name = "kcenter"

    def order(self, features, n, generator):
        first = int(torch.randint(features.shape[0], (1,), generator=generator, device=generator.device))
        return kcenter_order(features, n, first)
