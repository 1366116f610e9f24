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

from .artifact import Distilled, load_distilled
from .errors import DreamddError
from .io.names import CONFIG, METADATA, TENSORS
from .io.rundir import load_weights_only

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
        obj = load_weights_only(path)
    except Exception as error:  # pickled code or a corrupt file: refuse, do not execute
        raise DreamddError(f"{path} cannot be loaded safely: it is damaged, empty, or holds more than tensors "
                           f"({type(error).__name__}); save plain tensors (a dict with 'images' and 'labels', or "
                           "an [images, labels] list)") from None
    if isinstance(obj, dict):
        return _pick(obj, IMAGE_KEYS, "images", path), _pick(obj, LABEL_KEYS, "labels", path)
    if isinstance(obj, (list, tuple)) and len(obj) >= 2:
        return obj[0], obj[1]
    raise DreamddError(f"{path} holds a {type(obj).__name__}; expected a dict with 'images' and 'labels' or a "
                       "[images, labels] list")


def _from_npz(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    fix = "save the set with np.savez(path, images=..., labels=...) (numeric arrays, no objects)"
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as error:  # not a zip, a damaged one, a pickled .npy: numpy raises many kinds
        raise DreamddError(f"{path} is not a readable .npz file ({type(error).__name__}: {error}); {fix}") from None
    if not hasattr(loaded, "files"):
        raise DreamddError(f"{path} holds a single array (an .npy renamed?), not images and labels; {fix}")
    try:
        with loaded as npz:
            content = {k: npz[k] for k in npz.files}
    except Exception as error:  # object arrays (pickle refused), damaged members
        raise DreamddError(f"{path} could not be read ({type(error).__name__}: {error}); {fix}") from None
    images, labels = (np.asarray(_pick(content, keys, what, path))
                      for keys, what in ((IMAGE_KEYS, "images"), (LABEL_KEYS, "labels")))
    for array, what in ((images, "images"), (labels, "labels")):
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise DreamddError(f"{path}: {what} are {array.dtype}, not numbers; {fix}")
    return torch.from_numpy(images), torch.from_numpy(labels)


def is_class_folder(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder of class sub-folders of images (not a run folder or an artifact)."""
    path = Path(path)
    return path.is_dir() and not (path / TENSORS).exists() and not (path / CONFIG).exists()


def _from_folder(path: Path, class_names: Sequence[str] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images labelled by their folder's name: a class name of the dataset, or a class number."""
    from .data.readers import read_class_folders
    x, y, folders = read_class_folders(path)
    names = list(class_names) if class_names is not None else []
    lookup = {name: i for i, name in enumerate(names)}
    for folder in folders:
        if folder not in lookup and folder.isdigit() and (not names or int(folder) < len(names)):
            lookup[folder] = int(folder)
    unknown = [f for f in folders if f not in lookup]
    if unknown:
        known = f"class names of the dataset ({', '.join(names)}) nor " if names else ""
        raise DreamddError(f"class folders {unknown} in {path} are neither {known}class numbers; rename them")
    return torch.from_numpy(x), torch.from_numpy(np.array([lookup[folders[i]] for i in y], dtype=np.int64))


def check_fits(distilled: Distilled, info) -> None:
    """The set must fit the dataset that evaluates it: labels among its classes, images of its shape."""
    labels = distilled.labels
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= info.num_classes):
        raise DreamddError(f"the set's labels range over {int(labels.min())}..{int(labels.max())}, but {info.name} "
                           f"has classes 0..{info.num_classes - 1}; evaluate it with the dataset it was made for")
    shape, want = tuple(distilled.images.shape[1:]), (info.channels, *info.image_size)
    if shape != want:
        raise DreamddError(f"the set's images are {shape} (C, H, W) but {info.name}'s are {want}; evaluate it with "
                           "the dataset it was made for")


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
    try:
        images, labels = torch.as_tensor(images), torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError) as error:
        raise DreamddError(f"{path}: images and labels must be numeric arrays ({error})") from None
    whole = not labels.is_floating_point() or bool(torch.isfinite(labels).all() and (labels == labels.round()).all())
    if labels.is_complex() or labels.dtype == torch.bool or not whole or \
            not (images.is_floating_point() or images.dtype == torch.uint8):
        raise DreamddError(f"{path}: expected float or uint8 images and whole-number labels, got {images.dtype} "
                           f"and {labels.dtype}{'' if whole else ' with fractions'}")
    labels = labels.long().flatten()
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
