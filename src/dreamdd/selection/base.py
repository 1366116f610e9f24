"""The interface every real-batch selector implements (the selectors are named in dreamdd.registry)."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..registry import SELECTORS

ImagesFn = Callable[[torch.Tensor], torch.Tensor]
"""images_fn(indices) -> normalized float images (N, C, H, W) on the compute device, ready for the network."""


class Selector:
    """Chooses which real images of a class are matched against (a common select() interface).

    Selectors never read files or train: they get the class's candidate indices into the training bank and, when
    they need pixels, `images_fn` to fetch them. Randomness comes only from the `generator` argument.
    """

    name = "base"

    def select(self, c: int, candidates: torch.Tensor, n: int, *, net: nn.Module | None = None,
               images_fn: ImagesFn | None = None, generator: torch.Generator) -> torch.Tensor:
        """A subset of `candidates` (LongTensor, the indices of class c) of length min(n, len(candidates))."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget cached choices; called whenever the matching network is re-initialised."""

    def timings(self) -> dict[str, float]:
        """Seconds spent inside the selector, by part, for the run's timing record."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What must survive a checkpoint (nothing for stateless selectors)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict() returned."""


def random_subset(candidates: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """n distinct candidates drawn uniformly (all of them, in order, when there are at most n)."""
    if candidates.numel() <= n:
        return candidates
    order = torch.randperm(candidates.numel(), generator=generator, device=generator.device)[:n]
    return candidates[order.to(candidates.device)]


def create_selector(name: str, **kwargs) -> Selector:
    """A selector by name (dreamdd.registry.SELECTORS): "random" (IDC), "dream" / "representative" (k-means
    representatives), "herding" or "kcenter"."""
    return SELECTORS.create(name, **kwargs)


def list_selectors() -> list[str]:
    return SELECTORS.names(aliases=True)
