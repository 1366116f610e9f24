"""DREAM+ (Liu et al., arXiv 2310.15052) on IDC's loop: bidirectional matching (mean embedding + gradients, the
same metric, weights 1:1), n samples per sub-cluster (select.per_cluster) and one warm-up epoch on real data
after every network initialisation, so that the clustering features come from a slightly trained network."""
from __future__ import annotations

import time

import torch

from .base import register_method
from .gradient import feature_distance, gradient_distance
from .idc import IDC


@register_method("dreamplus")
class DreamPlus(IDC):
    """IDC's loop with DREAM+'s bidirectional loss and a warm-up epoch after each network initialisation."""

    name = "dreamplus"

    def prepare_network(self, it: int, g: torch.Generator):
        cfg = self.config
        net, optimizer = super().prepare_network(it, g)
        images = len(self.host.data.train) * cfg.dreamplus.warmup_epochs
        if cfg.dreamplus.warmup_images is not None:
            images = min(images, cfg.dreamplus.warmup_images)
        if images > 0:
            self.train_on_real(net, optimizer, g, images)
        return net, optimizer

    def class_loss(self, c: int, net, synthetic, g: torch.Generator) -> torch.Tensor:
        host, cfg = self.host, self.config
        real, real_labels, syn, syn_labels = self.paired_batches(c, net, synthetic, g, cfg.match.batch_real,
                                                                 host.match_augment)
        t0 = time.perf_counter()
        with torch.no_grad():
            real_mean = net.embed(real).mean(0)
        syn_mean = net.embed(syn).mean(0)
        features = feature_distance(real_mean, syn_mean, cfg.match.metric)
        gradients = gradient_distance(self.objective.real_gradients(net, real, real_labels),
                                      self.objective.syn_gradients(net, syn, syn_labels), cfg.match.metric)
        loss = cfg.dreamplus.feature_weight * features + cfg.dreamplus.gradient_weight * gradients
        host.timings.match += time.perf_counter() - t0
        return loss
