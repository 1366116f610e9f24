"""Tiny fake TinyImageNet and ImageNet layouts (a few classes, a few small JPEGs) for the tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np

TINY_WNIDS = ["n01443537", "n01629819", "n01641577"]
NETTE = ["n01440764", "n02102040", "n02979186", "n03000684", "n03028079", "n03394916", "n03417042", "n03425413",
         "n03445777", "n03888257"]


def write_jpeg(path: Path, seed: int, size=(20, 14), mode="RGB") -> None:
    from PIL import Image
    rng = np.random.default_rng(seed)
    w, h = size
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path, "JPEG")


def make_tiny(root: Path, wnids=TINY_WNIDS, n_train=4, n_val=2) -> Path:
    folder = root / "tiny-imagenet-200"
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(reversed(wnids)) + "\n")   # the file's order is not the class order
    (folder / "words.txt").write_text("".join(f"{w}\tthing {w}, other name\n" for w in wnids))
    lines, k = [], 0
    for c, w in enumerate(wnids):
        for i in range(n_train):
            write_jpeg(folder / "train" / w / "images" / f"{w}_{i}.JPEG", 100 * c + i, size=(64, 64))
        for i in range(n_val):
            name = f"val_{k}.JPEG"
            write_jpeg(folder / "val" / "images" / name, 1000 + k, size=(64, 64))
            lines.append(f"{name}\t{w}\t0\t0\t10\t10")
            k += 1
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return folder


def make_imagenet(root: Path, wnids, n_train=3, n_val=2, val="folders", folder_name="imagenet",
                  size=(20, 14)) -> Path:
    """train/<wnid>/*.JPEG and val/ in class folders, or flat with LOC_val_solution.csv ("loc")."""
    folder = root / folder_name
    rows, k = ["ImageId,PredictionString"], 0
    for c, w in enumerate(wnids):
        for i in range(n_train):
            write_jpeg(folder / "train" / w / f"{w}_{i}.JPEG", 10 * c + i, size=size)
        for i in range(n_val):
            k += 1
            name = f"ILSVRC2012_val_{k:08d}"
            if val == "folders":
                write_jpeg(folder / "val" / w / f"{name}.JPEG", 5000 + k, size=size)
            else:
                write_jpeg(folder / "val" / f"{name}.JPEG", 5000 + k, size=size)
                rows.append(f"{name},{w} 1 2 3 4")
    if val == "loc":
        (folder / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    return folder
