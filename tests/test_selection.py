"""k-means, nearest-sample picking and the random / representative (DREAM) selectors, on small planted data."""
import importlib

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from torch import nn

from dreamdd.errors import DreamddError
from dreamdd.selection import (RandomSelector, RepresentativeSelector, create_selector, kmeans,
                               nearest_to_centroids)
from dreamdd.selection import representative as representative_module
kmeans_module = importlib.import_module("dreamdd.selection.kmeans")   # the package exports the function kmeans


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def blobs(k: int, per: int, dim: int = 8, spread: float = 0.05, seed: int = 0):
    """k well-separated gaussian blobs: (points (k*per, dim), labels, true centers)."""
    g = gen(seed)
    centers = torch.randn(k, dim, generator=g) * 10
    labels = torch.arange(k).repeat_interleave(per)
    points = centers[labels] + spread * torch.randn(k * per, dim, generator=g)
    return points, labels, centers


class StubNet(nn.Module):
    """A 'network' whose embed() is a fixed linear map of the flattened image (so features are known)."""

    def __init__(self, in_dim: int, dim: int = 8):
        super().__init__()
        self.proj = nn.Linear(in_dim, dim, bias=False)
        with torch.no_grad():
            self.proj.weight.copy_(torch.eye(dim, in_dim))

    def embed(self, x):
        return self.proj(x.flatten(1))


class Bank:
    """Images of shape (N, 1, 2, 4) whose flattened pixels are the given 8-d points; counts embedded images."""

    def __init__(self, points: torch.Tensor):
        self.images = points.reshape(-1, 1, 2, 4)
        self.embedded = []

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        self.embedded.append(idx.clone())
        return self.images[idx]

    @property
    def seen(self) -> torch.Tensor:
        return torch.cat(self.embedded) if self.embedded else torch.empty(0, dtype=torch.long)


# ---- k-means ----------------------------------------------------------------------------------------------
def test_kmeans_recovers_planted_clusters():
    x, labels, centers = blobs(6, 40)
    for seed in range(5):
        r = kmeans(x, 6, gen(seed))
        assert adjusted_rand_score(labels.numpy(), r.assignments.numpy()) == 1.0
        assert torch.cdist(centers, r.centroids).min(1).values.max() < 0.1
        assert r.inertia == pytest.approx(float(((x - r.centroids[r.assignments]) ** 2).sum()), rel=1e-4)


def test_kmeans_random_init_and_warm_start():
    x, labels, centers = blobs(4, 25)
    r = kmeans(x, 4, gen(0), init="random")
    assert torch.bincount(r.assignments, minlength=4).min() > 0 and r.iterations >= 1
    warm = kmeans(x, 4, gen(0), init_centroids=centers + 0.5)
    assert adjusted_rand_score(labels.numpy(), warm.assignments.numpy()) == 1.0


def test_kmeans_is_deterministic_under_a_seed():
    x = torch.randn(300, 16, generator=gen(3))
    for init in ("kmeans++", "random"):
        a, b = kmeans(x, 10, gen(7), init=init), kmeans(x, 10, gen(7), init=init)
        assert torch.equal(a.centroids, b.centroids) and torch.equal(a.assignments, b.assignments)
        assert a.iterations == b.iterations and a.inertia == b.inertia


def test_empty_cluster_is_reseeded():
    x, labels, centers = blobs(3, 30)
    far = torch.full((1, x.shape[1]), 1e4)
    init = torch.cat([centers[:1], centers[1:2], far])  # blob 2 goes to a near centroid; the far one gets nothing
    r = kmeans(x, 3, gen(0), init_centroids=init)
    assert torch.bincount(r.assignments, minlength=3).min() > 0
    assert r.centroids.abs().max() < 100
    assert adjusted_rand_score(labels.numpy(), r.assignments.numpy()) == 1.0


def test_tol_stops_early_and_max_iter_caps():
    x = torch.randn(400, 8, generator=gen(5))
    exact = kmeans(x, 12, gen(0), init="random", tol=0.0, max_iter=300)
    loose = kmeans(x, 12, gen(0), init="random", tol=1.0, max_iter=300)
    assert exact.iterations > 3
    assert 1 <= loose.iterations < exact.iterations
    assert kmeans(x, 12, gen(0), init="random", tol=0.0, max_iter=2).iterations == 2


def test_kmeans_rejects_bad_k_and_init():
    x = torch.randn(5, 2)
    with pytest.raises(DreamddError):
        kmeans(x, 6, gen())
    with pytest.raises(DreamddError):
        kmeans(x, 2, gen(), init="forgy")


# ---- nearest_to_centroids ---------------------------------------------------------------------------------
def test_nearest_to_centroids_is_the_true_nearest():
    x = torch.randn(200, 5, generator=gen(2))
    centroids = torch.randn(7, 5, generator=gen(3)) * 3  # spread out: no two share a nearest sample
    expected = np.argmin(((x.numpy()[None] - centroids.numpy()[:, None]) ** 2).sum(-1), axis=1)
    assert len(set(expected.tolist())) == 7
    assert nearest_to_centroids(x, centroids).tolist() == expected.tolist()


def test_nearest_to_centroids_resolves_collisions_with_distinct_indices():
    x = torch.randn(50, 3, generator=gen(4))
    same = x[:1].repeat(5, 1) + 1e-3  # five identical centroids next to sample 0
    idx = nearest_to_centroids(x, same)
    order = np.argsort(((x.numpy() - same[0].numpy()) ** 2).sum(1))
    assert sorted(idx.tolist()) == sorted(order[:5].tolist())
    # a contested sample stays with the nearer centroid; the other takes its next nearest
    pair = torch.stack([x[0] + 0.01, x[0] + 0.2])
    won = nearest_to_centroids(x, pair)
    assert won[0] == 0 and won[1] != 0


def test_nearest_to_centroids_per_cluster():
    x, labels, centers = blobs(4, 20)
    idx = nearest_to_centroids(x, centers, per_cluster=3)
    assert idx.numel() == 12 and idx.unique().numel() == 12
    assert labels[idx].tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    idx = nearest_to_centroids(x, centers, per_cluster=torch.tensor([1, 2, 0, 4]))
    assert labels[idx].tolist() == [0, 1, 1, 3, 3, 3, 3]


@pytest.mark.parametrize("window", [1, 2, 3])
def test_nearest_to_centroids_picks_the_same_however_many_rounds_are_read_at_once(monkeypatch, window):
    x = torch.randn(60, 2, generator=gen(6)).round()        # many ties and shared nearest samples: many rounds
    centroids = torch.randn(12, 2, generator=gen(7)) * 0.3
    quota = torch.tensor([2, 1, 0, 3, 1, 1, 2, 1, 1, 4, 1, 1])
    monkeypatch.setattr(kmeans_module, "PICK_WINDOW", 1)
    one = nearest_to_centroids(x, centroids, quota)
    monkeypatch.setattr(kmeans_module, "PICK_WINDOW", window + 3)
    assert torch.equal(nearest_to_centroids(x, centroids, quota), one) and one.unique().numel() == 18


# ---- selectors --------------------------------------------------------------------------------------------
def class_setup(k: int = 16, per: int = 20, offset: int = 100):
    """A bank whose class-c candidates are indices offset.. offset+k*per, arranged in k planted blobs."""
    x, labels, _ = blobs(k, per)
    points = torch.cat([torch.randn(offset, 8, generator=gen(9)), x])  # other classes' images come first
    candidates = torch.arange(offset, offset + x.shape[0])
    return Bank(points), candidates, labels


def test_representative_picks_the_candidate_nearest_each_centroid():
    bank, candidates, labels = class_setup()
    net = StubNet(8)
    net.train()
    sel = RepresentativeSelector()
    idx = sel.select(0, candidates, 16, net=net, images_fn=bank, generator=gen(11))
    assert net.training and all(m.training for m in net.modules())  # train/eval flags restored
    # independent check: the same k-means (same generator seed), nearest samples computed with numpy
    feats = bank.images[candidates].flatten(1)
    centroids = kmeans(feats, 16, gen(11)).centroids.numpy()
    d2 = ((feats.numpy()[None] - centroids[:, None]) ** 2).sum(-1)
    expected = candidates[torch.from_numpy(d2.argmin(1))]
    assert sorted(idx.tolist()) == sorted(expected.tolist())
    assert idx.unique().numel() == 16 and torch.isin(idx, candidates).all()
    assert sorted(labels[idx - 100].tolist()) == list(range(16))  # one representative per planted blob
    rand = RandomSelector().select(0, candidates, 16, generator=gen(11))
    assert rand.unique().numel() == 16 and set(rand.tolist()) != set(idx.tolist())
    assert sel.seconds_embed > 0 and sel.seconds_kmeans > 0 and sel.timings()["selections"] == 1


def test_reselects_every_interval_calls_and_after_reset():
    bank, candidates, _ = class_setup(k=8, per=10)
    net, g = StubNet(8), gen(0)
    sel = RepresentativeSelector(interval=4, pool_size=40)  # a random pool makes every re-selection visible
    picks = []
    for _ in range(10):
        picks.append(sel.select(0, candidates, 8, net=net, images_fn=bank, generator=g))
        sel.select(1, candidates, 8, net=net, images_fn=bank, generator=g)  # other classes keep their own count
    assert sel.selections == 6  # class 0 at calls 1, 5, 9; the same for class 1
    for window in (picks[0:4], picks[4:8], picks[8:10]):
        assert all(torch.equal(window[0], p) for p in window)
    assert not torch.equal(picks[0], picks[4])
    sel.select(0, candidates, 8, net=net, images_fn=bank, generator=g)  # 3rd use of the current choice
    sel.reset()
    sel.select(0, candidates, 8, net=net, images_fn=bank, generator=g)
    assert sel.selections == 7


def test_a_choice_is_kept_while_it_lies_in_the_candidates_and_made_again_when_not():
    bank, candidates, _ = class_setup(k=8, per=10)
    net, g = StubNet(8), gen(0)
    sel = RepresentativeSelector(interval=10)
    first = sel.select(0, candidates, 8, net=net, images_fn=bank, generator=g)
    assert torch.equal(sel.select(0, candidates.clone(), 8, net=net, images_fn=bank, generator=g), first)
    assert sel.selections == 1                      # an equal tensor that is not the same one: checked, kept
    rest = candidates[~torch.isin(candidates, first)]
    other = sel.select(0, rest, 8, net=net, images_fn=bank, generator=g)
    assert sel.selections == 2 and not torch.isin(other, first).any() and torch.isin(other, rest).all()


def test_per_cluster_takes_n_samples_from_n_over_per_cluster_clusters(monkeypatch):
    bank, candidates, labels = class_setup(k=4, per=30)
    ks = []
    real_kmeans = representative_module.kmeans

    def spy(x, k, *args, **kwargs):
        ks.append(k)
        return real_kmeans(x, k, *args, **kwargs)

    monkeypatch.setattr(representative_module, "kmeans", spy)
    sel = RepresentativeSelector(per_cluster=4)
    idx = sel.select(0, candidates, 16, net=StubNet(8), images_fn=bank, generator=gen(1))
    assert ks == [4] and idx.unique().numel() == 16
    assert torch.bincount(labels[idx - 100], minlength=4).tolist() == [4, 4, 4, 4]
    idx = RepresentativeSelector(per_cluster=3).select(0, candidates, 10, net=StubNet(8), images_fn=bank,
                                                       generator=gen(1))
    assert ks[-1] == 3 and idx.unique().numel() == 10


def test_pool_size_caps_the_embedded_set():
    bank, candidates, _ = class_setup(k=10, per=30)
    sel = RepresentativeSelector(pool_size=50, chunk_size=16)
    idx = sel.select(0, candidates, 10, net=StubNet(8), images_fn=bank, generator=gen(2))
    seen = bank.seen
    assert seen.numel() == 50 and seen.unique().numel() == 50 and torch.isin(seen, candidates).all()
    assert max(len(i) for i in bank.embedded) == 16  # chunked forward passes
    assert torch.isin(idx, seen).all() and idx.unique().numel() == 10


def test_small_class_returns_all_candidates_without_embedding():
    bank, candidates, _ = class_setup(k=2, per=5)
    for sel in (RepresentativeSelector(), RandomSelector()):
        idx = sel.select(0, candidates, 16, net=StubNet(8), images_fn=bank, generator=gen())
        assert sorted(idx.tolist()) == candidates.tolist()
    assert bank.seen.numel() == 0


def test_selectors_are_deterministic_under_a_seed():
    bank, candidates, _ = class_setup(k=8, per=10)
    for make in (lambda: RepresentativeSelector(pool_size=30), RandomSelector):
        a = make().select(3, candidates, 8, net=StubNet(8), images_fn=bank, generator=gen(5))
        b = make().select(3, candidates, 8, net=StubNet(8), images_fn=bank, generator=gen(5))
        assert torch.equal(a, b)


def test_state_dict_round_trip_keeps_the_cached_choice():
    bank, candidates, _ = class_setup(k=8, per=10)
    sel = RepresentativeSelector(interval=5)
    first = sel.select(0, candidates, 8, net=StubNet(8), images_fn=bank, generator=gen(0))
    restored = RepresentativeSelector(interval=5)
    restored.load_state_dict(sel.state_dict())
    again = restored.select(0, candidates, 8, net=StubNet(8), images_fn=bank, generator=gen(99))
    assert torch.equal(first, again) and restored.selections == 1


def test_factory_and_errors():
    assert isinstance(create_selector("random"), RandomSelector)
    assert isinstance(create_selector("dream", interval=3), RepresentativeSelector)
    assert isinstance(create_selector("representative"), RepresentativeSelector)
    with pytest.raises(DreamddError, match="unknown selector"):
        create_selector("farthest-first")
    with pytest.raises(DreamddError):
        RepresentativeSelector(kmeans_init="forgy")
    with pytest.raises(DreamddError):
        RepresentativeSelector(interval=0)
    bank, candidates, _ = class_setup(k=8, per=10)
    with pytest.raises(DreamddError, match="net="):
        RepresentativeSelector().select(0, candidates, 8, generator=gen())
    with pytest.raises(DreamddError, match="embed"):
        RepresentativeSelector().select(0, candidates, 8, net=nn.Linear(8, 8), images_fn=bank, generator=gen())


@pytest.mark.parametrize("window", [2, 4, 7])
@pytest.mark.parametrize("case", ["blobs", "empty clusters", "few steps", "noise"])
def test_kmeans_windows_of_lloyd_steps_give_the_one_step_result(window, case):
    """Lloyd steps taken a window at a time (one read per window, as off the CPU) give exactly what one step at a
    time gives: the same centroids, assignments, inertia and number of updates."""
    g = torch.Generator().manual_seed(3)
    if case == "empty clusters":     # random init with duplicate points: some clusters start empty
        x = torch.cat([torch.zeros(30, 4), torch.randn(20, 4, generator=g) * 5])
        options = dict(init="random")
    elif case == "few steps":
        x, options = torch.randn(200, 8, generator=g), dict(max_iter=3, tol=0.0)
    elif case == "noise":
        x, options = torch.randn(300, 16, generator=g), dict(tol=1e-6)
    else:
        x = torch.cat([torch.randn(50, 6, generator=g) + 8 * i for i in range(4)])
        options = {}
    one = kmeans(x, 6, torch.Generator().manual_seed(0), window=1, **options)
    many = kmeans(x, 6, torch.Generator().manual_seed(0), window=window, **options)
    assert torch.equal(one.centroids, many.centroids) and torch.equal(one.assignments, many.assignments)
    assert one.inertia == many.inertia and one.iterations == many.iterations
