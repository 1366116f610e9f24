"""Numeric precision of a run's network work: fp32, or bfloat16 autocast in the places where its quality holds.

bf16 autocast runs the convolutions and matrix products of a forward (and so of its backward) in bfloat16; what
stays fp32 is decided by the caller, not by autocast: the synthetic images and their optimizer state (parameters
keep their dtype), k-means distances and loss reductions (callers cast to float first), MTT's trajectory loss and
ZCA. `auto` resolves to bf16 only where the hardware runs it natively (a CPU with AVX512-BF16 or AMX, a CUDA
device with bf16 support), else fp32, and is resolved once when a run is created so that config.yaml names the
precision the run really used.
"""
from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from .errors import DreamddError

PRECISIONS = ("fp32", "bf16", "auto")


def native_bf16(device: torch.device) -> bool:
    """Whether `device` runs bfloat16 arithmetic in hardware (not emulated through fp32 units)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False))
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def resolve(precision: str, device: torch.device) -> str:
    """'fp32' or 'bf16' for a configured precision (auto: bf16 where native_bf16, else fp32)."""
    if precision not in PRECISIONS:
        raise DreamddError(f"precision={precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def autocast(precision: str, device: torch.device) -> ContextManager:
    """The context a network's forward runs in: bfloat16 autocast for 'bf16', nothing for 'fp32'."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp32":
        return contextlib.nullcontext()
    raise DreamddError(f"precision {precision!r} must be resolved to fp32 or bf16 first (precision.resolve)")
