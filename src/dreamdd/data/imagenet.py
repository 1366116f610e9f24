"""The image layouts of TinyImageNet and ImageNet (and its subsets): which files belong to which class and split.

A Listing names every image file by split and class; classes are in sorted wnid order, with human-readable names.
Nothing is decoded here (see store.py). Each layout error names the file or folder and the fix.
"""
from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DreamddError
from .subsets import imagenet_classes, subsets

JPEG_SUFFIXES = {".jpeg", ".jpg", ".png"}
TINY_CLASSES = 200
IMAGENET_CLASSES = 1000
LOC_SOLUTION = "LOC_val_solution.csv"  # Kaggle's ILSVRC distribution: ImageId,"wnid x y x y ..."
DEVKIT = Path("ILSVRC2012_devkit_t12") / "data"  # ILSVRC2012_validation_ground_truth.txt + meta.mat


@dataclass
class Listing:
    """A dataset's image files by split ("train", "test") and class, classes in sorted wnid order."""
    name: str
    folder: Path
    wnids: list[str]
    names: list[str]
    splits: dict[str, list[list[Path]]] = field(default_factory=dict)  # split -> per class, sorted paths
    note: str = ""

    def counts(self, split: str) -> list[int]:
        return [len(files) for files in self.splits[split]]

    def checksum(self) -> str:
        """sha256 of every file's split, class, relative path and size: changes when the source changes."""
        digest = hashlib.sha256()
        for split, classes in sorted(self.splits.items()):
            for wnid, files in zip(self.wnids, classes):
                for f in files:
                    digest.update(f"{split}\t{wnid}\t{f.relative_to(self.folder)}\t{f.stat().st_size}\n".encode())
        return digest.hexdigest()


@dataclass(frozen=True)
class Layout:
    """How to find and list one image-layout dataset under a data root."""
    name: str
    kind: str  # "tiny" | "imagenet"
    folders: tuple[str, ...]  # candidates under the data root, in order
    wnids: tuple[str, ...] | None = None  # an ImageNet subset's classes; None: all of ImageNet-1K (imagenet kind)

    def locate(self, root: Path, complete: bool = False) -> Path | None:
        """The first candidate folder holding the layout: for ImageNet kinds, the first with a train folder for
        every class, else (unless `complete`) the first with a train folder, whose listing then names the gaps."""
        if self.kind == "tiny":
            return next((root / r for r in self.folders if (root / r / "wnids.txt").is_file()), None)
        wanted = self.wnids if self.wnids is not None else tuple(imagenet_classes())
        candidates = [root / r for r in self.folders if (root / r / "train").is_dir()]
        full = next((f for f in candidates if all((f / "train" / w).is_dir() for w in wanted)), None)
        return full or (None if complete or not candidates else candidates[0])

    def listing(self, folder: Path) -> Listing:
        if self.kind == "tiny":
            return tiny_listing(folder, self.name)
        return imagenet_listing(folder, self.name, self.wnids)

    def expected(self, root: Path) -> str:
        where = ", ".join(str(Path(os.path.abspath(root / rel))) for rel in self.folders)
        if self.kind == "tiny":
            return (f"tiny-imagenet-200/ (wnids.txt, words.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG, "
                    f"val/val_annotations.txt) as one of {where}")
        return (f"an ImageNet folder (train/<wnid>/*.JPEG; val/<wnid>/*.JPEG, or val/*.JPEG with {LOC_SOLUTION} "
                f"or {DEVKIT}/ILSVRC2012_validation_ground_truth.txt + meta.mat) as one of {where}")


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in JPEG_SUFFIXES and not p.name.startswith(".") and p.is_file())


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _first_name(names: str) -> str:
    return names.split(",")[0].strip()


def _nonempty(listing: Listing, split: str, where: Path) -> None:
    empty = [w for w, files in zip(listing.wnids, listing.splits[split]) if not files]
    if empty:
        raise DreamddError(f"{listing.name}: the {split} class folders of {empty[:5]}{' ...' if len(empty) > 5 else ''} "
                           f"under {where} hold no images (.JPEG/.jpg/.png); restore them from the original "
                           f"archive")


# ----------------------------------------------------------------------------------------------- TinyImageNet

def tiny_listing(folder: Path, name: str = "tiny-imagenet") -> Listing:
    """tiny-imagenet-200/: wnids.txt, words.txt, train/<wnid>/images/*, val/images/* + val/val_annotations.txt.

    The test split has no labels, so val/ is the test split (the validation split is carved from train).
    """
    wnids_file = folder / "wnids.txt"
    if not wnids_file.is_file():
        raise DreamddError(f"{wnids_file} is missing; it lists TinyImageNet's classes. Extract tiny-imagenet-200.zip "
                           f"again so {folder} holds it")
    listed = [line.strip() for line in wnids_file.read_text().splitlines() if line.strip()]
    if len(set(listed)) != len(listed):
        dups = sorted({w for w in listed if listed.count(w) > 1})
        raise DreamddError(f"{wnids_file} lists {dups[:5]} more than once; restore the original file")
    wnids = sorted(listed)
    words = folder / "words.txt"
    known: dict[str, str] = {}
    if words.is_file():
        for line in words.read_text(errors="replace").splitlines():
            if "\t" in line:
                wnid, names = line.split("\t", 1)
                known[wnid.strip()] = names.strip()
    names = [_first_name(known.get(w) or imagenet_classes().get(w, w)) for w in wnids]
    train = folder / "train"
    if not train.is_dir():
        raise DreamddError(f"{train} is missing; extract tiny-imagenet-200.zip again")
    present = {p.name for p in _class_folders(train)}
    missing, extra = [w for w in wnids if w not in present], sorted(present - set(wnids))
    if missing:
        raise DreamddError(f"{train} lacks the class folders {missing[:5]}{' ...' if len(missing) > 5 else ''} that "
                           f"wnids.txt lists; extract tiny-imagenet-200.zip again")
    if extra:
        raise DreamddError(f"{train} has class folders {extra[:5]} that wnids.txt does not list (unknown wnids); "
                           f"remove them or restore the original wnids.txt")
    # train/<wnid>/images/*.JPEG in the original; train/<wnid>/*.JPEG is accepted too
    per_class = [_images(train / w / "images") if (train / w / "images").is_dir() else _images(train / w)
                 for w in wnids]
    listing = Listing(name, folder, wnids, names, {"train": per_class})
    _nonempty(listing, "train", train)
    listing.splits["test"] = _tiny_val(folder, wnids)
    return listing


def _tiny_val(folder: Path, wnids: list[str]) -> list[list[Path]]:
    val = folder / "val"
    annotations = val / "val_annotations.txt"
    if not annotations.is_file() and all((val / w).is_dir() for w in wnids):
        # val/ already sorted into class folders (val/<wnid>/images/* or val/<wnid>/*), as many scripts do
        return [_images(val / w / "images") if (val / w / "images").is_dir() else _images(val / w) for w in wnids]
    if not annotations.is_file():
        raise DreamddError(f"{annotations} is missing, so TinyImageNet's val images (dreamdd's test split) have no "
                           f"labels; extract tiny-imagenet-200.zip again so val/ holds val_annotations.txt and "
                           f"images/")
    index = {w: i for i, w in enumerate(wnids)}
    per_class: list[list[Path]] = [[] for _ in wnids]
    images = val / "images"
    for n, line in enumerate(annotations.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            raise DreamddError(f"{annotations} line {n} is not '<file>\\t<wnid>\\t...': {line!r}; restore the "
                               f"original file")
        file, wnid = parts[0].strip(), parts[1].strip()
        if wnid not in index:
            raise DreamddError(f"{annotations} line {n} labels {file} with {wnid!r}, a wnid that wnids.txt does "
                               f"not list; restore the original val_annotations.txt and wnids.txt")
        path = images / file
        if not path.is_file():
            raise DreamddError(f"{path} is listed in {annotations} (line {n}) but missing; extract the archive "
                               f"again")
        per_class[index[wnid]].append(path)
    return [sorted(files) for files in per_class]


# --------------------------------------------------------------------------------------------------- ImageNet

def imagenet_listing(folder: Path, name: str = "imagenet-1k", wnids: tuple[str, ...] | None = None) -> Listing:
    """ImageNet's train/<wnid>/* and val/ (class folders, or flat with the standard ground truth), keeping the
    classes `wnids` (a subset) or all 1000 (each must be present, and no folder may be an unknown wnid)."""
    pinned = imagenet_classes()
    train = folder / "train"
    if not train.is_dir():
        raise DreamddError(f"{train} is missing; arrange ImageNet as {folder}/train/<wnid>/*.JPEG and "
                           f"{folder}/val/...")
    present = {p.name for p in _class_folders(train)}
    if wnids is None:
        unknown = sorted(present - set(pinned))
        if unknown:
            raise DreamddError(f"{train} has class folders {unknown[:5]}{' ...' if len(unknown) > 5 else ''} that "
                               f"are not ImageNet-1K wnids; remove them (or use the folder as a plain image folder "
                               f"dataset by its path)")
        wanted = sorted(pinned)
    else:
        wanted = sorted(wnids)
    missing = [w for w in wanted if w not in present]
    if missing:
        hint = "" if wnids is None else f" ({name} needs these {len(wanted)} ImageNet classes)"
        raise DreamddError(f"{train} lacks the class folders {missing[:5]}{' ...' if len(missing) > 5 else ''}"
                           f"{hint}; {len(missing)} of {len(wanted)} are missing. Restore them from the ImageNet "
                           f"archive, or run `dreamdd datasets --check {name}` for the full list")
    names = [_first_name(pinned.get(w, w)) for w in wanted]
    listing = Listing(name, folder, wanted, names, {"train": [_images(train / w) for w in wanted]})
    _nonempty(listing, "train", train)
    listing.splits["test"], listing.note = _imagenet_val(folder, wanted)
    return listing


def _imagenet_val(folder: Path, wnids: list[str]) -> tuple[list[list[Path]], str]:
    val = folder / "val"
    if not val.is_dir():
        raise DreamddError(f"{val} is missing; ImageNet's validation images are dreamdd's test split. Put them in "
                           f"{val}/<wnid>/*.JPEG, or flat in {val}/ with {LOC_SOLUTION} beside the dataset")
    index = {w: i for i, w in enumerate(wnids)}
    per_class: list[list[Path]] = [[] for _ in wnids]
    folders = _class_folders(val)
    if folders:
        for d in folders:
            if d.name in index:
                per_class[index[d.name]] = _images(d)
        return per_class, "val/ in class folders"
    labels, source = _val_ground_truth(folder, val)
    pinned = imagenet_classes()
    for file, wnid in labels.items():
        if wnid not in pinned:
            raise DreamddError(f"{source} labels {file} with {wnid!r}, which is not an ImageNet-1K wnid; restore "
                               f"the original file")
        if wnid in index:
            path = val / file
            if not path.is_file():
                raise DreamddError(f"{path} is listed in {source} but missing; restore the validation images")
            per_class[index[wnid]].append(path)
    return [sorted(files) for files in per_class], f"val/ flat, labels from {source.name}"


def _val_ground_truth(folder: Path, val: Path) -> tuple[dict[str, str], Path]:
    """file name -> wnid for a flat val/ folder, from LOC_val_solution.csv or the ILSVRC2012 devkit."""
    for base in (folder, *list(folder.parents)[:3]):
        solution = base / LOC_SOLUTION
        if solution.is_file():
            return _loc_solution(solution, val), solution
        truth = base / DEVKIT / "ILSVRC2012_validation_ground_truth.txt"
        if truth.is_file():
            return _devkit_truth(truth, val), truth
    raise DreamddError(f"{val} holds images without class folders and no ground-truth file was found; put "
                       f"{LOC_SOLUTION} (Kaggle's ILSVRC files) or {DEVKIT}/ILSVRC2012_validation_ground_truth.txt "
                       f"with meta.mat (the ILSVRC2012 devkit) in {folder} or a folder above it, or sort val/ into "
                       f"class folders val/<wnid>/")


def _loc_solution(path: Path, val: Path) -> dict[str, str]:
    suffixes = {p.stem: p.name for p in _images(val)}
    out = {}
    with open(path, newline="") as f:
        for n, row in enumerate(csv.reader(f), 1):
            if n == 1 and row and row[0] == "ImageId":
                continue
            if len(row) < 2 or not row[1].split():
                raise DreamddError(f"{path} row {n} is not 'ImageId,wnid ...': {row!r}; restore the original file")
            image = row[0].strip()
            out[suffixes.get(image, image + ".JPEG")] = row[1].split()[0]
    return out


def _devkit_truth(path: Path, val: Path) -> dict[str, str]:
    """ILSVRC2012_validation_ground_truth.txt holds ILSVRC2012_IDs (line i: image i); meta.mat maps them to wnids."""
    import scipy.io

    meta = path.parent / "meta.mat"
    if not meta.is_file():
        raise DreamddError(f"{meta} is missing; the devkit's ground truth needs it to map class ids to wnids. "
                           f"Extract ILSVRC2012_devkit_t12.tar.gz again")
    try:
        synsets = scipy.io.loadmat(meta, squeeze_me=True)["synsets"]
        id_to_wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets if int(s["num_children"]) == 0}
    except Exception as e:  # scipy raises several kinds for damaged files
        raise DreamddError(f"{meta} could not be read as the devkit's meta.mat ({e}); extract it again") from e
    files = _images(val)
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(ids) != len(files):
        raise DreamddError(f"{path} labels {len(ids)} images but {val} holds {len(files)}; the validation folder "
                           f"is incomplete, restore it")
    try:
        return {f.name: id_to_wnid[int(i)] for f, i in zip(files, ids)}
    except (KeyError, ValueError) as e:
        raise DreamddError(f"{path} holds the class id {e}, which {meta} does not define; restore both files") from e


# ------------------------------------------------------------------------------------------------- the layouts

IMAGENET_FOLDERS = ("imagenet", "imagenet-1k", "ILSVRC2012", "ILSVRC/Data/CLS-LOC")


def layouts() -> dict[str, Layout]:
    """The image-layout datasets by name: tiny-imagenet, imagenet-1k and the pinned subsets."""
    out = {"tiny-imagenet": Layout("tiny-imagenet", "tiny", ("tiny-imagenet-200", "tiny-imagenet")),
           "imagenet-1k": Layout("imagenet-1k", "imagenet", IMAGENET_FOLDERS)}
    for s in subsets().values():
        own = (f"{s.name}2", f"{s.name}2-320", f"{s.name}2-160", s.name) if s.name in ("imagenette", "imagewoof") \
            else (s.name,)
        out[s.name] = Layout(s.name, "imagenet", own + IMAGENET_FOLDERS, s.wnids)
    return out
