"""Each framework as its authors ran it: augmentation modes, the image learning-rate space, clamping, presets,
named evaluation protocols with two test numbers, and timings that count every second once."""
import copy

import pytest
import torch

import dreamdd
from conftest import tiny_settings
from dreamdd.engine import timing
from dreamdd.api import load_data
from dreamdd.artifact import load_distilled
from dreamdd.augment import SiameseAugment
from dreamdd.config import dump_yaml, load_preset, merge, Config, resolve
from dreamdd.engine.distiller import Distiller
from dreamdd.image_optimizer import ImageSGD, channel_preconditioner, zca_preconditioner
from dreamdd.protocols import PROTOCOLS, describe, lr_milestones
from dreamdd.report import compare_runs
from dreamdd.seeding import generator
from dreamdd.zca import fit_zca

ALL = "color_crop_cutout_flip_scale_rotate"
TINY = tiny_settings(distill={"iterations": 2})


def tiny(method, **extra):
    o = copy.deepcopy(TINY)
    o["match"]["method"] = method
    for section, values in extra.items():
        o.setdefault(section, {}).update(values)
    return o


# ---- augmentation modes --------------------------------------------------------------------------------------
def test_single_mode_applies_one_op_per_call_and_every_op_gets_drawn():
    dsa = SiameseAugment(ALL, "single")
    drawn = [tuple(dsa.draw_ops(generator(0, "draw", k))) for k in range(200)]
    assert all(len(ops) == 1 for ops in drawn)
    assert {ops[0] for ops in drawn} == set(ALL.split("_"))


def test_idc_mode_keeps_flip_and_color_and_draws_one_of_the_rest():
    dsa = SiameseAugment("color_crop_flip_scale_rotate", "idc")
    drawn = [dsa.draw_ops(generator(0, "draw", k)) for k in range(200)]
    for ops in drawn:
        assert "color" in ops and "flip" in ops
        assert len([op for op in ops if op in ("crop", "scale", "rotate")]) == 1
    assert {op for ops in drawn for op in ops} == {"color", "crop", "flip", "scale", "rotate"}


def test_idc_mode_equals_all_when_nothing_is_to_choose_and_draws_nothing():
    g1, g2 = generator(5, "x"), generator(5, "x")
    assert SiameseAugment("color_crop_cutout", "idc").draw_ops(g1) == ["color", "crop", "cutout"]
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))   # no random number consumed
    x = torch.rand(6, 3, 8, 8)
    a = SiameseAugment("color_crop_cutout", "idc")(x, generator(1, "a"), shared=True)
    b = SiameseAugment("color_crop_cutout", "all")(x, generator(1, "a"), shared=True)
    torch.testing.assert_close(a, b)


def test_single_mode_is_siamese_one_op_and_parameters_for_real_and_synthetic():
    x = torch.rand(4, 3, 16, 16)
    for k in range(10):
        out = SiameseAugment(ALL, "single")(torch.cat([x, x]), generator(k, "siamese"), shared=True)
        torch.testing.assert_close(out[:4], out[4:])


def test_unknown_mode_is_refused():
    with pytest.raises(dreamdd.DreamddError, match="mode"):
        SiameseAugment("color", "some")
    with pytest.raises(dreamdd.DreamddError, match="augment_mode"):
        resolve("digits", 2, overrides={"dm": {"augment_mode": "many"}})


def test_config_yaml_records_each_mode_next_to_its_strategy():
    text = dump_yaml(resolve("cifar10", 10, "dsa"))
    assert "augment: color_crop_cutout_flip_scale_rotate\n  augment_mode: single" in text
    text = dump_yaml(resolve("cifar10", 10))
    assert "augment: color_crop_cutout\n  augment_mode: idc" in text
    assert "net_augment: color_crop\n  net_augment_mode: idc" in text


# ---- the image learning-rate space ---------------------------------------------------------------------------
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def _loss(y, target):
    return ((y - target) ** 2 * torch.linspace(0.5, 2.0, y.numel()).view_as(y)).sum() + (y ** 3).sum() * 0.01


def test_pixel_sgd_with_channel_preconditioner_equals_sgd_on_normalized_images():
    torch.manual_seed(0)
    mean = torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float64).view(1, 3, 1, 1)
    y0, target = torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.randn(2, 3, 4, 4, dtype=torch.float64)
    y = y0.clone().requires_grad_(True)
    reference = torch.optim.SGD([y], lr=0.1, momentum=0.5)
    x = (y0 * std + mean).requires_grad_(True)
    ours = ImageSGD(x, 0.1, 0.5, channel_preconditioner(STD))
    for _ in range(6):
        for opt, loss in ((reference, _loss(y, target)), (ours, _loss((x - mean) / std, target))):
            opt.zero_grad()
            loss.backward()
            opt.step()
    torch.testing.assert_close((x.detach() - mean) / std, y.detach(), rtol=1e-9, atol=1e-9)
    assert not torch.allclose(y.detach(), y0)


def test_pixel_sgd_with_zca_preconditioner_equals_sgd_on_whitened_images():
    torch.manual_seed(1)
    c, h, w = 2, 3, 3
    std = torch.tensor([0.3, 0.2]).view(1, c, 1, 1)
    mean = torch.tensor([0.5, 0.4]).view(1, c, 1, 1)
    data = torch.randn(64, c, h, w) @ torch.randn(w, w) * 0.5      # correlated "normalized" images
    zmean, matrix = fit_zca(lambda idx: data[idx], 64, eps=0.1)
    matrix = matrix.double()
    zmean = zmean.double()

    def whiten(normalized):
        return (normalized.flatten(1) - zmean) @ matrix

    x0 = (torch.rand(2, c, h, w, dtype=torch.float64) * 0.8 + 0.1)
    target = torch.randn(2, c * h * w, dtype=torch.float64)
    z = whiten((x0 - mean) / std).clone().requires_grad_(True)
    reference = torch.optim.SGD([z], lr=0.05, momentum=0.5)
    x = x0.clone().requires_grad_(True)
    precondition = zca_preconditioner([0.3, 0.2], matrix.float())
    ours = ImageSGD(x, 0.05, 0.5, lambda g: precondition(g.float()).double())
    for _ in range(5):
        for opt, loss in ((reference, _loss(z, target)), (ours, _loss(whiten((x - mean) / std), target))):
            opt.zero_grad()
            loss.backward()
            opt.step()
    torch.testing.assert_close(whiten((x.detach() - mean) / std), z.detach(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method,space,clamps", [("idc", "pixels", True), ("dreamplus", "pixels", True),
                                                 ("dc", "normalized", False), ("dsa", "normalized", False),
                                                 ("dm", "normalized", False)])
def test_methods_declare_their_image_space_and_clamping(tmp_path, method, space, clamps):
    lr = 50.0 if space == "normalized" else 5.0        # large enough to push pixels out of [0, 1]
    result = dreamdd.distill("digits", 2, out=tmp_path / method, quiet=True, evaluate=False,
                             overrides=tiny(method, synth={"lr": lr}, distill={"iterations": 2}))
    distilled = load_distilled(result.path)
    assert distilled.metadata["image_space"] == space and distilled.metadata["clamped"] is clamps
    inside = bool(((distilled.images >= 0) & (distilled.images <= 1)).all())
    assert inside is clamps
    assert "space" in (result.path / "log.txt").read_text()


# ---- timings -------------------------------------------------------------------------------------------------
class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.mark.parametrize("method", ["idc", "dc", "dsa", "dm", "dreamplus"])
def test_a_slow_selector_is_counted_as_selection_only(monkeypatch, method):
    clock = FakeClock()
    monkeypatch.setattr(timing, "clock", clock)
    config = resolve("digits", 2, overrides=tiny(method, synth={"init": "real"}, distill={"iterations": 1}))
    distiller = Distiller(config, load_data(config), torch.device("cpu"))
    real_select, calls = distiller.selector.select, []

    def slow_select(*args, **kwargs):
        clock.now += 10.0           # the only time that passes on the fake clock
        calls.append(1)
        return real_select(*args, **kwargs)

    monkeypatch.setattr(distiller.selector, "select", slow_select)
    distiller.run(final_eval=False)
    t = distiller.timings
    assert calls and t.select == 10.0 * len(calls)
    assert t.match == 0.0 and t.network == 0.0


def test_nested_parts_pause_the_outer_one(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(timing, "clock", clock)
    t = timing.Timings()
    with t.part("match"):
        clock.now += 1
        with t.part("select"):
            clock.now += 5
        clock.now += 2
    assert (t.match, t.select) == (3.0, 5.0)


# ---- presets -------------------------------------------------------------------------------------------------
def _preset(name, **named):
    config = Config()
    merge(config, load_preset(name), origin=name)
    return config


# (preset, dotted key, value): every value ../shared/FIDELITY.md names, from the authors' released code
PRESET_VALUES = [
    ("paper-idc", "match.augment", "color_crop_cutout"), ("paper-idc", "match.augment_mode", "idc"),
    ("paper-idc", "match.batch_real", 128), ("paper-idc", "synth.momentum", 0.5), ("paper-idc", "synth.factor", 2),
    ("paper-idc", "synth.lr_base", 5e-3), ("paper-idc", "synth.lr_base_size", 32),
    ("paper-idc", "distill.iterations", 2000), ("paper-idc", "distill.inner_loop", 100),
    ("paper-idc", "distill.n_data", 2000), ("paper-idc", "distill.net_batch", 128),
    ("paper-idc", "distill.net_augment", "color_crop"), ("paper-idc", "distill.cutmix_prob", 0.5),
    ("paper-idc", "select.per_cluster", 1), ("paper-idc", "select.interval", 10),
    ("paper-idc", "select.pool_size", None), ("paper-idc", "select.selector", "dream"),
    ("paper-idc", "synth.init", "representative"),
    ("paper-idc", "eval.protocol", "idc"), ("paper-idc", "eval.epochs", 1000), ("paper-idc", "eval.batch", 64),
    ("paper-idc", "eval.augment", "color_crop_flip_scale_rotate"), ("paper-idc", "eval.augment_mode", "idc"),
    ("paper-idc", "eval.cutmix_prob", 0.5), ("paper-idc", "eval.lr_schedule", "idc"),
    ("paper-idc", "eval.lr", 0.01), ("paper-idc", "eval.weight_decay", 5e-4),
    ("fashion-mnist", "synth.lr_base_size", 32), ("fashion-mnist", "synth.lr_base", 1e-4),
    ("fashion-mnist", "match.metric", "l1"), ("fashion-mnist", "distill.n_data", 500),
    ("mnist", "synth.lr_base_size", 28), ("mnist", "match.augment", "color_crop"),
    ("mnist", "distill.cutmix_prob", 0.0), ("mnist", "eval.cutmix_prob", 0.0),
    ("mnist", "eval.augment", "color_crop_scale_rotate"), ("mnist", "match.metric", "l1"),
    ("svhn", "eval.augment", "color_crop_scale_rotate"), ("svhn", "distill.n_data", 500),
    ("idc", "match.batch_real", 64), ("idc", "select.selector", "random"), ("idc", "synth.init", "real"),
    ("dreamplus", "select.per_cluster", 1), ("dreamplus", "dreamplus.warmup_epochs", 1),
    ("dc", "synth.lr", 0.1), ("dc", "match.batch_real", 256), ("dc", "match.augment", ""),
    ("dc", "eval.protocol", "dc"), ("dc", "eval.epochs", 300), ("dc", "eval.batch", 256), ("dc", "eval.augment", ""),
    ("dc", "eval.lr_schedule", "half"), ("dc", "eval.cutmix_prob", 0.0),
    ("dsa", "dc.augment", ALL), ("dsa", "dc.augment_mode", "single"), ("dsa", "eval.protocol", "dsa"),
    ("dsa", "eval.epochs", 1000), ("dsa", "eval.batch", 256), ("dsa", "eval.augment", ALL),
    ("dsa", "eval.augment_mode", "single"), ("dsa", "eval.cutmix_prob", 0.0), ("dsa", "eval.lr_schedule", "half"),
    ("dm", "synth.lr", 1.0), ("dm", "dm.augment", ALL), ("dm", "dm.augment_mode", "single"),
    ("dm", "match.batch_real", 256), ("dm", "eval.protocol", "dm"), ("dm", "eval.batch", 256),
    ("mtt", "synth.lr", 1000.0), ("mtt", "mtt.augment_mode", "single"), ("mtt", "mtt.expert_augment_mode", "single"),
    ("mtt", "eval.protocol", "mtt"), ("mtt", "eval.learned_lr", True), ("mtt", "eval.cutmix_prob", 0.0),
    ("mtt", "eval.batch", 256), ("mtt", "eval.lr_schedule", "half"),
    ("mtt-cifar10-ipc1", "synth.lr", 100.0), ("mtt-cifar10-ipc10", "synth.lr", 1e5),
    ("mtt-cifar10-ipc50", "synth.lr", 1000.0), ("mtt-cifar100-ipc1", "synth.lr", 1000.0),
    ("mtt-cifar100-ipc10", "synth.lr", 1000.0),
]


@pytest.mark.parametrize("preset,key,value", PRESET_VALUES)
def test_preset_holds_the_authors_value(preset, key, value):
    section, name = key.split(".")
    assert getattr(getattr(_preset(preset), section), name) == value


def test_image_lr_of_fashion_mnist_follows_the_authors_base_size():
    config = resolve("fashion-mnist", 10)
    assert config.image_lr(28) == pytest.approx(1e-4 * (28 / 32) ** 2)


def test_experts_default_to_mtt_epochs(tmp_path, monkeypatch):
    from dreamdd import experts as module
    asked = {}

    def record(config, data, out, experts, epochs, *args, **kwargs):
        asked["epochs"] = epochs
        return out
    monkeypatch.setattr(module, "train_experts", record)
    module.experts("digits", tmp_path / "experts")
    assert asked["epochs"] == 50


def test_dreamplus_initialisation_network_is_warmed_up_on_real_data():
    config = resolve("digits", 2, "dreamplus", overrides=tiny("dreamplus", model=TINY["model"]))
    distiller = Distiller(config, load_data(config), torch.device("cpu"))
    warm = distiller.method.init_network()
    cold = distiller.context.network("init")
    assert any(not torch.equal(a, b) for a, b in zip(warm.state_dict().values(), cold.state_dict().values()))


# ---- protocols and the two test numbers ----------------------------------------------------------------------
def test_lr_schedules():
    assert lr_milestones("idc", 1000) == ([666, 833], 0.2)
    assert lr_milestones("half", 300) == ([150], 0.1)


def test_describe_names_the_protocol_and_every_departure():
    assert describe({"protocol": "dc", **PROTOCOLS["dc"]}) == "dc"
    assert describe({"protocol": "dc", **PROTOCOLS["dc"], "epochs": 150}) == "dc (epochs=150)"


def test_protocol_overrides_apply_after_the_protocol():
    config = resolve("digits", 2, overrides={"eval": {"epochs": 7, "protocol": "dsa"}})
    assert config.eval.protocol == "dsa" and config.eval.epochs == 7 and config.eval.batch == 256


def test_evaluate_under_a_named_protocol_records_it_with_both_numbers(tmp_path):
    result = dreamdd.distill("digits", 2, out=tmp_path / "run", quiet=True, overrides=tiny("idc"))
    final = result.summary["evaluation"]
    assert final["protocol"].startswith("idc") and "test_mean" in final and "test_last_mean" in final
    dc = dreamdd.evaluate(result.path, repeats=1, epochs=2, protocol="dc")
    assert dc["protocol"] == "dc (epochs=2)"
    assert (dc["recipe"]["batch"], dc["recipe"]["augment"], dc["recipe"]["lr_schedule"]) == (256, "", "half")
    run = dc["runs"][0]            # DC's protocol trained one network for 2 epochs and tested it twice
    assert run["epochs_trained"] == 2 and (dc["test_mean"], dc["test_last_mean"]) == (run["test_acc"],
                                                                                     run["test_acc_last"])


def test_without_a_validation_split_only_the_last_epoch_number_exists(tmp_path, capsys):
    from dreamdd.cli import main
    code = main(["distill", "--dataset", "digits", "--ipc", "2", "--quiet", "--out", str(tmp_path / "r"),
                 "--set", "data.val_size=0", "--set", "distill.iterations=1", "--set", "distill.inner_loop=1",
                 "--set", "distill.eval_every=1", "--set", "eval.epochs=2", "--set", "eval.repeats=1",
                 "--set", "model.width=16"])
    out = capsys.readouterr().out
    assert code == 0 and "after the last epoch" in out and "no validation split" in out
    evaluation = load_distilled(tmp_path / "r").metadata["evaluation"]
    assert "test_mean" not in evaluation and "test_last_mean" in evaluation
    assert evaluation["checkpoint"].startswith("last epoch")


def test_compare_says_when_runs_were_evaluated_under_different_protocols(tmp_path):
    a = dreamdd.distill("digits", 2, out=tmp_path / "a", quiet=True,
                        overrides=tiny("idc", distill={"eval_every": 1, "eval_epochs": 2}))
    b = dreamdd.distill("digits", 2, out=tmp_path / "b", quiet=True,
                        overrides=tiny("idc", distill={"eval_every": 1, "eval_epochs": 2}, eval={"protocol": "dc",
                                                                                                "epochs": 2}))
    text = "\n".join(compare_runs(a.path, b.path).lines())
    assert "different protocols" in text and "dc" in text
