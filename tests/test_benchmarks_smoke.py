"""Smoke tests of the benchmarks on tiny shapes (no timing assertions): the shared helpers in dreamdd.experiments
directly, each script's own measurement functions in a child process run inside benchmarks/ (as a user would
import them there)."""
from __future__ import annotations

import json
import textwrap

import pytest
import torch

from dreamdd import experiments


def test_embed_variants_agree():
    net = experiments.convnet(num_classes=2, channels=3, size=8, width=4, depth=1)
    images = torch.rand(10, 3, 8, 8)
    fn = lambda idx: images[idx]  # noqa: E731
    idx = torch.arange(10)
    a = experiments.embed(net, fn, idx, 4)
    b = experiments.embed(net, fn, idx, 10, memory_format=torch.channels_last)
    assert torch.allclose(a, b, atol=1e-5)
    assert experiments.embed(net, fn, idx, 3, dtype=torch.bfloat16).shape == a.shape
    assert net.training          # embedding leaves the network as it found it


def test_machine_info_names_the_machine():
    info = experiments.machine()
    assert {"cpu", "cpus", "torch", "threads", "python", "load_average"} <= set(info)
    assert info["threads"] == torch.get_num_threads() and len(info["load_average"]) == 3


def _run(benchmark, code: str):
    return benchmark("smoke", code=textwrap.dedent(code))


def test_speed_measurements_on_a_tiny_net(benchmark, tmp_path):
    _run(benchmark, f"""
        import pytest, speed
        r = speed.floor_passes(num_classes=2, size=8, width=4, depth=1, batch_real=4, n_syn=2, n_data=8,
                               net_batch=4, repeats=1)
        for layout in ("contiguous", "channels_last"):
            row = r[layout]
            assert row["match_bare"] > 0 and row["network_with_dsa_cutmix"] > 0
            assert row["difference_vs_contiguous"]["image_grad_max_rel"] < 1e-3
        assert set(r["augment_only"]) == {{"match_dsa", "network_dsa_cutmix"}}
        t = speed.layout_tolerance(size=8, width=4, depth=1, batch_real=4, n_syn=2)
        assert all(t[layout]["image_grad_rel_err_vs_fp64"] < 1e-3 for layout in ("contiguous", "channels_last"))
        assert speed.selection_share(0.0) == 0.0
        assert speed.selection_share(10.0, loop_seconds=9.0, interval=10) == pytest.approx(10 / 100)
        e = speed.eval_breakdown(n_images=8, batch=4, epochs=1, val_images=6, size=8, width=4, full_epochs=4,
                                 val_every=2)
        assert e["validation_passes"] == 2 and e["extrapolated_seconds"] > 0
        assert sum(e["share"].values()) == pytest.approx(1.0, rel=1e-6)
        b = speed.eval_breakdown(n_images=8, batch=4, epochs=1, val_images=6, size=8, width=4, full_epochs=4,
                                 val_every=2, precision="bf16")
        assert b["precision"] == "bf16" and b["extrapolated_seconds"] > 0
        from pathlib import Path
        path = speed.write_result("smoke", {{"result": {{"x": 1}}}}, speed.machine_info(), Path({str(tmp_path)!r}))
        assert path.name == "speed-smoke.json" and '"x": 1' in path.read_text()
        """)


def test_selection_quality_mmd_and_representatives(benchmark):
    _run(benchmark, """
        import pytest, torch, selection_quality as quality
        g = torch.Generator().manual_seed(0)
        x = torch.randn(200, 16, generator=g)
        assert quality.mmd(x, x) == pytest.approx(0.0, abs=1e-6)
        assert quality.mmd(x + 3.0, x) > 0.5
        assert quality.mmd(x[:50], x) < quality.mmd(x[:50] + 1.0, x)
        y = torch.randn(300, 8, generator=torch.Generator().manual_seed(1))
        picks = quality.representatives(y, 16, seed=0)
        assert picks.numel() == 16 and picks.unique().numel() == 16
        pooled = quality.representatives(y, 16, seed=0, pool=64)
        assert pooled.numel() == 16 and int(pooled.max()) < 300
        """)


def test_imagenet_scale_generates_an_imagenet_layout(benchmark, tmp_path):
    _run(benchmark, f"""
        from pathlib import Path
        import imagenet_scale as scale
        pool = scale.jpeg_pool(3)
        assert len(set(pool)) == 3 and all(p[:2] == b"\\xff\\xd8" for p in pool)
        root = Path({str(tmp_path)!r})
        assert scale.generate(root, 2, 1, pool, ["n01440764", "n01443537"]) == 4
        assert len(list((root / "imagenet" / "train").rglob("*.JPEG"))) == 4
        assert len(list((root / "imagenet" / "val").rglob("*.JPEG"))) == 2
        """)


@pytest.mark.parametrize("script", ["ablation", "budget", "budget_gain", "dispatch", "gpu_check", "image_step",
                                    "imagenet_scale", "iterations", "kmeans_compare", "precision", "precision_accuracy", "scaling",
                                    "selection_quality", "speed"])
def test_every_script_parses_its_arguments(benchmark, script):
    assert "usage" in benchmark(script, "--help").stdout


def test_scaling_compares_one_process_with_two(benchmark, tmp_path, tiny_set):
    out = tmp_path / "scaling.json"
    benchmark("scaling", "--dataset", "digits", "--ipc", "1", "--iterations", "1", "--runs", str(tmp_path / "runs"),
              "--out", str(out), *tiny_set)
    result = json.loads(out.read_text())
    assert result["processes"] == 2 and result["ratio"] > 0
    assert result["max_pixel_difference"] <= 1e-3        # tests/test_distributed.py's tolerance
    assert json.loads((tmp_path / "runs" / "p2" / "summary.json").read_text())["processes"] == 2


def test_gpu_check_runs_its_cpu_side(benchmark, tmp_path, tiny_set):
    out = tmp_path / "gpu-check.json"
    benchmark("gpu_check", "--device", "cpu", "--ipc", "1", "--iterations", "1", "--out", str(out), *tiny_set)
    result = json.loads(out.read_text())
    assert result["syncs"]["syncs"] is None                     # sync debug mode counts CUDA syncs only
    assert result["profile"]["aten_ops_per_inner"] > 0 and result["profile"]["inner_iterations"] > 0
    assert result["repeat"]["deterministic"]["identical"] and result["repeat"]["default"]["identical"]


def test_image_step_times_both_steps(benchmark, tmp_path):
    out = tmp_path / "image-step.json"
    benchmark("image_step", "--classes", "3", "6", "--ipc", "1", "--size", "8", "--steps", "2", "--out", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert [r["classes"] for r in rows] == [3, 6] and all(r["whole_set_ms"] > 0 and r["class_ms"] > 0 for r in rows)


def test_precision_accuracy_evaluates_each_set_in_both_precisions(benchmark, tmp_path, tiny_set):
    out = tmp_path / "precision-accuracy.json"
    benchmark("precision_accuracy", "--dataset", "digits", "--ipc", "1", "--seeds", "0", "1", "--iterations", "1",
              "--eval-repeats", "1", "--eval-epochs", "2", "--runs", str(tmp_path / "runs"), "--out", str(out),
              *tiny_set)
    result = json.loads(out.read_text())
    assert set(result["table"]) == {"fp32/fp32", "fp32/bf16", "bf16/fp32", "bf16/bf16"}
    assert all(len(row["per_seed"]) == 2 for row in result["table"].values())
    assert set(result["verdict"]) == {"fp32/bf16", "bf16/fp32", "bf16/bf16"}
    for precision in ("fp32", "bf16"):
        summary = json.loads((tmp_path / "runs" / f"{precision}-s0" / "summary.json").read_text())
        assert summary["precision"] == precision
        cached = list((tmp_path / "runs" / f"{precision}-s0" / "snapshots").rglob("eval-*.json"))
        assert sorted(json.loads(c.read_text())["precision"] for c in cached) == ["bf16", "fp32"]
