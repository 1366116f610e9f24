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
from .io.names import CONFIG, METADATA, TENSORS
from .io.rundir import atomic_write, read_json, sha256_file, write_json
from .synthetic import decode

FORMAT = "dreamdd-distilled"
FORMAT_VERSION = 2            # 2: metadata.json records the sha256 of distilled.safetensors


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
    """Write distilled.safetensors and then metadata.json (which records the tensors' sha256), each atomically.

    metadata.json is the commit: until it is replaced, the old artifact's metadata no longer matches the new
    tensors, so a crash between the two renames is detected (artifact_problem) and never passes for finished."""
    folder = Path(folder)
    tensors = {"images": distilled.images.detach().cpu().contiguous(),
               "labels": distilled.labels.detach().cpu().to(torch.int64).contiguous()}
    tensors.update({k: v.detach().cpu().contiguous() for k, v in distilled.extra.items()})
    checksum: dict[str, str] = {}

    def write_tensors(tmp: Path) -> None:
        save_file(tensors, str(tmp))
        checksum[TENSORS] = sha256_file(tmp)

    atomic_write(folder / TENSORS, write_tensors)
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, **distilled.metadata, "sha256": checksum}
    write_json(folder / METADATA, metadata)
    return folder / TENSORS


def _unfinished(folder: Path) -> str:
    return (f"{folder} is a run folder without a finished artifact; finish it with `dreamdd distill --resume "
            f"{folder}` (or `dreamdd select --resume {folder}`)")


def _read_metadata(meta_file: Path) -> dict[str, Any]:
    metadata = read_json(meta_file, fix=_unfinished(meta_file.parent) if (meta_file.parent / CONFIG).exists()
                         else "replace it with the artifact's original metadata.json")
    if not isinstance(metadata, dict) or metadata.get("format", FORMAT) != FORMAT:
        raise DreamddError(f"{meta_file} is not the metadata of a dreamdd artifact; replace it with the "
                           "artifact's original metadata.json")
    try:
        factor = int(metadata.get("factor", 1))
        if factor < 1 or not isinstance(metadata.get("dataset", {}), dict) \
                or not isinstance(metadata.get("split", {}), dict):
            raise ValueError
    except (TypeError, ValueError):
        raise DreamddError(f"{meta_file} is damaged (factor, dataset or split malformed); replace it with the "
                           "artifact's original metadata.json") from None
    return metadata


def _check_tensors(tensors: dict[str, torch.Tensor], metadata: dict[str, Any], tensor_file: Path) -> None:
    images, labels = tensors.get("images"), tensors.get("labels")
    if images is None or labels is None:
        raise DreamddError(f"{tensor_file} holds no 'images' and 'labels' tensors")
    if images.dim() != 4 or not images.is_floating_point() or labels.dim() != 1 \
            or labels.dtype != torch.int64 or len(images) != len(labels):
        raise DreamddError(f"{tensor_file}: images {images.dtype} {tuple(images.shape)} and labels {labels.dtype} "
                           f"{tuple(labels.shape)} are not float (N, C, H, W) with N int64 labels; the file is "
                           "not a dreamdd artifact")
    classes = metadata.get("dataset", {}).get("num_classes")
    if len(labels) and (int(labels.min()) < 0 or (isinstance(classes, int) and int(labels.max()) >= classes)):
        raise DreamddError(f"{tensor_file} has labels outside 0..{(classes or 1) - 1}; the file is damaged")
    if not bool(torch.isfinite(images).all()):
        raise DreamddError(f"{tensor_file} has non-finite pixels; the file is damaged")


def artifact_problem(folder: str | os.PathLike) -> str | None:
    """Why the artifact in `folder` is not complete and intact (None: it is)."""
    try:
        load_distilled(folder)
    except DreamddError as error:
        return str(error)
    return None


def load_distilled(path: str | os.PathLike) -> Distilled:
    """Load a dreamdd artifact from its run folder or its .safetensors file, verifying its checksum (recorded
    since format version 2) and that tensors and metadata agree."""
    path = Path(path)
    tensor_file = path / TENSORS if path.is_dir() else path
    if not tensor_file.exists():
        if path.is_dir() and (path / CONFIG).exists():
            raise DreamddError(_unfinished(path))
        raise DreamddError(f"no distilled set at {path}: expected {tensor_file.name} "
                           "(a run folder of a finished `dreamdd distill`, or the .safetensors file itself)")
    meta_file = tensor_file.parent / METADATA
    if not meta_file.exists():
        raise DreamddError(f"{meta_file} is missing: an artifact needs its metadata.json beside the tensors"
                           + (f"; {_unfinished(tensor_file.parent)}" if (tensor_file.parent / CONFIG).exists()
                              else ""))
    metadata = _read_metadata(meta_file)
    recorded = (metadata.get("sha256") or {}).get(tensor_file.name) if isinstance(metadata.get("sha256"), dict) \
        else None
    if recorded is None and int(metadata.get("format_version", 1) or 1) >= 2:
        raise DreamddError(f"{meta_file} records no checksum for {tensor_file.name}; replace it with the "
                           "artifact's original metadata.json")
    if recorded is not None and sha256_file(tensor_file) != recorded:
        where = _unfinished(tensor_file.parent) if (tensor_file.parent / CONFIG).exists() else \
            "restore the original file"
        raise DreamddError(f"{tensor_file} does not match the sha256 in {meta_file.name} (damaged, or a write was "
                           f"cut off); {where}")
    try:
        tensors = load_file(str(tensor_file))
    except Exception as e:   # safetensors raises its own error types for damaged headers
        raise DreamddError(f"{tensor_file} is not a readable safetensors file ({e}); restore the original") \
            from None
    _check_tensors(tensors, metadata, tensor_file)
    extra = {k: v for k, v in tensors.items() if k not in ("images", "labels")}
    return Distilled(tensors["images"], tensors["labels"], metadata, extra)
