"""Any distilled set as a Distilled: dreamdd artifacts, .pt and .npz files of images and labels, image folders.

Nothing loaded here executes code: .pt files go through torch.load(weights_only=True), .npz through
np.load(allow_pickle=False).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .artifact import METADATA, TENSORS, Distilled, load_distilled
from .errors import DreamddError
from .rundir import CONFIG

IMAGE_KEYS = ("images", "image", "data", "x", "x_train", "img")
LABEL_KEYS = ("labels", "label", "targets", "target", "y", "y_train")


def _pick(mapping: dict[str, Any], keys: Sequence[str], what: str, path: Path):
    for key in keys:
        if key in mapping:
            return mapping[key]
    raise DreamddError(f"{path} has no {what} under any of the keys {', '.join(keys)} (found: "
                       f"{', '.join(map(str, mapping))}); save the set with one of those keys")


def _from_pt(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickled code or a corrupt file: refuse, do not execute
        raise DreamddError(f"{path} cannot be loaded safely (weights_only): {error}; save plain tensors "
                           "(a dict with 'images' and 'labels', or a [images, labels] list)") from None
    if isinstance(obj, dict):
        return _pick(obj, IMAGE_KEYS, "images", path), _pick(obj, LABEL_KEYS, "labels", path)
    if isinstance(obj, (list, tuple)) and len(obj) >= 2:
        return obj[0], obj[1]
    raise DreamddError(f"{path} holds a {type(obj).__name__}; expected a dict with 'images' and 'labels' or a "
                       "[images, labels] list")


def _from_npz(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(path, allow_pickle=False) as npz:
        content = {k: npz[k] for k in npz.files}
    return (torch.from_numpy(np.asarray(_pick(content, IMAGE_KEYS, "images", path))),
            torch.from_numpy(np.asarray(_pick(content, LABEL_KEYS, "labels", path))))


def _from_folder(path: Path, class_names: Sequence[str] | None) -> tuple[torch.Tensor, torch.Tensor]:
    from .data.readers import read_class_folders
    x, y, folders = read_class_folders(path)
    if class_names is not None:
        lookup = {name: i for i, name in enumerate(class_names)} | {str(i): i for i in range(len(class_names))}
        unknown = [f for f in folders if f not in lookup]
        if unknown:
            raise DreamddError(f"class folders {unknown} in {path} are neither class names of the dataset "
                               f"({', '.join(class_names)}) nor class indices; rename them")
        y = np.array([lookup[folders[i]] for i in y], dtype=np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


def to_pixels(images: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None) -> torch.Tensor:
    """Images as float pixels in [0, 1]: uint8 scaled, normalized ones de-normalized with the given mean/std."""
    if images.dtype == torch.uint8:
        return images.float() / 255
    images = images.float()
    if mean is not None or std is not None:
        if mean is None or std is None:
            raise DreamddError("give both --mean and --std (the normalization the images were stored with)")
        shape = (1, -1, 1, 1)
        return images * torch.tensor(std).view(shape) + torch.tensor(mean).view(shape)
    low, high = float(images.min()), float(images.max())
    if low < -0.05 or high > 1.05:
        if low >= 0 and high <= 255:
            return images / 255
        raise DreamddError(f"the images range from {low:.2f} to {high:.2f}, so they look normalized; pass the "
                           "normalization they were stored with (--mean and --std) so they can be mapped to pixels")
    return images


def load_source(path: str | os.PathLike, dataset: str | None = None, class_names: Sequence[str] | None = None,
                mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                factor: int | None = None) -> Distilled:
    """Load a distilled set from any supported source; non-dreamdd sources need `dataset` (whose test set
    evaluates them) and, when stored normalized, the mean and std they were normalized with."""
    path = Path(path)
    if (path.is_dir() and ((path / TENSORS).exists() or (path / CONFIG).exists())) or \
            (path.suffix == ".safetensors" and (path.parent / METADATA).exists()):
        return load_distilled(path)   # a run folder: its artifact, or why it has none
    if not path.exists():
        raise DreamddError(f"no distilled set at {path}: give a dreamdd run folder or artifact, a .pt or .npz "
                           "of images and labels, or a folder of class sub-folders of images")
    if dataset is None:
        raise DreamddError(f"{path} is not a dreamdd artifact, so name the dataset it was distilled from "
                           "(--dataset NAME) whose validation and test splits evaluate it")
    if path.is_dir():
        images, labels = _from_folder(path, class_names)
    elif path.suffix == ".pt" or path.suffix == ".pth":
        images, labels = _from_pt(path)
    elif path.suffix == ".npz":
        images, labels = _from_npz(path)
    else:
        raise DreamddError(f"{path}: unknown kind of file; use a dreamdd artifact, .pt, .npz or an image folder")
    images, labels = torch.as_tensor(images), torch.as_tensor(labels).long().flatten()
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4 or images.shape[0] != labels.shape[0]:
        raise DreamddError(f"{path}: expected images (N, C, H, W) and N labels, got {tuple(images.shape)} and "
                           f"{tuple(labels.shape)}")
    if images.shape[1] not in (1, 3) and images.shape[-1] in (1, 3):
        images = images.permute(0, 3, 1, 2)   # NHWC -> NCHW
    metadata = {"source": str(path), "factor": factor or 1, "method": "external",
                "split": {"dataset": dataset}}
    return Distilled(to_pixels(images.contiguous(), mean, std).clamp(0, 1), labels, metadata)
