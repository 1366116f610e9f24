"""DREAM+ (Liu et al., arXiv 2310.15052) on IDC's loop: bidirectional matching (mean embedding + gradients, the
same metric, weights 1:1), n samples per sub-cluster (select.per_cluster) and one warm-up epoch on real data
after every network initialisation and before the representative initialisation, so that the clustering features
come from a slightly trained network."""
from __future__ import annotations

import torch

from ..seeding import generator
from ..training import sgd
from .gradient import feature_distance, forward, gradient_distance
from .idc import IDC


class DreamPlus(IDC):
    """IDC's loop with DREAM+'s bidirectional loss and a warm-up epoch after each network initialisation."""

    name = "dreamplus"

    def warm_up(self, net, optimizer, g: torch.Generator) -> None:
        """dreamplus.warmup_epochs epochs on real data (at most warmup_images images) with IDC's network update."""
        cfg = self.config.dreamplus
        images = len(self.ctx.data.train) * cfg.warmup_epochs
        if cfg.warmup_images is not None:
            images = min(images, cfg.warmup_images)
        if images > 0:
            self.ctx.train_on_real(net, optimizer, g, images)

    def prepare_network(self, it: int, g: torch.Generator):
        net, optimizer = super().prepare_network(it, g)
        self.warm_up(net, optimizer, g)
        return net, optimizer

    def init_network(self):
        """The representative initialisation clusters with a warmed-up network, as condense_improve.py trains its
        network one epoch on real data before building the init."""
        cfg = self.config.distill
        net = super().init_network()
        net.train()
        self.warm_up(net, sgd(net, cfg.net_lr, cfg.net_momentum, cfg.net_weight_decay),
                     generator(self.config.seed, "init-warmup"))
        return net

    def class_loss(self, c: int, net, synthetic, g: torch.Generator) -> torch.Tensor:
        cfg = self.config
        with self.ctx.timed("match"):
            real, real_labels, syn, syn_labels = self.ctx.paired_batches(c, net, synthetic, g, cfg.match.batch_real,
                                                                         self.augment)
            with torch.no_grad():
                real_mean = forward(net, real, self.ctx.precision, embed=True, once_differentiated=True).mean(0)
            # its own forward, differentiated once (the gradient term below has its own, differentiated twice)
            syn_mean = forward(net, syn, self.ctx.precision, embed=True, once_differentiated=True).mean(0)
            features = feature_distance(real_mean, syn_mean, cfg.match.metric)
            gradients = gradient_distance(self.objective.real_gradients(net, real, real_labels),
                                          self.objective.syn_gradients(net, syn, syn_labels), cfg.match.metric)
            return cfg.dreamplus.feature_weight * features + cfg.dreamplus.gradient_weight * gradients
