"""DM, distribution matching (Zhao and Bilen, WACV 2023): a freshly sampled network every iteration, never trained;
per class, the mean penultimate embedding of the (siamese-augmented) real batch should equal that of the
synthetic images. The loss is summed over classes and the images take one step per iteration."""
from __future__ import annotations

from typing import Any, Callable

import torch

from ..seeding import generator
from ..training import make_augment
from .base import Method, register_method


@register_method("dm")
class DM(Method):
    name = "dm"
    image_space = "normalized"   # DM's main_DM.py learns the normalized images and never clamps them
    clamps = False

    def __init__(self, host):
        super().__init__(host)
        self.augment = make_augment(self.config.dm.augment, self.config.dm.augment_mode)

    def outer_iteration(self, it: int, synthetic, image_optimizer, progress: Callable[[int], Any]) -> float:
        cfg, host = self.config, self.host
        g = generator(cfg.seed, "outer", it)
        net = host.network("distill", it)
        net.train()
        for p in net.parameters():
            p.requires_grad_(False)
        # no selector reset: DREAM re-clusters every select.interval iterations, embedding with the network
        # sampled at that iteration (the selector's state is checkpointed, so resume stays exact)
        loss = 0
        with host.timings.part("match"):    # the selector's share inside is counted as selection
            for c in host.classes:
                real, _, syn, _ = self.paired_batches(c, net, synthetic, g, cfg.match.batch_real, self.augment)
                with torch.no_grad():
                    real_mean = net.embed(real).mean(0)
                loss = loss + (real_mean - net.embed(syn).mean(0)).pow(2).sum()
        value = self.image_step(loss, image_optimizer, it) / len(host.classes)
        host.timings.inner_iterations += 1
        progress(1)
        return value
