"""Network training pieces shared by distillation (updates on real data) and evaluation (on synthetic data)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from . import compilation
from .augment import SiameseAugment, cutmix, soft_cross_entropy
from .devices import place_network
from .distributed import World
from .models import create_model
from .precision import autocast
from .seeding import global_seed


def build_network(name: str, num_classes: int, channels: int, image_size: tuple[int, int], options: dict,
                  seed: int, *keys: object, device: torch.device) -> nn.Module:
    """A freshly initialised network whose weights depend only on (seed, keys), on `device` in its preferred
    memory layout (devices.place_network)."""
    with global_seed(seed, "network", *keys):
        net = create_model(name, num_classes=num_classes, channels=channels, image_size=image_size, **options)
    return place_network(net, device)


def sgd(net: nn.Module, lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    return torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


def train_step(net: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               num_classes: int, generator: torch.Generator, augment: SiameseAugment | None,
               cutmix_prob: float, cutmix_beta: float = 1.0, precision: str = "fp32",
               world: World | None = None) -> torch.Tensor:
    """One SGD step on a normalized batch: per-sample DSA, then CutMix, then soft-target cross-entropy; the
    network's forward (and so its backward) in `precision` (resolved: fp32 or bf16), the loss in fp32.

    With a `world` of several ranks (each holding the same batch, drawn from the same stream), each rank takes the
    loss of its share of the augmented batch, weighted by the share's size, and the gradients are summed over
    ranks: the full batch's mean gradient up to float rounding, the same network on every rank. A network with
    batch norm (whose statistics would differ on a share) takes the whole batch on every rank instead. Returns the
    loss (this rank's share) detached, as a tensor: reading it is the caller's choice (a host sync on a GPU)."""
    net.train()
    if augment is not None:
        x = augment(x, generator, shared=False)
    x, targets = cutmix(x, y, num_classes, generator, beta=cutmix_beta, prob=cutmix_prob)
    shared = world is not None and world.distributed and not has_batch_norm(net)
    part = world.share(x.shape[0]) if shared else slice(0, x.shape[0])
    optimizer.zero_grad(set_to_none=True)
    if part.stop > part.start:
        with autocast(precision, x.device):
            logits = compilation.forward(net)(x[part])
        loss = soft_cross_entropy(logits.float(), targets[part])
        if shared:
            loss = loss * ((part.stop - part.start) / x.shape[0])
        loss.backward()
        value = loss.detach()
    else:                               # a rank whose share of a small batch is empty
        value = torch.zeros((), device=x.device)
    if shared:
        world.sum_gradients(net)
    optimizer.step()
    return value


def has_batch_norm(net: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


ACCURACY_CHUNK = 1000     # test images per forward pass when measuring accuracy (memory, not results)


@torch.no_grad()
def accuracy(net: nn.Module, batches: Callable[[torch.Tensor], torch.Tensor], labels: torch.Tensor,
             chunk: int = ACCURACY_CHUNK) -> float:
    """Top-1 accuracy (%) over a split; `batches(indices)` gives the normalized images of those indices."""
    if len(labels) == 0:
        return float("nan")
    net.eval()
    forward = compilation.forward(net)
    correct = 0
    for start in range(0, len(labels), chunk):
        idx = torch.arange(start, min(start + chunk, len(labels)))
        pred = forward(batches(idx)).argmax(1).cpu()
        correct += int((pred == labels[idx].cpu()).sum())
    return 100.0 * correct / len(labels)


def make_augment(strategy: str, mode: str = "all") -> SiameseAugment | None:
    """The DSA of a strategy and mode (augment.MODES), or None for the empty strategy."""
    return SiameseAugment(strategy, mode) if strategy else None
