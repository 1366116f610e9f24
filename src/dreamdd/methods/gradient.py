"""Gradient matching (IDC): synthetic images should give the network the same weight gradients as real ones."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DreamddError
from ..models import matching_parameters
from .base import MatchingMethod, register_method


def gradient_distance(real_grads, syn_grads, metric: str) -> torch.Tensor:
    """Sum over layers of the summed squared ("mse") or absolute ("l1") gradient difference."""
    total = syn_grads[0].new_zeros(())
    for g_real, g_syn in zip(real_grads, syn_grads):
        diff = g_real - g_syn
        total = total + (diff.pow(2).sum() if metric == "mse" else diff.abs().sum())
    return total


@register_method("idc")
class GradientMatching(MatchingMethod):
    """Cross-entropy gradients of the conv weights (no biases, norms or classifier), as in IDC and DREAM."""

    name = "idc"

    def __init__(self, metric: str = "mse"):
        if metric not in ("mse", "l1"):
            raise DreamddError(f"unknown gradient metric '{metric}'; use mse or l1")
        self.metric = metric

    def loss(self, net: nn.Module, real: torch.Tensor, real_labels: torch.Tensor,
             syn: torch.Tensor, syn_labels: torch.Tensor) -> torch.Tensor:
        params = matching_parameters(net)
        real_loss = F.cross_entropy(net(real), real_labels)
        real_grads = [g.detach() for g in torch.autograd.grad(real_loss, params)]
        syn_loss = F.cross_entropy(net(syn), syn_labels)
        syn_grads = torch.autograd.grad(syn_loss, params, create_graph=True)
        return gradient_distance(real_grads, syn_grads, self.metric)
