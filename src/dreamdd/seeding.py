"""Randomness derived from one seed: named, independent streams, so that any part of a run can be replayed."""
from __future__ import annotations

import contextlib
import hashlib
from typing import Iterator

import torch


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed that depends only on `seed` and the keys (e.g. ("net", outer_iteration))."""
    text = ":".join([str(int(seed))] + [str(k) for k in keys]).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


def generator(seed: int, *keys: object, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch.Generator on `device` seeded from `seed` and the keys."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, *keys))
    return g


@contextlib.contextmanager
def global_seed(seed: int, *keys: object) -> Iterator[None]:
    """Seed torch's global RNG inside the block (for module initialisers) and restore it afterwards."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(derive_seed(seed, *keys))
        yield
