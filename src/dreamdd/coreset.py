"""Coreset baselines: N real images per class chosen by a selector (random, herding, k-center, DREAM's
representative selection) in the embedding of a network trained briefly on the real data."""
from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from .config import Config, model_options
from .data import LoadedDataset
from .errors import DreamddError
from .seeding import generator
from .registry import coreset_methods
from .selection import create_selector
from .precision import resolve as resolve_precision
from .training import build_network, make_augment, sgd, train_step



def feature_network(config: Config, data: LoadedDataset, device: torch.device, epochs: int,
                    quiet: bool = True) -> nn.Module:
    """The distillation model trained `epochs` epochs on the real training split (its features rank samples)."""
    info = data.info
    net = build_network(config.model.name, info.num_classes, info.channels, info.image_size,
                        model_options(config), config.seed, "coreset-features", device=device)
    optimizer = sgd(net, config.distill.net_lr, config.distill.net_momentum, config.distill.net_weight_decay)
    augment = make_augment(config.distill.net_augment, config.distill.net_augment_mode)
    g = generator(config.seed, "coreset-features")
    bank = data.train
    batch = config.distill.net_batch
    steps = epochs * -(-len(bank) // batch)
    for _ in tqdm(range(steps), desc="feature network", unit="step", disable=quiet, leave=False):
        idx = bank.sample(batch, g)
        train_step(net, optimizer, info.normalize(bank.batch(idx, device)), bank.labels[idx].to(device),
                   info.num_classes, g, augment, config.distill.cutmix_prob,
                   precision=resolve_precision(config.precision, device))
    return net.eval()


def select_coreset(data: LoadedDataset, method: str, per_class: int, net: nn.Module | None, seed: int,
                   device: torch.device) -> torch.Tensor:
    """Indices into the training split: `per_class` images of every class chosen by `method`."""
    if method not in coreset_methods():
        raise DreamddError(f"unknown coreset method '{method}'; use one of {', '.join(coreset_methods())}")
    bank = data.train
    smallest = min(bank.class_counts())
    if per_class > smallest:
        raise DreamddError(f"--per-class {per_class} is larger than the smallest class ({smallest} images); "
                           "lower it")
    selector = create_selector(method) if method != "representative" else create_selector("dream", interval=1)
    g = generator(seed, "coreset", method)
    chosen = [selector.select(c, bank.class_indices(c), per_class, net=net, generator=g,
                              images_fn=lambda idx: data.info.normalize(bank.batch(idx, device)))
              for c in range(data.info.num_classes)]
    return torch.cat([c.cpu() for c in chosen])
