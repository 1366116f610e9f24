"""--precision: fp32, bf16 autocast, and auto resolved to what the hardware runs natively."""
import pytest
import torch

from dreamdd import precision
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
