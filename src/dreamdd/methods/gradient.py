"""Gradient matching, shared by IDC, DC, DSA and DREAM+: synthetic images should give the network the same
weight gradients as real ones. The distances live here, once."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import compilation
from ..errors import DreamddError
from ..models import matching_parameters
from ..precision import autocast

METRICS = ("mse", "l1", "dc")
PARAMETERS = ("conv", "all")


def _dc_layer_distance(g_real: torch.Tensor, g_syn: torch.Tensor) -> torch.Tensor:
    """DC's distance of one layer (Zhao et al. ICLR 2021, `distance_wb`): per output channel (row),
    1 - cosine similarity, summed; 1-D parameters (biases, norm scales) count zero."""
    if g_real.dim() == 1:
        return g_real.new_zeros(())
    a, b = g_real.reshape(g_real.shape[0], -1), g_syn.reshape(g_syn.shape[0], -1)
    return (1 - (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1) + 1e-6)).sum()


def gradient_distance(real_grads, syn_grads, metric: str) -> torch.Tensor:
    """Sum over layers of: the summed squared ("mse") or absolute ("l1") difference, or DC's per-output-channel
    1 - cosine ("dc")."""
    if metric not in METRICS:
        raise DreamddError(f"unknown gradient metric '{metric}'; use one of {', '.join(METRICS)}")
    total = syn_grads[0].new_zeros(())
    for g_real, g_syn in zip(real_grads, syn_grads):
        if metric == "dc":
            total = total + _dc_layer_distance(g_real, g_syn)
            continue
        diff = g_real - g_syn
        total = total + (diff.pow(2).sum() if metric == "mse" else diff.abs().sum())
    return total


def feature_distance(real_mean: torch.Tensor, syn_mean: torch.Tensor, metric: str) -> torch.Tensor:
    """Distance of two mean embeddings with the same metric as the gradients (DREAM+'s bidirectional term)."""
    if metric == "dc":
        return 1 - F.cosine_similarity(real_mean.flatten(), syn_mean.flatten(), dim=0, eps=1e-6)
    diff = real_mean - syn_mean
    return diff.pow(2).sum() if metric == "mse" else diff.abs().sum()


def select_parameters(net: nn.Module, which: str) -> list[nn.Parameter]:
    """IDC/DREAM match conv weights only ("conv"); DC/DSA match every parameter ("all"; 1-D ones count zero
    under the dc metric, as in DC's code)."""
    if which == "conv":
        return matching_parameters(net)
    if which == "all":
        return [p for p in net.parameters() if p.requires_grad]
    raise DreamddError(f"unknown parameter set '{which}'; use one of {', '.join(PARAMETERS)}")


def forward(net: nn.Module, x: torch.Tensor, precision: str, embed: bool = False,
            once_differentiated: bool = False) -> torch.Tensor:
    """The network's logits (or penultimate embedding) of `x`, computed in `precision` and returned in fp32, so
    that losses, distances and their reductions stay fp32. `once_differentiated`: autograd will differentiate
    this forward at most once (the real side of matching), so under --compile it may run compiled
    (dreamdd.compilation); the synthetic side is differentiated twice and stays eager."""
    if once_differentiated:
        run = compilation.embed(net) if embed else compilation.forward(net)
    else:
        run = net.embed if embed else net
    with autocast(precision, x.device):
        out = run(x)
    return out.float()


class GradientMatching:
    """Cross-entropy gradients of the chosen parameters on the real batch (detached) and the synthetic batch
    (in the graph), compared with `metric`; the network's forwards in `precision` (resolved: fp32 or bf16)."""

    def __init__(self, metric: str = "mse", parameters: str = "conv", precision: str = "fp32"):
        if metric not in METRICS:
            raise DreamddError(f"unknown gradient metric '{metric}'; use one of {', '.join(METRICS)}")
        select_parameters(nn.Linear(1, 1), parameters)   # validates the name
        self.metric, self.parameters, self.precision = metric, parameters, precision

    def real_gradients(self, net: nn.Module, real: torch.Tensor, real_labels: torch.Tensor):
        params = select_parameters(net, self.parameters)
        loss = F.cross_entropy(forward(net, real, self.precision, once_differentiated=True), real_labels)
        return [g.detach() for g in torch.autograd.grad(loss, params)]

    def syn_gradients(self, net: nn.Module, syn: torch.Tensor, syn_labels: torch.Tensor):
        params = select_parameters(net, self.parameters)
        loss = F.cross_entropy(forward(net, syn, self.precision), syn_labels)
        return torch.autograd.grad(loss, params, create_graph=True)

    def loss(self, net: nn.Module, real: torch.Tensor, real_labels: torch.Tensor,
             syn: torch.Tensor, syn_labels: torch.Tensor) -> torch.Tensor:
        return gradient_distance(self.real_gradients(net, real, real_labels),
                                 self.syn_gradients(net, syn, syn_labels), self.metric)
