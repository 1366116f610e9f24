"""--compile (dreamdd.compilation): the plain forwards compiled inside the mode, eager outside it; a compiled run
repeats its bytes, records the setting, and stays within float rounding of the eager run."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from dreamdd import api, compilation
from dreamdd.artifact import load_distilled
from dreamdd.errors import DreamddError
from dreamdd.evaluation import _worker_init
from dreamdd.models import create_model
from dreamdd.selection.representative import embed_images
from dreamdd.training import accuracy


needs_compiler = pytest.mark.skipif(compilation.unavailable(torch.device("cpu")) is not None,
                                    reason="torch.compile needs a C++ compiler on this machine")


def tiny_net(seed: int):
    torch.manual_seed(seed)
    return create_model("convnet", num_classes=3, channels=1, image_size=8, width=4, depth=2)


def test_outside_the_mode_the_network_itself_runs():
    net = tiny_net(0)
    assert not compilation.enabled()
    assert compilation.forward(net) is net
    assert compilation.embed(net) == net.embed
    with compilation.mode(False):
        assert not compilation.enabled()


def test_mode_restores_the_earlier_setting_and_worker_processes_take_the_parents():
    with compilation.mode(True):
        assert compilation.enabled()
        with compilation.mode(True):
            assert compilation.enabled()
        assert compilation.enabled()
    assert not compilation.enabled()
    threads = torch.get_num_threads()
    try:
        _worker_init(1, True)
        assert compilation.enabled()
    finally:
        compilation.set_enabled(False)
        torch.set_num_threads(threads)


@needs_compiler
def test_compiled_forwards_match_eager_and_fresh_networks_reuse_the_graph():
    from torch._dynamo.utils import counters
    x = torch.rand(6, 1, 8, 8)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    eager = [tiny_net(s) for s in (0, 1)]
    want_embed = [embed_images(n, lambda idx: x[idx], torch.arange(6), 4) for n in eager]
    want_acc = [accuracy(n, lambda idx: x[idx], labels, chunk=4) for n in eager]
    graphs_before = counters["stats"]["unique_graphs"]
    with compilation.mode(True):
        got_embed = [embed_images(n, lambda idx: x[idx], torch.arange(6), 4) for n in eager]
        got_acc = [accuracy(n, lambda idx: x[idx], labels, chunk=4) for n in eager]
    for want, got in zip(want_embed, got_embed):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert got_acc == want_acc
    # the second network and the chunks of other sizes compile no graph the first network's calls did not
    # (two shapes: the full chunk and the tail), for the embedding and the forward
    assert counters["stats"]["unique_graphs"] - graphs_before <= 4


@needs_compiler
def test_only_the_once_differentiated_side_of_matching_is_compiled():
    from dreamdd.methods.gradient import GradientMatching, forward
    net = tiny_net(0)
    real, real_labels = torch.rand(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    syn, syn_labels = torch.rand(3, 1, 8, 8, requires_grad=True), torch.tensor([0, 1, 2])
    matching = GradientMatching()
    want = torch.autograd.grad(matching.loss(net, real, real_labels, syn, syn_labels), syn)[0]
    with compilation.mode(True):
        # the synthetic side must stay eager: its weight gradients are differentiated again (create_graph)
        got = torch.autograd.grad(matching.loss(net, real, real_labels, syn, syn_labels), syn)[0]
        embedded = forward(net, syn, "fp32", embed=True, once_differentiated=True).mean(0)   # DM's image gradient
        dm_got = torch.autograd.grad(embedded.square().sum(), syn)[0]
    dm_want = torch.autograd.grad(forward(net, syn, "fp32", embed=True).mean(0).square().sum(), syn)[0]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(dm_got, dm_want, rtol=1e-4, atol=1e-6)


def test_check_says_what_is_missing(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(compilation.shutil, "which", lambda name: None)
    assert "C++ compiler" in compilation.unavailable(torch.device("cpu"))
    with pytest.raises(DreamddError, match="--compile: .*C\\+\\+ compiler"):
        compilation.check(torch.device("cpu"))
    with pytest.raises(DreamddError, match="C\\+\\+ compiler"):
        with api.run_modes(False, True, torch.device("cpu")):
            pass
    assert not compilation.enabled()


@needs_compiler
def test_a_compiled_run_repeats_its_bytes_and_records_the_setting(tmp_path, tiny):
    settings = tiny(distill={"iterations": 2, "inner_loop": 2, "eval_every": 0}, eval={"epochs": 2, "repeats": 1})
    runs = {}
    for name, compiled in (("a", True), ("b", True), ("eager", False)):
        runs[name] = api.distill("digits", 1, out=tmp_path / name, overrides=settings, compile=compiled)
    a, b, eager = (load_distilled(runs[n].path) for n in ("a", "b", "eager"))
    assert torch.equal(a.images, b.images)
    assert (a.images - eager.images).abs().max() < 1e-3        # float rounding of fused kernels, not a new method
    assert yaml.safe_load((runs["a"].path / "config.yaml").read_text())["compile"] is True
    assert json.loads((runs["a"].path / "summary.json").read_text())["compile"] is True
    assert a.metadata["compile"] is True and eager.metadata["compile"] is False
    assert not compilation.enabled()
