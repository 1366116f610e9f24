"""Smoke tests of the benchmark scripts' core functions on tiny shapes (no timing assertions)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def speed(load_benchmark):
    return load_benchmark("speed")


@pytest.fixture(scope="module")
def quality(speed, load_benchmark):
    return load_benchmark("selection_quality")


def test_mmd_identical_is_zero_and_shift_is_positive(quality):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 16, generator=g)
    assert quality.mmd(x, x) == pytest.approx(0.0, abs=1e-6)
    assert quality.mmd(x + 3.0, x) > 0.5
    subset = x[:50]
    assert quality.mmd(subset, x) < quality.mmd(subset + 1.0, x)


def test_representatives_are_distinct_positions(quality):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, 8, generator=g)
    picks = quality.representatives(x, 16, seed=0)
    assert picks.numel() == 16 and picks.unique().numel() == 16
    pooled = quality.representatives(x, 16, seed=0, pool=64)
    assert pooled.numel() == 16 and int(pooled.max()) < 300


def test_floor_runs_on_a_tiny_net(speed):
    r = speed.floor_passes(num_classes=2, size=8, width=4, depth=1, batch_real=4, n_syn=2, n_data=8, net_batch=4,
                           repeats=1)
    for layout in ("contiguous", "channels_last"):
        row = r[layout]
        assert row["match_bare"] >= 0 and row["network_with_dsa_cutmix"] >= 0
        assert row["difference_vs_contiguous"]["image_grad_max_rel"] < 1e-3
    assert set(r["augment_only"]) == {"match_dsa", "network_dsa_cutmix"}


def test_embed_variants_agree(speed):
    net = speed.convnet(num_classes=2, channels=3, size=8, width=4, depth=1)
    images = torch.rand(10, 3, 8, 8)
    fn = lambda idx: images[idx]  # noqa: E731
    idx = torch.arange(10)
    a = speed.embed(net, fn, idx, 4)
    b = speed.embed(net, fn, idx, 10, memory_format=torch.channels_last)
    assert torch.allclose(a, b, atol=1e-5)
    assert speed.embed(net, fn, idx, 3, dtype=torch.bfloat16).shape == a.shape


def test_selection_share_and_eval_breakdown(speed):
    assert speed.selection_share(0.0) == 0.0
    assert speed.selection_share(10.0, loop_seconds=9.0, interval=10) == pytest.approx(10 / 100)
    r = speed.eval_breakdown(n_images=8, batch=4, epochs=1, val_images=6, size=8, width=4, full_epochs=4,
                             val_every=2)
    assert r["validation_passes"] == 2 and r["extrapolated_seconds"] > 0
    assert sum(r["share"].values()) == pytest.approx(1.0, rel=1e-6)


def test_machine_info_and_result_file(speed, tmp_path):
    info = speed.machine_info()
    assert {"cpu", "torch", "threads", "load_average"} <= set(info)
    path = speed.write_result("smoke", {"result": {"x": 1}}, info, tmp_path)
    assert path.name == "speed-smoke.json" and '"x": 1' in path.read_text()


def test_layout_tolerance_on_a_tiny_net(speed):
    r = speed.layout_tolerance(size=8, width=4, depth=1, batch_real=4, n_syn=2)
    for layout in ("contiguous", "channels_last"):
        assert r[layout]["image_grad_rel_err_vs_fp64"] < 1e-3


def test_imagenet_scale_generates_an_imagenet_layout(load_benchmark, tmp_path):
    scale = load_benchmark("imagenet_scale")
    pool = scale.jpeg_pool(3)
    assert len(set(pool)) == 3 and all(p[:2] == b"\xff\xd8" for p in pool)
    n = scale.generate(tmp_path, 2, 1, pool, ["n01440764", "n01443537"])
    assert n == 4 and len(list((tmp_path / "imagenet" / "train").rglob("*.JPEG"))) == 4
    assert len(list((tmp_path / "imagenet" / "val").rglob("*.JPEG"))) == 2
