import pytest

from dreamdd.config import Config, list_presets, load_preset, parse_overrides, resolve
from dreamdd.errors import DreamddError


def test_image_lr_scales_with_ipc_and_image_size():
    config = resolve("cifar10", 10)
    assert config.image_lr(32) == pytest.approx(5e-3)
    config.synth.ipc = 50
    assert config.image_lr(32) == pytest.approx(2.5e-2)
    mnist = resolve("mnist", 1)
    assert mnist.image_lr(28) == pytest.approx(1e-5)
    assert mnist.image_lr(56) == pytest.approx(4e-5)
    mnist.synth.lr = 0.3
    assert mnist.image_lr(28) == 0.3


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist", "svhn", "cifar10", "cifar100"])
@pytest.mark.parametrize("ipc", [1, 10, 50])
def test_paper_presets_exist_and_hold_the_paper_settings(dataset, ipc):
    config = resolve(dataset, ipc)
    assert config.preset == f"{dataset}-ipc{ipc}"
    assert config.synth.ipc == ipc and config.synth.factor == 2
    assert config.model.width == 128 and config.model.depth == 3 and config.model.norm == "instance"
    assert config.distill.inner_loop == 100 and config.match.batch_real == 128
    assert config.select.interval == 10 and config.select.pool_size is None
    grayscale = dataset in ("mnist", "fashion-mnist")
    assert config.match.metric == ("l1" if grayscale else "mse")
    assert config.synth.lr_base == (1e-4 if grayscale else 5e-3)
    assert config.distill.n_data == (2000 if dataset.startswith("cifar") else 500)
    assert ("flip" in config.eval.augment) == (dataset not in ("svhn", "mnist"))
    assert config.eval.epochs == 1000 and config.eval.batch == 64


def test_overrides_are_typed_and_checked():
    config = resolve("digits", 10, overrides=parse_overrides(["select.interval=3", "synth.lr=0.5",
                                                               "select.pool_size=none", "seed=7"]))
    assert config.select.interval == 3 and config.synth.lr == 0.5 and config.seed == 7
    assert config.select.pool_size is None
    with pytest.raises(DreamddError, match="unknown setting 'select.intervall'"):
        resolve("digits", 10, overrides=parse_overrides(["select.intervall=3"]))
    with pytest.raises(DreamddError, match="not a valid int"):
        resolve("digits", 10, overrides=parse_overrides(["select.interval=fast"]))
    with pytest.raises(DreamddError, match="key=value"):
        parse_overrides(["select.interval"])


def test_validation_rejects_bad_choices():
    with pytest.raises(DreamddError, match="synth.init"):
        resolve("digits", 10, overrides={"synth": {"init": "zeros"}})
    with pytest.raises(DreamddError, match="synth.ipc"):
        resolve("digits", 0)
    with pytest.raises(DreamddError, match="unknown preset"):
        resolve("digits", 10, preset="nope")


def test_presets_resolve_extends_and_roundtrip():
    assert "digits" in list_presets() and "paper-idc" in list_presets()
    merged = load_preset("cifar10-ipc10")
    assert merged["synth"]["ipc"] == 10 and merged["match"]["metric"] == "mse"
    config = resolve("cifar10", 10)
    assert Config.from_dict(config.to_dict()) == config


def test_cpu_2h_preset_keeps_the_paper_settings_within_a_time_budget():
    laptop, paper = resolve("cifar10", 10, "cifar10-cpu-2h"), resolve("cifar10", 10)
    assert laptop.distill.max_minutes == 120 and laptop.distill.snapshot_every >= 1
    assert laptop.distill.eval_every == 0 and laptop.select.pool_size == 1000
    assert (laptop.model, laptop.match, laptop.eval) == (paper.model, paper.match, paper.eval)
    assert laptop.synth.factor == paper.synth.factor and laptop.synth.init == paper.synth.init
    assert laptop.image_lr(32) == 10 * paper.image_lr(32)


@pytest.mark.parametrize("name,dataset,ipc,steps,epochs,start,zca,lr_lr", [
    ("mtt-cifar10-ipc1", "cifar10", 1, 50, 2, 2, True, 1e-7),
    ("mtt-cifar10-ipc10", "cifar10", 10, 30, 2, 20, True, 1e-4),
    ("mtt-cifar10-ipc50", "cifar10", 50, 30, 2, 40, False, 1e-5),     # max start epoch 40 goes with no ZCA
    ("mtt-cifar100-ipc1", "cifar100", 1, 20, 3, 20, True, 1e-5),
    ("mtt-cifar100-ipc10", "cifar100", 10, 20, 2, 40, True, 1e-5)])
def test_mtt_presets_hold_the_published_settings(name, dataset, ipc, steps, epochs, start, zca, lr_lr):
    c = resolve(dataset, None, name)
    assert (c.match.method, c.synth.ipc, c.data.dataset) == ("mtt", ipc, dataset)
    assert (c.mtt.syn_steps, c.mtt.expert_epochs, c.mtt.max_start_epoch, c.mtt.zca) == (steps, epochs, start, zca)
    assert c.mtt.lr_lr == pytest.approx(lr_lr)
