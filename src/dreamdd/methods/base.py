"""The interface every matching objective implements, and the name -> method registry."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..errors import DreamddError


class MatchingMethod:
    """loss(net, real, real_labels, syn, syn_labels): a scalar, differentiable w.r.t. the synthetic images."""

    name = "base"

    def loss(self, net: nn.Module, real: torch.Tensor, real_labels: torch.Tensor,
             syn: torch.Tensor, syn_labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


_METHODS: dict[str, Callable[..., MatchingMethod]] = {}


def register_method(name: str):
    def wrap(factory):
        _METHODS[name] = factory
        return factory
    return wrap


def create_method(name: str, **kwargs) -> MatchingMethod:
    if name not in _METHODS:
        raise DreamddError(f"unknown method '{name}'; known: {', '.join(list_methods())}")
    return _METHODS[name](**kwargs)


def list_methods() -> list[str]:
    return sorted(_METHODS)
