"""Lloyd's k-means in torch, on the device of the data (the matching network's), and nearest-sample picking.

Better behaved than the DREAM authors' version: k-means++ (greedy) or random init from an explicit generator, a
tolerance on centroid movement, and empty clusters re-seeded with far-away points instead of being left at zero.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from .. import determinism
from ..errors import DreamddError

INITS = ("kmeans++", "random")
LLOYD_WINDOW = 4   # Lloyd steps taken before their stopping tests are read, off the CPU (each read is a host sync)
PICK_WINDOW = 4    # rounds of nearest_to_centroids taken before one read of whether a centroid is still short
DIST_BLOCK = 1 << 22  # entries of one block of the (points x centroids) distance matrix: 16 MiB in float32


@dataclass
class KMeansResult:
    """centroids (k, d), assignments (n,) in [0, k), squared_error = sum of squared distances to the own centroid
    (a float64 tensor on the data's device, left unread: `inertia` reads it)."""
    centroids: torch.Tensor
    assignments: torch.Tensor
    squared_error: torch.Tensor
    iterations: int

    @property
    def inertia(self) -> float:
        return float(self.squared_error)


def squared_distances(x: torch.Tensor, c: torch.Tensor, x_sq: torch.Tensor | None = None,
                      c_sq: torch.Tensor | None = None) -> torch.Tensor:
    """(n, k) squared euclidean distances by ||x||^2 - 2 x.c + ||c||^2 (one matmul), clamped at zero."""
    x_sq = (x * x).sum(1) if x_sq is None else x_sq
    c_sq = (c * c).sum(1) if c_sq is None else c_sq
    d2 = torch.addmm(c_sq.unsqueeze(0), x, c.t(), alpha=-2.0)
    return d2.add_(x_sq.unsqueeze(1)).clamp_(min=0.0)


def nearest_centroid(x: torch.Tensor, c: torch.Tensor, x_sq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distance to, and index of, each point's nearest centroid; in row blocks so memory stays bounded."""
    rows = max(1, DIST_BLOCK // max(1, c.shape[0]))
    c_sq = (c * c).sum(1)
    mins, args = [], []
    for start in range(0, x.shape[0], rows):
        d2 = squared_distances(x[start:start + rows], c, x_sq[start:start + rows], c_sq)
        m, a = d2.min(1)
        mins.append(m)
        args.append(a)
    return torch.cat(mins), torch.cat(args)


def _uniform(n: int, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """n uniforms in [0, 1) drawn on the generator's device, then moved next to `like` (any device pairing works)."""
    return torch.rand(n, generator=generator, device=generator.device).to(like.device, like.dtype)


def _kmeans_plus_plus(x: torch.Tensor, k: int, x_sq: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ (as scikit-learn): 2 + log k candidates drawn ~ D^2, keep the one lowering the potential most."""
    n = x.shape[0]
    trials = 2 + int(math.log(k))
    first = torch.randint(n, (1,), generator=generator, device=generator.device).to(x.device)
    centers = [x.index_select(0, first)[0]]      # the index stays a tensor: no host read
    closest = squared_distances(x, x.index_select(0, first), x_sq)[:, 0]
    for _ in range(1, k):
        if determinism.enabled():      # a float cumsum has no deterministic CUDA kernel: fixed point
            cdf, total = determinism.cumulative(closest)
            draws = (_uniform(trials, generator, x).double() * total).long()
        else:
            cdf = torch.cumsum(closest, 0)
            draws = _uniform(trials, generator, x) * cdf[-1]
        cand = torch.searchsorted(cdf, draws, right=True).clamp_(max=n - 1)
        potential = torch.minimum(closest.unsqueeze(0), squared_distances(x[cand], x, x_sq[cand], x_sq))  # (trials, n)
        best = potential.sum(1).argmin().view(1)    # kept as a tensor (index_select): no host sync per centroid
        centers.append(x.index_select(0, cand.index_select(0, best))[0])
        closest = potential.index_select(0, best)[0]
    return torch.stack(centers)


def _cluster_means(x: torch.Tensor, assignments: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of each cluster (none may be empty). index_add_ on the CPU; a one-hot matmul elsewhere, because CUDA's
    index_add_ accumulates with atomics in arbitrary order and would make the result non-reproducible."""
    counts = torch.bincount(assignments, minlength=k).to(x.dtype)
    if x.device.type == "cpu":
        sums = x.new_zeros(k, x.shape[1]).index_add_(0, assignments, x)
    else:
        onehot = torch.zeros(k, x.shape[0], device=x.device, dtype=x.dtype)
        onehot[assignments, torch.arange(x.shape[0], device=x.device)] = 1.0
        sums = onehot @ x
    return sums / counts.unsqueeze(1)


def _reseed_empty(assignments: torch.Tensor, d2: torch.Tensor, k: int) -> torch.Tensor:
    """Give every empty cluster the point farthest from its centroid, taken from a cluster that keeps a member."""
    counts = torch.bincount(assignments, minlength=k)
    empty = (counts == 0).nonzero().flatten().tolist()
    if not empty:
        return assignments
    assignments = assignments.clone()
    counts = counts.tolist()
    for j in torch.argsort(d2, descending=True, stable=True).tolist():
        donor = int(assignments[j])
        if counts[donor] > 1:
            counts[donor] -= 1
            assignments[j] = empty.pop()
            if not empty:
                break
    return assignments


def kmeans(x: torch.Tensor, k: int, generator: torch.Generator, init: str = "kmeans++", max_iter: int = 100,
           tol: float = 1e-4, init_centroids: torch.Tensor | None = None, window: int | None = None) -> KMeansResult:
    """Cluster the rows of x (n, d) into k clusters with Lloyd's algorithm, on x's device.

    Stops when the assignments no longer change, after `max_iter` updates, or when the summed squared centroid
    shift drops to `tol` times the mean per-feature variance of x (scikit-learn's relative tolerance, so the same
    `tol` means the same thing in both). `init_centroids` (k, d) warm-starts and skips the random init.
    `window` Lloyd steps are taken before their stopping tests are read at once (default: 1 on the CPU, where a
    read is free, LLOYD_WINDOW elsewhere); the steps past the stopping one are dropped, so the result is the same
    for every window.
    """
    if x.dim() != 2:
        raise ValueError(f"kmeans expects an (n, d) tensor, got shape {tuple(x.shape)}")
    n = x.shape[0]
    if not 1 <= k <= n:
        raise DreamddError(f"k-means asked for {k} clusters of {n} points; k must lie in [1, {n}]")
    if init not in INITS:
        raise DreamddError(f"unknown k-means init '{init}'; use one of {', '.join(INITS)}")
    x = x.detach()
    x = x if x.dtype in (torch.float32, torch.float64) else x.float()
    mean = x.mean(0)
    x = x - mean  # centred data loses less precision in the ||x||^2 - 2 x.c + ||c||^2 expansion
    x_sq = (x * x).sum(1)
    if init_centroids is not None:
        if tuple(init_centroids.shape) != (k, x.shape[1]):
            raise ValueError(f"init_centroids must have shape {(k, x.shape[1])}, got {tuple(init_centroids.shape)}")
        centroids = init_centroids.detach().to(x.device, x.dtype) - mean
    elif init == "random":
        pick = torch.randperm(n, generator=generator, device=generator.device)[:k].to(x.device)
        centroids = x[pick].clone()
    else:
        centroids = _kmeans_plus_plus(x, k, x_sq, generator)
    threshold = x.var(0, unbiased=False).mean().double() * tol     # float64 as in Python; compared on the device
    window = window or (1 if x.device.type == "cpu" else LLOYD_WINDOW)
    centroids, assignments, iterations, converged = _lloyd(x, x_sq, centroids, k, max_iter, threshold, window)
    if not converged:  # the assignments that belong to the final centroids
        _, assignments = nearest_centroid(x, centroids, x_sq)
    squared_error = torch.stack([(x[s:s + 4096] - centroids[assignments[s:s + 4096]]).pow(2).sum().double()
                                 for s in range(0, n, 4096)]).sum()      # exact differences, not expanded
    return KMeansResult(centroids + mean, assignments, squared_error, iterations)


def _lloyd(x: torch.Tensor, x_sq: torch.Tensor, centroids: torch.Tensor, k: int, max_iter: int,
           threshold: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor | None, int, bool]:
    """Lloyd's steps from `centroids` until the assignments repeat (converged), the centroids move by at most
    `threshold`, or max_iter steps: (centroids, the assignments of the converged step or None, updates, converged).

    A step is: nearest centroids; stop if they equal the previous step's; re-seed empty clusters; move each
    centroid to its cluster's mean; stop if the move was small. Steps are taken `window` at a time with their
    tests kept on the device and read together; a window stops at its first step that stops, or that has an empty
    cluster (re-seeding reads the data, so that step is taken on its own), and what came after is dropped.
    """
    previous, turns, iterations = None, 0, 0
    while turns < max_iter:
        steps, c, p = [], centroids, previous
        for _ in range(min(window, max_iter - turns)):
            d2, a = nearest_centroid(x, c, x_sq)
            same = (a == p).all() if p is not None else torch.zeros((), dtype=torch.bool, device=x.device)
            empty = (torch.bincount(a, minlength=k) == 0).any()
            updated = _cluster_means(x, a, k)
            small = (updated - c).pow(2).sum().double() <= threshold
            steps.append((d2, a, updated, torch.stack([same, empty, small])))
            c, p = updated, a
        tests = torch.stack([s[3] for s in steps]).tolist()      # the window's one read
        for (d2, a, updated, _), (same, empty, small) in zip(steps, tests):
            turns += 1
            if same:
                return centroids, a, iterations, True      # the centroids already are the means of these
            if empty:
                a = _reseed_empty(a, d2, k)
                updated = _cluster_means(x, a, k)
                small = bool((updated - centroids).pow(2).sum().double() <= threshold)
            centroids, previous = updated, a
            iterations += 1
            if small:
                return centroids, None, iterations, False
            if empty:
                break                                       # the window's later steps started from other centroids
    return centroids, None, iterations, False


def nearest_to_centroids(x: torch.Tensor, centroids: torch.Tensor,
                         per_cluster: int | torch.Tensor = 1) -> torch.Tensor:
    """Distinct row indices of x: the `per_cluster` nearest samples of every centroid, centroid by centroid.

    `per_cluster` is one count for all centroids or a (k,) tensor of counts. When several centroids want the
    same sample, the nearest centroid keeps it and the others move on to their next nearest unused sample.
    In rounds: every centroid still short of its count claims its nearest unused sample, the claims sorted by
    distance (ties by centroid) and each sample going to its first claimant. The rounds run on x's device,
    PICK_WINDOW at a time before one read of whether a centroid is still short (a round after the last changes
    nothing, so the picks are the same for every window).
    """
    k = centroids.shape[0]
    quota = torch.as_tensor(per_cluster, dtype=torch.long).expand(k).clone().cpu()
    counts = quota.tolist()       # host memory already: no device read
    total = sum(counts)
    if total > x.shape[0]:
        raise ValueError(f"cannot pick {total} distinct samples out of {x.shape[0]}")
    if total == 0:
        return torch.zeros(0, dtype=torch.long, device=x.device)
    x = x.detach()
    device, n, columns = x.device, x.shape[0], max(counts)
    mean = x.mean(0)  # centring keeps the distance expansion precise
    d2 = squared_distances(centroids.to(x.dtype) - mean, x - mean)  # (k, n): rows are centroids
    quota_here = quota.to(device)
    used = torch.zeros(n, dtype=torch.long, device=device)
    picks = torch.full((k, columns), -1, dtype=torch.long, device=device)
    taken = torch.zeros(k, dtype=torch.long, device=device)
    for round_ in itertools.count():
        short = taken < quota_here      # all of them in round 0 (total > 0): read from round PICK_WINDOW on
        if round_ and round_ % PICK_WINDOW == 0 and not bool(short.any()):
            break
        dist, best = d2.masked_fill(used.bool().unsqueeze(0), math.inf).min(1)
        dist = dist.masked_fill(~short, math.inf)
        order = torch.argsort(dist, stable=True)        # the short centroids first, nearest first
        sample, claims = best[order], short[order]
        position = torch.where(claims, torch.arange(k, device=device), k)
        first = torch.full((n,), k, dtype=torch.long, device=device)
        first.scatter_reduce_(0, sample, position, reduce="amin")
        won_in_order = claims & (first[sample] == position)
        won = torch.zeros(k, dtype=torch.bool, device=device).scatter_(0, order, won_in_order)
        column = taken.clamp(max=columns - 1).unsqueeze(1)      # row r claimed best[r]: its next column
        picks.scatter_(1, column, torch.where(won, best, picks.gather(1, column).squeeze(1)).unsqueeze(1))
        used.scatter_reduce_(0, best, won.long(), reduce="amax")
        taken += won.long()
    kept = [r * columns + j for r in range(k) for j in range(counts[r])]     # each centroid's picks, in order
    return picks.flatten().index_select(0, torch.tensor(kept, device=device))
