"""k-center greedy (Sener and Savarese 2018): repeatedly add the sample farthest from those already chosen."""
from __future__ import annotations

import torch
from torch import nn

from .base import ImagesFn, Selector, register_selector
from .kmeans import squared_distances
from .representative import embed_images


def kcenter_order(features: torch.Tensor, n: int, first: int) -> torch.Tensor:
    """Positions of n samples chosen greedily to cover the set, starting from position `first`."""
    chosen = [first]
    nearest = squared_distances(features, features[first:first + 1]).squeeze(1)
    for _ in range(1, min(n, features.shape[0])):
        pick = int(nearest.argmax())
        chosen.append(pick)
        nearest = torch.minimum(nearest, squared_distances(features, features[pick:pick + 1]).squeeze(1))
    return torch.tensor(chosen, dtype=torch.long)


@register_selector("kcenter")
class KCenterSelector(Selector):
    """k-center greedy in the network's embedding space, from a random first sample; a coreset baseline."""

    name = "kcenter"

    def __init__(self, chunk_size: int = 512):
        self.chunk_size = chunk_size

    def select(self, c: int, candidates: torch.Tensor, n: int, *, net: nn.Module | None = None,
               images_fn: ImagesFn | None = None, generator: torch.Generator) -> torch.Tensor:
        if candidates.numel() <= n:
            return candidates
        features = embed_images(net, images_fn, candidates, self.chunk_size)
        first = int(torch.randint(candidates.numel(), (1,), generator=generator, device=generator.device))
        return candidates[kcenter_order(features, n, first).to(candidates.device)]
