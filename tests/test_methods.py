"""Every method behind the one Method interface, on the built-in digits with tiny settings: it lowers its own
loss, runs with the representative selector and initialisation, resumes exactly and records what it learned."""
import copy
import json

import pytest
import torch

import dreamdd
from dreamdd.api import load_data
from dreamdd.artifact import load_distilled
from dreamdd.cli import main
from dreamdd.config import resolve
from dreamdd.engine.distiller import Distiller
from dreamdd.experts import ExpertBuffer, experts
from dreamdd.methods import dc_loops, learned_eval_settings, list_methods
from dreamdd.synthetic import SyntheticSet
from dreamdd.image_optimizer import ImageSGD

from conftest import TINY
METHODS = ["idc", "dc", "dsa", "dm", "dreamplus", "mtt"]


@pytest.fixture(scope="module")
def expert_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("experts") / "digits"
    experts("digits", out, experts=2, epochs=3, overrides={"model": TINY["model"]})
    return out


def overrides(method, expert_dir, **extra):
    o = copy.deepcopy(TINY)
    o["match"]["method"] = method
    if method == "mtt":
        o["mtt"]["experts"] = str(expert_dir)
        o["synth"]["lr"] = 1.0     # pixels of 8x8 digits; the paper-derived default suits CIFAR's ZCA space
    for section, values in extra.items():
        o.setdefault(section, {}).update(values)
    return o


def test_every_method_is_registered():
    assert set(METHODS) <= set(list_methods())
    assert dc_loops(1) == (1, 1) and dc_loops(10) == (10, 50) and dc_loops(50) == (50, 10)


def test_experts_on_disk(expert_dir):
    manifest = json.loads((expert_dir / "experts.json").read_text())
    assert manifest["epochs"] == 3 and len(manifest["files"]) == 2 and manifest["zca"] is False
    buffer = ExpertBuffer(expert_dir)
    first, last = buffer.row(0, 0), buffer.row(0, 3)
    assert first.shape == (manifest["num_params"],) and not torch.equal(first, last)


@pytest.mark.parametrize("method", METHODS)
def test_method_lowers_its_own_loss(method, expert_dir):
    """The loss of outer iteration 0 (same networks, batches and augmentations: every stream derives from
    (seed, 0)) measured with frozen images, before and after a few iterations of distillation."""
    config = resolve("digits", 2, None, overrides(method, expert_dir, synth={"init": "noise"},
                                                  select={"selector": "random"}, distill={"iterations": 3}))
    data = load_data(config)

    def probe(images):
        distiller = Distiller(config, data, torch.device("cpu"))
        synthetic = SyntheticSet(images, data.info.num_classes, config.synth.factor)
        frozen = ImageSGD(synthetic.images, lr=0.0, momentum=0.0, classes=data.info.num_classes)
        return distiller.method.outer_iteration(0, synthetic, frozen)

    start = Distiller(config, data, torch.device("cpu")).initial_set().images.detach()
    before = probe(start)
    after_images = Distiller(config, data, torch.device("cpu")).run(final_eval=False).images
    assert probe(after_images) < before


@pytest.mark.parametrize("method", METHODS)
def test_method_with_dream_selector_and_representative_init(method, expert_dir, tmp_path):
    result = dreamdd.distill("digits", 2, out=tmp_path / method, quiet=True, evaluate=False, selector="dream",
                             init="representative", overrides=overrides(method, expert_dir,
                                                                        distill={"iterations": 1}))
    distilled = load_distilled(result.path)
    assert distilled.metadata["method"] == method and result.summary["method"] == method
    assert distilled.metadata["selector"] == "dream" and distilled.metadata["init"] == "representative"
    assert "method_info" in distilled.metadata
    assert torch.isfinite(distilled.images).all()


@pytest.mark.parametrize("method", ["dm", "mtt"])
def test_resume_equals_uninterrupted(method, expert_dir, tmp_path):
    o = overrides(method, expert_dir)
    full = dreamdd.distill("digits", 2, out=tmp_path / "full", quiet=True, evaluate=False, overrides=o)
    half = copy.deepcopy(o)
    half["distill"]["iterations"] = 2
    part = dreamdd.distill("digits", 2, out=tmp_path / "part", quiet=True, evaluate=False, overrides=half)
    dreamdd.distill(resume=part.path, iterations=3, evaluate=False, quiet=True)
    assert (full.path / "distilled.safetensors").read_bytes() == (part.path / "distilled.safetensors").read_bytes()
    if method == "mtt":   # the learned learning rate was restored, not restarted
        assert load_distilled(part.path).extra["lr"].item() == load_distilled(full.path).extra["lr"].item()


def test_mtt_artifact_holds_learned_lr_and_zca_and_evaluation_uses_them(tmp_path):
    out = tmp_path / "experts-zca"
    experts("digits", out, experts=1, epochs=2, overrides={"model": TINY["model"], "mtt": {"zca": True}})
    o = overrides("mtt", out, mtt={"zca": True, "lr_lr": 1e-3}, eval={"protocol": "mtt", "repeats": 1, "epochs": 2})
    result = dreamdd.distill("digits", 2, out=tmp_path / "mtt", quiet=True, overrides=o)
    distilled = load_distilled(result.path)
    lr = distilled.extra["lr"].item()
    assert lr > 0 and lr != pytest.approx(0.01, rel=1e-6)          # learned, moved away from lr_teacher
    info = distilled.metadata["method_info"]
    assert info["zca"] is True and info["lr"] == pytest.approx(lr)
    dim = 1 * 8 * 8   # digits: one channel, 8x8
    assert distilled.extra["zca_matrix"].shape == (dim, dim) and distilled.extra["zca_mean"].shape == (dim,)
    evaluation = distilled.metadata["evaluation"]
    assert evaluation["recipe"]["learned_lr"] is True and evaluation["protocol"].startswith("mtt")
    assert evaluation["runs"][0]["lr"] == pytest.approx(lr)        # MTT's protocol trains with the learned rate
    learned_lr, preprocess = learned_eval_settings("mtt", distilled.extra)
    assert learned_lr == pytest.approx(lr) and preprocess is not None
    again = dreamdd.evaluate(result.path, repeats=1, epochs=2)
    assert again["runs"][0]["lr"] == pytest.approx(lr) and again["test_mean"] == again["runs"][0]["test_acc"]
    idc = dreamdd.evaluate(result.path, repeats=1, epochs=2, protocol="idc")   # another protocol: its own lr
    assert idc["runs"][0]["lr"] == 0.01 and idc["recipe"]["batch"] == 64 and idc["protocol"].startswith("idc")


def test_mtt_without_experts_is_a_clear_error(tmp_path):
    with pytest.raises(dreamdd.DreamddError, match="dreamdd experts"):
        dreamdd.distill("digits", 2, out=tmp_path / "x", quiet=True, evaluate=False,
                        overrides=overrides("mtt", None))


def test_cli_method_flag_and_experts_command(tmp_path, capsys):
    code = main(["experts", "--dataset", "digits", "--out", str(tmp_path / "e"), "--experts", "1", "--epochs",
                 "2", "--set", "model.width=16", "--set", "model.depth=2", "--quiet"])
    assert code == 0 and (tmp_path / "e" / "experts.json").exists()
    args = ["distill", "--dataset", "digits", "--ipc", "1", "--method", "mtt", "--quiet", "--no-eval",
            "--out", str(tmp_path / "r"), "--set", f"mtt.experts={tmp_path / 'e'}", "--set", "mtt.expert_epochs=1",
            "--set", "mtt.syn_steps=2", "--set", "distill.iterations=2", "--set", "model.width=16",
            "--set", "model.depth=2", "--set", "synth.factor=1"]
    assert main(args) == 0
    assert load_distilled(tmp_path / "r").metadata["method"] == "mtt"
    capsys.readouterr()
