"""Choosing the compute device: `auto` takes CUDA when present, else the CPU."""
from __future__ import annotations

import torch

from .errors import DreamddError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DreamddError(f"device '{name}' was asked for but CUDA is not available here; use --device cpu or auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise DreamddError("device 'mps' was asked for but is not available here; use --device cpu or auto")
    return torch.device(name)
