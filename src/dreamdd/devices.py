"""Choosing the compute device (`auto` takes CUDA when present, else the CPU) and the memory layout networks
run in on it."""
from __future__ import annotations

import os

import torch
from torch import nn

from .errors import DreamddError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DreamddError(f"device '{name}' was asked for but CUDA is not available here; use --device cpu or auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise DreamddError("device 'mps' was asked for but is not available here; use --device cpu or auto")
    return torch.device(name)


def uses_channels_last() -> bool:
    """Whether networks run in the channels_last (NHWC) memory layout: only when DREAMDD_CHANNELS_LAST=1.
    On this project's reference CPU (2-core Zen 4, oneDNN) it is no faster than the default layout for the
    distillation loop and slower for the network update (BENCHMARKS.md, "floor"); on GPUs with tensor cores it
    usually pays, so it stays available. Results agree with the default layout to float tolerance, not bit for
    bit."""
    forced = os.environ.get("DREAMDD_CHANNELS_LAST", "")
    if forced not in ("", "0", "1"):
        raise DreamddError(f"DREAMDD_CHANNELS_LAST must be 0 or 1, not '{forced}'")
    return forced == "1"


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """A 4-D image batch in the channels_last layout (other tensors unchanged)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def _inputs_channels_last(module: nn.Module, args: tuple) -> tuple:
    return (channels_last(args[0]), *args[1:]) if args and isinstance(args[0], torch.Tensor) else args


def place_network(net: nn.Module, device: torch.device) -> nn.Module:
    """`net` on `device`, in the layout uses_channels_last chooses: its 4-D weights and every input batch of its
    forward pass (a pre-hook) then are channels_last."""
    net = net.to(device)
    if uses_channels_last():
        net = net.to(memory_format=torch.channels_last)
        net.register_forward_pre_hook(_inputs_channels_last)
    return net
