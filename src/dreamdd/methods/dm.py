"""DM, distribution matching (Zhao and Bilen, WACV 2023): a freshly sampled network every iteration, never trained;
per class, the mean penultimate embedding of the (siamese-augmented) real batch should equal that of the
synthetic images. The loss is summed over classes and the images take one step per iteration."""
from __future__ import annotations

import torch

from ..training import make_augment
from .base import Method
from .gradient import forward


class DM(Method):
    name = "dm"
    image_space = "normalized"   # DM's main_DM.py learns the normalized images and never clamps them
    clamps = False
    # no selector reset: DREAM re-clusters every select.interval iterations, embedding with the network sampled
    # at that iteration (the selector's state is checkpointed, so resume stays exact)
    reselects_every_iteration = False

    def __init__(self, ctx):
        super().__init__(ctx)
        self.augment = make_augment(self.config.dm.augment, self.config.dm.augment_mode)

    def outer_iteration(self, it: int, synthetic, image_optimizer) -> torch.Tensor:
        cfg, ctx = self.config, self.ctx
        net = ctx.network("distill", it)
        net.train()
        for p in net.parameters():
            p.requires_grad_(False)
        loss = 0
        with ctx.timed("match"):    # the selector's share inside is counted as selection
            for c in ctx.classes:
                real, _, syn, _ = ctx.paired_batches(c, net, synthetic, ctx.rng(it, "class", c), cfg.match.batch_real,
                                                     self.augment)
                with torch.no_grad():
                    real_mean = forward(net, real, ctx.precision, embed=True, once_differentiated=True).mean(0)
                syn_mean = forward(net, syn, ctx.precision, embed=True, once_differentiated=True).mean(0)
                loss = loss + (real_mean - syn_mean).pow(2).sum()
        value = ctx.image_step(loss, image_optimizer) / len(ctx.classes)
        ctx.inner_step_done()
        return value
