"""Uniformly random real batches: IDC's choice, and the baseline DREAM improves on."""
from __future__ import annotations

import torch
from torch import nn

from .base import ImagesFn, Selector, random_subset


class RandomSelector(Selector):
    """n distinct candidates drawn afresh at every call; needs neither the network nor the images."""

    name = "random"

    def select(self, c: int, candidates: torch.Tensor, n: int, *, net: nn.Module | None = None,
               images_fn: ImagesFn | None = None, generator: torch.Generator) -> torch.Tensor:
        return random_subset(candidates, n, generator)
