"""Coreset baselines: herding, k-center greedy, representative and random selection of real images."""
import numpy as np
import pytest
import torch

import dreamdd
from dreamdd.artifact import load_distilled
from dreamdd.selection import herding_order, kcenter_order


def test_herding_picks_the_sample_that_keeps_the_mean_closest():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 4, generator=g)
    order = herding_order(x, 5)
    assert len(set(order.tolist())) == 5
    mean = x.mean(0)
    # brute force: at every step, the pick minimizes the distance of the running mean to the class mean
    chosen = []
    for step in range(1, 6):
        gaps = [float(((x[chosen].sum(0) + x[i]) / step - mean).pow(2).sum()) if i not in chosen else np.inf
                for i in range(50)]
        chosen.append(int(np.argmin(gaps)))
    assert order.tolist() == chosen


def test_kcenter_picks_the_farthest_sample_each_time():
    x = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 9.0], [1.0, 1.0], [5.0, 5.0]])
    assert kcenter_order(x, 3, first=0).tolist() == [0, 1, 2]
    assert kcenter_order(x, 5, first=3).tolist()[:2] == [3, 1]


@pytest.mark.parametrize("method", ["random", "herding", "kcenter", "representative"])
def test_select_writes_an_artifact_of_real_images(tmp_path, method):
    overrides = {"model": {"width": 16, "depth": 2}, "eval": {"epochs": 3, "repeats": 1, "val_every": 1}}
    result = dreamdd.select("digits", 3, method, out=tmp_path / method, feature_epochs=1, overrides=overrides)
    distilled = load_distilled(result.path)
    assert distilled.images.shape == (30, 1, 8, 8)
    assert distilled.labels.tolist() == sum([[c] * 3 for c in range(10)], [])
    assert distilled.metadata["method"] == f"coreset-{method}"
    evaluation = distilled.metadata["evaluation"]          # one network, its test accuracy recorded twice
    assert evaluation["train_size"] == 30 and [r["run"] for r in evaluation["runs"]] == [0]
    assert result.summary["evaluation"]["test_mean"] == evaluation["test_mean"] == evaluation["runs"][0]["test_acc"]
    # the images are real training images, exactly
    from dreamdd.data import load
    data = load("digits", val_size=0.1, seed=0)
    idx = torch.tensor(distilled.metadata["train_indices"])
    assert torch.equal(data.train.images[idx].float() / 255, distilled.images)
    assert torch.equal(data.train.labels[idx], distilled.labels)


def test_coreset_methods_differ():
    from dreamdd.config import resolve
    from dreamdd.coreset import feature_network, select_coreset
    from dreamdd.data import load
    config = resolve("digits", 5, overrides={"model": {"width": 16, "depth": 2}})
    data = load("digits", val_size=0.1, seed=0)
    net = feature_network(config, data, torch.device("cpu"), epochs=1)
    picks = {m: select_coreset(data, m, 5, net, 0, torch.device("cpu")).tolist()
             for m in ("random", "herding", "kcenter", "representative")}
    assert len({tuple(v) for v in picks.values()}) == 4
    with pytest.raises(dreamdd.DreamddError, match="larger than the smallest class"):
        select_coreset(data, "herding", 10_000, net, 0, torch.device("cpu"))
