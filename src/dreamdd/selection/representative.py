"""DREAM's representative matching: real batches made of the samples nearest to k-means centroids.

For class c the candidates (or a random pool of them) are embedded by the current matching network, clustered into
n // per_cluster groups, and the samples nearest each centroid form the real batch. The choice is reused for
`interval` calls, because k-means is the expensive part and the network changes slowly within an outer iteration.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .. import compilation
from ..devices import channels_last
from ..errors import DreamddError
from ..precision import autocast
from .base import ImagesFn, Selector, random_subset
from .kmeans import INITS, kmeans, nearest_to_centroids


EMBED_CHUNK = 512    # images per forward pass of the embedding (the paper-faithful size: speed-selection.json)


def embed_images(net: nn.Module, images_fn: ImagesFn, indices: torch.Tensor, chunk_size: int,
                 precision: str = "fp32") -> torch.Tensor:
    """(len(indices), d) fp32 features from net.embed, in chunks (bounded memory), without autograd; the forward
    in `precision` (resolved: fp32 or bf16).

    The network runs in eval mode so a sample's feature does not depend on which chunk it landed in (batch norm)
    and running statistics are not disturbed; each module's train/eval flag is restored afterwards. fp32 feeds
    the chunks in the channels_last layout, bf16 in the default one: on the reference CPU (oneDNN) bf16 instance
    norm in channels_last is about 3x slower than in the default layout and made a bf16 pass slower than fp32
    (BENCHMARKS.md, "precision").
    """
    if not callable(getattr(net, "embed", None)):
        raise DreamddError(f"the representative selector needs a network with an embed(x) method (penultimate "
                           f"features); {type(net).__name__} has none: use a dreamdd model or --selector random")
    modes = [(m, m.training) for m in net.modules()]
    net.eval()
    try:
        layout = channels_last if precision == "fp32" else (lambda x: x)
        device = next(net.parameters()).device
        with torch.inference_mode(), autocast(precision, device):
            embed = compilation.embed(net)
            parts = [embed(layout(images_fn(indices[s:s + chunk_size]))).flatten(1).float()
                     for s in range(0, indices.numel(), chunk_size)]
    finally:
        for module, mode in modes:
            module.training = mode
    return torch.cat(parts)


def cluster_quotas(assignments: torch.Tensor, k: int, n: int) -> torch.Tensor:
    """How many samples to take near each of k centroids so they add up to n: n // k each, and one more for
    the n % k most populous clusters."""
    quota = torch.full((k,), n // k, dtype=torch.long)
    extra = n % k
    if extra:
        sizes = torch.bincount(assignments, minlength=k).cpu()
        quota[torch.argsort(sizes, descending=True, stable=True)[:extra]] += 1
    return quota


@dataclass
class _Choice:
    """A class's current real batch, the n it was made for, and how many calls have used it; `of` is the
    candidates tensor it is known to lie in (a bank hands out the same tensor for a class at every call, so the
    check costs nothing then; any other tensor is checked element by element once, a host read)."""
    indices: torch.Tensor
    n: int
    uses: int = 0
    of: torch.Tensor | None = None

    def lies_in(self, candidates: torch.Tensor) -> bool:
        if self.of is not candidates:
            if not bool(torch.isin(self.indices, candidates.cpu()).all()):
                return False
            self.of = candidates
        return True


class RepresentativeSelector(Selector):
    """k-means representatives of each class (DREAM), re-chosen every `interval` calls per class.

    per_cluster: samples taken near each centroid (1 = DREAM; >1 = DREAM+ with n // per_cluster clusters).
    pool_size: None clusters the whole class (the paper); else a random pool of max(pool_size, n) candidates,
    drawn afresh at each re-selection. kmeans_init, max_iter, tol: see kmeans(). chunk_size: images per forward.
    precision: what the embedding's forward runs in (fp32 or bf16); k-means always runs in fp32.
    """

    name = "dream"

    def __init__(self, per_cluster: int = 1, interval: int = 10, pool_size: int | None = None,
                 kmeans_init: str = "kmeans++", max_iter: int = 100, tol: float = 1e-4, chunk_size: int = EMBED_CHUNK,
                 precision: str = "fp32"):
        for key, value in (("per_cluster", per_cluster), ("interval", interval), ("max_iter", max_iter),
                           ("chunk_size", chunk_size), ("pool_size", 1 if pool_size is None else pool_size)):
            if int(value) != value or value < 1:
                raise DreamddError(f"select.{key} must be a positive integer, got {value!r}")
        if kmeans_init not in INITS:
            raise DreamddError(f"select.kmeans_init={kmeans_init!r} is not one of {', '.join(INITS)}")
        if tol < 0:
            raise DreamddError(f"select.kmeans_tol must be >= 0, got {tol!r}")
        self.per_cluster, self.interval, self.pool_size = int(per_cluster), int(interval), pool_size
        self.kmeans_init, self.max_iter, self.tol, self.chunk_size = kmeans_init, int(max_iter), tol, int(chunk_size)
        self.precision = precision
        self._choices: dict[int, _Choice] = {}
        self.seconds_embed = 0.0
        self.seconds_kmeans = 0.0
        self.selections = 0
        self.kmeans_iterations = 0

    def select(self, c: int, candidates: torch.Tensor, n: int, *, net: nn.Module | None = None,
               images_fn: ImagesFn | None = None, generator: torch.Generator) -> torch.Tensor:
        if candidates.numel() <= n:
            return candidates
        choice = self._choices.get(c)
        if choice is None or choice.uses >= self.interval or choice.n != n or not choice.lies_in(candidates):
            choice = _Choice(self.choose(candidates, n, net, images_fn, generator).cpu(), n, of=candidates)
            self._choices[c] = choice
        choice.uses += 1
        return choice.indices.to(candidates.device)

    def choose(self, candidates: torch.Tensor, n: int, net: nn.Module | None, images_fn: ImagesFn | None,
               generator: torch.Generator) -> torch.Tensor:
        """A fresh representative subset of n candidates (no caching): embed, cluster, take the nearest."""
        if net is None or images_fn is None:
            raise DreamddError("the representative (dream) selector needs net= and images_fn= to embed the real "
                               "images; pass them, or use the random selector")
        pool = candidates
        if self.pool_size is not None:
            pool = random_subset(candidates, max(self.pool_size, n), generator)
        if pool.numel() <= n:
            return pool
        t0 = time.perf_counter()
        features = embed_images(net, images_fn, pool, self.chunk_size, self.precision)
        t1 = time.perf_counter()
        with torch.inference_mode():
            k = max(1, n // self.per_cluster)
            result = kmeans(features, k, generator, init=self.kmeans_init, max_iter=self.max_iter, tol=self.tol)
            quota = cluster_quotas(result.assignments, k, n)
            positions = nearest_to_centroids(features, result.centroids, quota)
        self.seconds_embed += t1 - t0
        self.seconds_kmeans += time.perf_counter() - t1
        self.selections += 1
        self.kmeans_iterations += result.iterations
        return pool[positions.to(pool.device)]

    def reset(self) -> None:
        self._choices.clear()

    def timings(self) -> dict[str, float]:
        return {"select_embed": self.seconds_embed, "select_kmeans": self.seconds_kmeans,
                "selections": self.selections, "kmeans_iterations": self.kmeans_iterations}

    def state_dict(self) -> dict[str, Any]:
        return {"choices": {c: {"indices": ch.indices.clone(), "n": ch.n, "uses": ch.uses}
                            for c, ch in self._choices.items()},
                "seconds_embed": self.seconds_embed, "seconds_kmeans": self.seconds_kmeans,
                "selections": self.selections, "kmeans_iterations": self.kmeans_iterations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._choices = {int(c): _Choice(ch["indices"].cpu().long(), int(ch["n"]), int(ch["uses"]))
                         for c, ch in state.get("choices", {}).items()}
        self.seconds_embed = float(state.get("seconds_embed", 0.0))
        self.seconds_kmeans = float(state.get("seconds_kmeans", 0.0))
        self.selections = int(state.get("selections", 0))
        self.kmeans_iterations = int(state.get("kmeans_iterations", 0))
