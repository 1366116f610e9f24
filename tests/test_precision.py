"""--precision: fp32, bf16 autocast, and auto resolved to what the hardware runs natively."""
import sys
from collections import defaultdict

import pytest
import torch
import yaml
from conftest import tiny_settings

import dreamdd
from dreamdd import precision
from dreamdd.config import Config
from dreamdd.errors import DreamddError

CPU = torch.device("cpu")


def test_fp32_and_bf16_resolve_to_themselves():
    assert precision.resolve("fp32", CPU) == "fp32"
    assert precision.resolve("bf16", CPU) == "bf16"


@pytest.mark.parametrize("native,expected", [(True, "bf16"), (False, "fp32")])
def test_auto_follows_native_bf16(monkeypatch, native, expected):
    monkeypatch.setattr(precision, "native_bf16", lambda device: native)
    assert precision.resolve("auto", CPU) == expected


def test_native_bf16_on_cpu_reads_the_instruction_sets(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert precision.native_bf16(CPU) is False
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert precision.native_bf16(CPU) is True
    assert precision.native_bf16(torch.device("meta")) is False


def test_unknown_precision_is_refused_with_the_choices():
    with pytest.raises(DreamddError, match="fp32, bf16, auto"):
        precision.resolve("fp16", CPU)
    with pytest.raises(DreamddError, match="resolved"):
        precision.autocast("auto", CPU)


def test_bf16_autocast_runs_convolutions_in_bfloat16_and_fp32_does_not():
    conv = torch.nn.Conv2d(3, 4, 3)
    x = torch.randn(2, 3, 8, 8)
    with precision.autocast("bf16", CPU):
        assert conv(x).dtype == torch.bfloat16
    with precision.autocast("fp32", CPU):
        assert conv(x).dtype == torch.float32
    assert conv.weight.dtype == torch.float32        # parameters keep their dtype


# ---- the setting, and where a run honours it ------------------------------------------------------------------

# the functions that name a place of the loop, innermost first: a convolution is counted under the first of
# these found on the stack above it
PLACES = {"embed_images": "selection embedding", "real_gradients": "matching", "syn_gradients": "matching",
          "train_on_real": "network update", "feature_network": "feature network",
          "split_accuracy": "accuracy pass", "train_and_test": "evaluation training"}


def _place() -> str | None:
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_name not in PLACES:
        frame = frame.f_back
    return PLACES[frame.f_code.co_name] if frame is not None else None


@pytest.fixture
def conv_dtypes():
    """{place: set of output dtypes} of every Conv2d run while the fixture is active."""
    seen = defaultdict(set)

    def hook(module, args, output):
        if isinstance(module, torch.nn.Conv2d):
            seen[_place()].add(output.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    yield seen
    handle.remove()


def test_precision_is_a_validated_top_level_setting():
    assert Config.from_dict({"precision": "bf16"}).precision == "bf16"
    assert Config().precision == "fp32"                      # the default keeps fp32 until bf16 is shown to hold
    with pytest.raises(DreamddError, match="precision='fp16'.*fp32, bf16, auto"):
        Config.from_dict({"precision": "fp16"})


def test_a_bf16_run_runs_bf16_kernels_where_promised_and_fp32_elsewhere(tmp_path, conv_dtypes):
    dreamdd.distill("digits", 1, out=tmp_path / "run", quiet=True, precision="bf16",
                    overrides=tiny_settings(distill={"iterations": 1}))
    bf16, fp32 = {torch.bfloat16}, {torch.float32}
    assert conv_dtypes["matching"] == bf16
    assert conv_dtypes["network update"] == bf16
    assert conv_dtypes["evaluation training"] == bf16
    assert conv_dtypes["selection embedding"] == bf16
    assert conv_dtypes["accuracy pass"] == bf16 | fp32          # validation in bf16, the test passes in fp32
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["precision"] == "bf16"


def test_an_fp32_run_has_no_bf16_kernel(tmp_path, conv_dtypes):
    dreamdd.distill("digits", 1, out=tmp_path / "run", quiet=True, overrides=tiny_settings(distill={"iterations": 1}))
    assert set().union(*conv_dtypes.values()) == {torch.float32}


@pytest.mark.parametrize("method", ["dm", "dsa"])
def test_dm_and_dsa_match_in_bf16(tmp_path, conv_dtypes, method):
    dreamdd.distill("digits", 1, out=tmp_path / "run", quiet=True, precision="bf16", method=method,
                    evaluate=False, overrides=tiny_settings(distill={"iterations": 1}))
    assert set().union(*conv_dtypes.values()) == {torch.bfloat16}


def test_auto_is_resolved_when_the_run_is_created(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    result = dreamdd.distill("digits", 1, out=tmp_path / "run", quiet=True, precision="auto",
                             overrides=tiny_settings(distill={"iterations": 1}))
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["precision"] == "bf16"
    assert result.summary["evaluation"]["precision"] == "bf16"


def test_a_bf16_run_is_deterministic(tmp_path):
    runs = [dreamdd.distill("digits", 1, out=tmp_path / name, quiet=True, precision="bf16", evaluate=False,
                            overrides=tiny_settings(distill={"iterations": 2})) for name in ("a", "b")]
    assert torch.equal(runs[0].distilled.images, runs[1].distilled.images)


def test_bf16_and_fp32_runs_differ_only_by_rounding(tmp_path):
    runs = [dreamdd.distill("digits", 1, out=tmp_path / p, quiet=True, precision=p, evaluate=False,
                            overrides=tiny_settings(distill={"iterations": 1})) for p in ("fp32", "bf16")]
    a, b = runs[0].distilled.images, runs[1].distilled.images
    assert not torch.equal(a, b)                                   # bf16 really ran
    assert (a - b).abs().max() < 0.05                              # and moved the images almost alike


def test_evaluate_records_its_precision(tmp_path):
    dreamdd.distill("digits", 1, out=tmp_path / "run", quiet=True, evaluate=False,
                    overrides=tiny_settings(distill={"iterations": 0}))
    result = dreamdd.evaluate(tmp_path / "run", precision="bf16", repeats=1, epochs=1)
    assert result["precision"] == "bf16"
    assert dreamdd.evaluate(tmp_path / "run", repeats=1, epochs=1)["precision"] == "fp32"


def test_zca_whitening_stays_fp32_inside_a_bf16_autocast():
    from dreamdd.zca import ZCA
    whiten = ZCA(torch.zeros(12), torch.eye(12) * 3)
    x = torch.rand(2, 3, 2, 2)
    with precision.autocast("bf16", CPU):
        out = whiten(x)
    assert out.dtype == torch.float32 and torch.equal(out, x * 3)


def test_the_artifact_names_the_precision_it_was_distilled_in(tmp_path):
    from dreamdd.artifact import load_distilled
    dreamdd.distill("digits", 1, out=tmp_path / "run", quiet=True, precision="bf16", evaluate=False,
                    overrides=tiny_settings(distill={"iterations": 0}))
    assert load_distilled(tmp_path / "run").metadata["precision"] == "bf16"


def test_kmeans_runs_in_fp32_on_bf16_features(monkeypatch):
    from dreamdd.selection import representative
    seen = []
    original = representative.kmeans
    monkeypatch.setattr(representative, "kmeans", lambda x, *a, **k: seen.append(x.dtype) or original(x, *a, **k))
    net = dreamdd.models.create_model("convnet", num_classes=2, channels=1, image_size=(8, 8), width=4, depth=1)
    images = torch.rand(30, 1, 8, 8)
    selector = representative.RepresentativeSelector(precision="bf16")
    chosen = selector.select(0, torch.arange(30), 3, net=net, images_fn=lambda idx: images[idx],
                             generator=torch.Generator().manual_seed(0))
    assert seen == [torch.float32] and len(chosen) == 3
