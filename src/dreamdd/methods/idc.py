"""IDC's loop (Kim et al., ICML 2022), the one DREAM was released in: a fresh network every outer iteration;
`inner_loop` rounds of {one gradient-matching image step per class, then the network trained on real data}."""
from __future__ import annotations

import torch

from ..training import make_augment, sgd
from .base import Method
from .gradient import GradientMatching


class IDC(Method):
    """Gradient matching of conv-weight gradients (mse or l1), one image step per class per round."""

    name = "idc"
    ends_at_deadline = True

    def __init__(self, ctx):
        super().__init__(ctx)
        self.objective = GradientMatching(self.config.match.metric, "conv", ctx.precision)
        self.augment = make_augment(self.config.match.augment, self.config.match.augment_mode)

    def steps_per_iteration(self) -> int:
        return self.config.distill.inner_loop

    def prepare_network(self, it: int, g: torch.Generator):
        """A fresh network and its optimizer for outer iteration `it` (DREAM+ also warms it up)."""
        cfg = self.config.distill
        net = self.ctx.network("distill", it)
        net.train()
        return net, sgd(net, cfg.net_lr, cfg.net_momentum, cfg.net_weight_decay)

    def class_loss(self, c: int, net, synthetic, g: torch.Generator) -> torch.Tensor:
        """The matching loss of class c: a real batch (chosen by the selector) against class c's synthetic images."""
        with self.ctx.timed("match"):    # the selector's share inside is counted as selection
            real, real_labels, syn, syn_labels = self.ctx.paired_batches(c, net, synthetic, g,
                                                                         self.config.match.batch_real, self.augment)
            return self.objective.loss(net, real, real_labels, syn, syn_labels)

    def outer_iteration(self, it: int, synthetic, image_optimizer) -> torch.Tensor:
        """Classes step in order 0..K-1 every round; a class another process owns is a zero-gradient step here
        (the image optimizer's momentum moves every image at every class step, as in IDC's code)."""
        cfg, ctx = self.config, self.ctx
        g = ctx.rng(it, "network")
        streams = {c: ctx.rng(it, "class", c) for c in ctx.classes}
        net, net_optimizer = self.prepare_network(it, g)
        losses = []
        for _ in range(cfg.distill.inner_loop):
            for c in range(ctx.data.info.num_classes):
                if c not in streams:
                    ctx.skip_class_step(image_optimizer)
                    continue
                losses.append(ctx.class_image_step(c, synthetic, image_optimizer,
                                                   lambda rows: self.class_loss(c, net, rows, streams[c])))
            if cfg.distill.n_data > 0:   # as IDC's code: after every round, the last one included
                ctx.train_on_real(net, net_optimizer, g, cfg.distill.n_data)
            if not ctx.inner_step_done():    # the wall-time deadline: the images are learned up to here
                break
        return sum(losses) / len(losses)
