"""DC (Zhao, Mopuri and Bilen, ICLR 2021) and DSA (Zhao and Bilen, ICML 2021): per-layer gradient matching with
DC's distance over all parameters; per outer iteration a fresh network and `outer_loop` rounds (DC's own name,
from its code; in dreamdd's terms the inner steps of one outer iteration) of {one image step on the loss summed
over classes, then the network trained on the synthetic set for `inner_loop` epochs}.
DSA is DC with differentiable siamese augmentation (dc.augment) of the real and synthetic batches, and the same
augmentation per sample when the network trains on the synthetic set; DC uses none."""
from __future__ import annotations

import torch

from ..training import make_augment, sgd, train_step
from .base import Method
from .gradient import GradientMatching


def dc_loops(ipc: int) -> tuple[int, int]:
    """DC's (outer_loop, inner_loop) by IPC, from its code's get_loops (other IPCs: the nearest listed one)."""
    table = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}
    nearest = min(table, key=lambda k: (abs(k - ipc), k))
    return table[nearest]


class DC(Method):
    name = "dc"
    image_space = "normalized"   # DC's main.py learns the normalized images and never clamps them
    clamps = False
    ends_at_deadline = True

    def __init__(self, ctx):
        super().__init__(ctx)
        cfg = self.config
        self.objective = GradientMatching(cfg.dc.metric, cfg.dc.parameters, ctx.precision)
        self.augment = self.make_augment()
        default_outer, default_inner = dc_loops(cfg.synth.ipc)
        self.rounds = cfg.dc.outer_loop or default_outer   # DC's outer_loop: rounds inside one outer iteration
        self.inner_loop = cfg.dc.inner_loop if cfg.dc.inner_loop is not None else default_inner

    def make_augment(self):
        return None

    def steps_per_iteration(self) -> int:
        return self.rounds

    def train_on_synthetic(self, net, optimizer, synthetic, g: torch.Generator) -> None:
        """`inner_loop` epochs of the network on a detached copy of the decoded synthetic set (DC's `epoch`; every
        class's images, gathered under torchrun, and the same training in every process), with DSA per-sample
        augmentation for DSA (dc.augment), none for DC."""
        ctx, cfg = self.ctx, self.config
        info = ctx.data.info
        with ctx.timed("network"):
            images, labels = ctx.whole_set(synthetic)
            images, labels = info.normalize(images), labels.to(images.device)
            for _ in range(self.inner_loop):
                order = torch.randperm(images.shape[0], generator=g).to(images.device)
                for start in range(0, images.shape[0], cfg.dc.batch_train):
                    idx = order[start:start + cfg.dc.batch_train]
                    train_step(net, optimizer, images[idx], labels[idx], info.num_classes, g,
                               self.augment, 0.0, precision=ctx.precision)

    def outer_iteration(self, it: int, synthetic, image_optimizer) -> torch.Tensor:
        cfg, ctx = self.config, self.ctx
        g = ctx.rng(it, "network")
        streams = {c: ctx.rng(it, "class", c) for c in ctx.classes}
        net = ctx.network("distill", it)
        net.train()
        net_optimizer = sgd(net, cfg.distill.net_lr, cfg.distill.net_momentum, cfg.distill.net_weight_decay)
        losses = []
        for round_ in range(self.rounds):
            loss = 0
            with ctx.timed("match"):    # the selector's share inside is counted as selection
                for c in ctx.classes:
                    real, real_labels, syn, syn_labels = ctx.paired_batches(c, net, synthetic, streams[c],
                                                                            cfg.match.batch_real, self.augment)
                    loss = loss + self.objective.loss(net, real, real_labels, syn, syn_labels)
            losses.append(ctx.image_step(loss, image_optimizer) / len(ctx.classes))
            if round_ < self.rounds - 1 and self.inner_loop > 0:
                self.train_on_synthetic(net, net_optimizer, synthetic, g)
            if not ctx.inner_step_done():    # the wall-time deadline: the images are learned up to here
                break
        return sum(losses) / len(losses)


class DSA(DC):
    """DC with differentiable siamese augmentation (dc.augment, DSA's 'color_crop_cutout_flip_scale_rotate')."""

    name = "dsa"

    def make_augment(self):
        return make_augment(self.config.dc.augment, self.config.dc.augment_mode)
