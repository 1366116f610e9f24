"""`--compile`: the networks' plain forwards compiled with torch.compile (inductor) for a run.

On a CPU most of a ConvNet's time outside its convolutions goes to instance norm, ReLU and pooling, each a pass
over memory of its own, and under bfloat16 autocast also to casts; inductor fuses them into a few generated
loops (BENCHMARKS.md, "compile"). Compiled are the forwards that autograd differentiates at most once:

- the network updates on real data and the evaluation's training steps (training.train_step);
- the evaluation's validation and test passes (training.accuracy);
- the selection embedding (selection.representative.embed_images);
- the real side of gradient matching (IDC, DC, DSA, DREAM+: the real batch's weight gradients are taken once),
  DM's embeddings and DREAM+'s feature term (methods.gradient.forward with once_differentiated).

The synthetic side of gradient matching differentiates through the network's gradient (a double backward), which
compiled graphs do not support, so it stays eager; so does MTT's unrolled student. Compiled kernels round differently
from the eager ones, so a run with --compile differs from one without by float rounding; with the same settings,
thread count and machine it repeats its bytes. The first call of each shape compiles (seconds to tens of seconds;
inductor keeps a cache on disk for later processes), so it pays off on long runs, not on a short test.

mode(True) turns it on for a block (a run), like determinism.mode; forward(net) and embed(net) give the callable
to use: inside the mode, a compiled function shared by all networks (a fresh network of the same architecture
reuses its graph), the network itself otherwise.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from typing import Callable, Iterator

import torch
from torch import nn

from .errors import DreamddError

_enabled = False


def enabled() -> bool:
    """Whether the networks' plain forwards are compiled (inside mode(True))."""
    return _enabled


def unavailable(device: torch.device) -> str | None:
    """Why torch.compile cannot run on `device` here (None: it can): inductor needs a C++ compiler for the CPU
    and Triton for CUDA."""
    if device.type == "cpu":
        compilers = [os.environ.get("CXX"), "g++", "clang++", "c++"]
        if not any(c and shutil.which(c) for c in compilers):
            return "compiling for the CPU needs a C++ compiler (g++ or clang++ on PATH, or $CXX)"
        return None
    if device.type == "cuda":
        return None if importlib.util.find_spec("triton") else "compiling for CUDA needs the triton package"
    return f"compiling is not supported on {device.type} devices"


def check(device: torch.device) -> None:
    """Raise a DreamddError that says what is missing when --compile cannot run on `device`."""
    problem = unavailable(device)
    if problem is not None:
        raise DreamddError(f"--compile: {problem}; install it or run without --compile")


def set_enabled(on: bool) -> None:
    """Compiled forwards on or off for the rest of this process (a worker process of a run in mode(True))."""
    global _enabled
    _enabled = bool(on)


@contextlib.contextmanager
def mode(on: bool) -> Iterator[None]:
    """Compiled forwards on (`on`) for the block, the earlier setting restored after it; off: nothing."""
    global _enabled
    if not on:
        yield
        return
    before, _enabled = _enabled, True
    try:
        yield
    finally:
        _enabled = before


def _call_forward(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return net(x)


def _call_embed(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return net.embed(x)


# One compiled function per kind of forward, shared by every network: the network is an argument (its parameters
# graph inputs), so a fresh network of the same architecture reuses the compiled graph instead of compiling anew.
_compiled: dict[str, Callable] = {}


def _compiled_call(name: str, fn: Callable) -> Callable:
    if name not in _compiled:
        _compiled[name] = torch.compile(fn)
    return _compiled[name]


def forward(net: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """What computes net(x): its compiled forward inside mode(True), the network itself otherwise."""
    if not _enabled:
        return net
    call = _compiled_call("forward", _call_forward)
    return lambda x: call(net, x)


def embed(net: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """What computes net.embed(x): compiled inside mode(True), the bound method otherwise."""
    if not _enabled:
        return net.embed
    call = _compiled_call("embed", _call_embed)
    return lambda x: call(net, x)
