"""Distilled-set artifacts: safetensors (tensors only) plus metadata.json; loading one runs no code."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import TensorDataset

from .errors import DreamddError
from .rundir import atomic_write, read_json, write_json
from .synthetic import decode

TENSORS = "distilled.safetensors"
METADATA = "metadata.json"
FORMAT = "dreamdd-distilled"
FORMAT_VERSION = 1


@dataclass
class Distilled:
    """A distilled set: stored images (pixels in [0, 1]), their labels, and what produced them."""

    images: torch.Tensor
    labels: torch.Tensor
    metadata: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)   # e.g. a learned learning rate

    @property
    def factor(self) -> int:
        return int(self.metadata.get("factor", 1))

    def decoded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The training images a network sees (multi-formation decoded) and their labels."""
        return decode(self.images, self.factor), self.labels.repeat_interleave(self.factor ** 2)

    def dataset(self) -> TensorDataset:
        """A torch Dataset of (decoded image in [0, 1], label) pairs; normalize with metadata['dataset']."""
        return TensorDataset(*self.decoded())


def save_distilled(folder: str | os.PathLike, distilled: Distilled) -> Path:
    """Write distilled.safetensors and metadata.json into `folder`, each atomically."""
    folder = Path(folder)
    tensors = {"images": distilled.images.detach().cpu().contiguous(),
               "labels": distilled.labels.detach().cpu().to(torch.int64).contiguous()}
    tensors.update({k: v.detach().cpu().contiguous() for k, v in distilled.extra.items()})
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, **distilled.metadata}
    atomic_write(folder / TENSORS, lambda tmp: save_file(tensors, str(tmp)))
    write_json(folder / METADATA, metadata)
    return folder / TENSORS


def load_distilled(path: str | os.PathLike) -> Distilled:
    """Load a dreamdd artifact from its run folder or its .safetensors file."""
    path = Path(path)
    tensor_file = path / TENSORS if path.is_dir() else path
    if not tensor_file.exists():
        raise DreamddError(f"no distilled set at {path}: expected {tensor_file.name} "
                           "(a run folder of a finished `dreamdd distill`, or the .safetensors file itself)")
    meta_file = tensor_file.parent / METADATA
    if not meta_file.exists():
        raise DreamddError(f"{meta_file} is missing: an artifact needs its metadata.json beside the tensors")
    tensors = load_file(str(tensor_file))
    if "images" not in tensors or "labels" not in tensors:
        raise DreamddError(f"{tensor_file} holds no 'images' and 'labels' tensors")
    metadata = read_json(meta_file)
    extra = {k: v for k, v in tensors.items() if k not in ("images", "labels")}
    return Distilled(tensors["images"], tensors["labels"], metadata, extra)


def learned_eval_settings(distilled: Distilled) -> tuple[float | None, torch.nn.Module | None]:
    """What the artifact's method learned or fixed that evaluation must use: a learning rate ('lr', MTT) and an
    input transform (ZCA whitening: 'zca_mean' and 'zca_matrix'); None where absent."""
    lr = float(distilled.extra["lr"].reshape(-1)[0]) if "lr" in distilled.extra else None
    preprocess = None
    if "zca_matrix" in distilled.extra and "zca_mean" in distilled.extra:
        from .zca import ZCA
        preprocess = ZCA(distilled.extra["zca_mean"].float(), distilled.extra["zca_matrix"].float())
    return lr, preprocess
