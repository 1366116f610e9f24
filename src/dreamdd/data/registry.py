"""The datasets dreamdd knows by name, where their files are looked for, and load(): files -> train/val/test banks."""
from __future__ import annotations

import dataclasses
import difflib
import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import DreamddError
from ..registry import Registry
from ..seeding import generator
from . import download as dl
from . import readers
from . import store as stores
from .bank import ClassBank
from .imagenet import Layout, layouts
from .readers import Splits


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and an artifact need to know about a dataset: shape, classes and normalization."""
    name: str
    num_classes: int
    channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    class_ids: tuple[str, ...] = ()  # the files' class identifiers where they differ from the names (wnids)

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(-1, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(-1, 1, 1)
        return mean, std

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """(x - mean) / std per channel, for x in [0, 1] of shape (N, C, H, W) (or (C, H, W))."""
        mean, std = self._stats(x)
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of normalize: back to [0, 1] pixel scale."""
        mean, std = self._stats(x)
        return x * std + mean

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "num_classes": self.num_classes, "channels": self.channels,
                "image_size": list(self.image_size), "mean": list(self.mean), "std": list(self.std),
                "class_names": list(self.class_names), **({"class_ids": list(self.class_ids)} if self.class_ids else {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DatasetInfo":
        try:
            return cls(name=str(d["name"]), num_classes=int(d["num_classes"]), channels=int(d["channels"]),
                       image_size=tuple(int(v) for v in d["image_size"]),  # type: ignore[arg-type]
                       mean=tuple(float(v) for v in d["mean"]), std=tuple(float(v) for v in d["std"]),
                       class_names=tuple(str(v) for v in d["class_names"]),
                       class_ids=tuple(str(v) for v in d.get("class_ids", ())))
        except (KeyError, TypeError, ValueError) as e:
            raise DreamddError(f"dataset description {d!r} is incomplete or malformed ({e}); it needs name, "
                               f"num_classes, channels, image_size, mean, std and class_names") from e


@dataclass
class LoadedDataset:
    """One dataset ready for distillation: its description and the train / validation / test banks."""
    info: DatasetInfo
    train: ClassBank
    val: ClassBank
    test: ClassBank
    val_size: int  # number of validation images actually carved out of the training set
    source: str  # where the files were read from (path), or "built-in"


# ------------------------------------------------------------------------------------------------ registry

DIGITS = tuple(str(i) for i in range(10))
FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot")
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
# Computed once from the digits training split below (pixels / 255): mean 0.305275, std 0.375844.
DIGITS_MEAN, DIGITS_STD = (0.305275,), (0.375844,)
DIGITS_TEST_FRACTION = 0.25  # fixed split, independent of the run seed


@dataclass(frozen=True)
class Resource:
    """A file published by a dataset's authors; archives are extracted into the root after download."""
    filename: str
    url: str
    md5: str
    archive: bool = False


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    info: DatasetInfo  # class_names may be empty when the files carry them (CIFAR)
    folders: tuple[str, ...] = ()  # relative to root, searched in order; the first is where downloads land
    files: tuple[tuple[str, ...], ...] = ()  # each required file as its accepted names (e.g. .gz or not)
    read: Callable[[dict[str, Path]], Splits] | None = None  # gets {first accepted name: path found}
    resources: tuple[Resource, ...] = ()
    download_dir: str = ""  # relative to root: where resources are saved
    checksums: dict[str, str] = dataclasses.field(default_factory=dict)  # file name -> md5, for verify=True
    layout: Layout | None = None  # an image layout (TinyImageNet, ImageNet), read through a prepared store

    @property
    def builtin(self) -> bool:
        return self.read is None and self.layout is None


def _idx_files() -> tuple[tuple[str, ...], ...]:
    return tuple((f"{b}.gz", b) for b in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                          "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))


def _read_idx_dataset(found: dict[str, Path]) -> Splits:
    x_train, y_train = readers.read_idx_pair(found["train-images-idx3-ubyte.gz"], found["train-labels-idx1-ubyte.gz"])
    x_test, y_test = readers.read_idx_pair(found["t10k-images-idx3-ubyte.gz"], found["t10k-labels-idx1-ubyte.gz"])
    return Splits(x_train, y_train, x_test, y_test)


def _read_cifar10(found: dict[str, Path]) -> Splits:
    return readers.read_cifar10(found["batches.meta"].parent)


def _read_cifar100(found: dict[str, Path]) -> Splits:
    return readers.read_cifar100(found["meta"].parent)


def _read_svhn(found: dict[str, Path]) -> Splits:
    x_train, y_train = readers.read_svhn_mat(found["train_32x32.mat"])
    x_test, y_test = readers.read_svhn_mat(found["test_32x32.mat"])
    return Splits(x_train, y_train, x_test, y_test)


MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
KRIZ_URL = "https://www.cs.toronto.edu/~kriz/"
SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
MNIST_MD5 = {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
             "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
             "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
             "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}
FASHION_MD5 = {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
               "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
               "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
               "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"}
CIFAR10_MD5 = {"data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
               "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
               "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e",
               "batches.meta": "5ff9c542aee3614f3951f8cda6e48888"}
CIFAR100_MD5 = {"train": "16019d7e3df5f24257cddd939b257f8d", "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
                "meta": "7973b15100ade9c7d40fb424638fde48"}
SVHN_MD5 = {"train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373", "test_32x32.mat": "eb5a983be6a315427106f1b0d9a5c7ea"}

SPECS = Registry("dataset", {s.name: s for s in [
    DatasetSpec("digits", "scikit-learn's 8x8 handwritten digits (1797 images), built in: no files needed",
                DatasetInfo("digits", 10, 1, (8, 8), DIGITS_MEAN, DIGITS_STD, DIGITS)),
    DatasetSpec("mnist", "MNIST handwritten digits, 28x28 grayscale, 60000 train / 10000 test",
                DatasetInfo("mnist", 10, 1, (28, 28), (0.1307,), (0.3081,), DIGITS),
                folders=("mnist", "MNIST/raw", "mnist/raw", "."), files=_idx_files(), read=_read_idx_dataset,
                resources=tuple(Resource(f, MNIST_URL + f, m) for f, m in MNIST_MD5.items()),
                download_dir="mnist", checksums=MNIST_MD5),
    DatasetSpec("fashion-mnist", "Fashion-MNIST clothing, 28x28 grayscale, 60000 train / 10000 test",
                DatasetInfo("fashion-mnist", 10, 1, (28, 28), (0.2861,), (0.3530,), FASHION_NAMES),
                folders=("fashion-mnist", "FashionMNIST/raw", "fashion_mnist", "fashion-mnist/raw"),
                files=_idx_files(), read=_read_idx_dataset,
                resources=tuple(Resource(f, FASHION_URL + f, m) for f, m in FASHION_MD5.items()),
                download_dir="fashion-mnist", checksums=FASHION_MD5),
    DatasetSpec("cifar10", "CIFAR-10, 32x32 colour, 10 classes, 50000 train / 10000 test",
                DatasetInfo("cifar10", 10, 3, (32, 32), CIFAR_MEAN, CIFAR_STD, ()),
                folders=("cifar-10-batches-py", "cifar10/cifar-10-batches-py", "cifar10"),
                files=tuple((f,) for f in readers.CIFAR10_FILES), read=_read_cifar10,
                resources=(Resource("cifar-10-python.tar.gz", KRIZ_URL + "cifar-10-python.tar.gz",
                                    "c58f30108f718f92721af3b95e74349a", archive=True),),
                download_dir=".", checksums=CIFAR10_MD5),
    DatasetSpec("cifar100", "CIFAR-100, 32x32 colour, 100 fine classes, 50000 train / 10000 test",
                DatasetInfo("cifar100", 100, 3, (32, 32), CIFAR_MEAN, CIFAR_STD, ()),
                folders=("cifar-100-python", "cifar100/cifar-100-python", "cifar100"),
                files=tuple((f,) for f in readers.CIFAR100_FILES), read=_read_cifar100,
                resources=(Resource("cifar-100-python.tar.gz", KRIZ_URL + "cifar-100-python.tar.gz",
                                    "eb9058c3a382ffc7106e4002c42a8d85", archive=True),),
                download_dir=".", checksums=CIFAR100_MD5),
    DatasetSpec("svhn", "SVHN house-number digits (cropped), 32x32 colour, 73257 train / 26032 test",
                DatasetInfo("svhn", 10, 3, (32, 32), (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), DIGITS),
                folders=("svhn", "SVHN", "."), files=(("train_32x32.mat",), ("test_32x32.mat",)), read=_read_svhn,
                resources=tuple(Resource(f, SVHN_URL + f, m) for f, m in SVHN_MD5.items()),
                download_dir="svhn", checksums=SVHN_MD5),
]})
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Default image sizes: TinyImageNet's own 64; the MTT subsets and fast.ai's at MTT's 128; IDC's ImageNet-10/100 at
# IDC's 224 (argument.py --size); ImageNet-1K at 64 (a choice: a prepared 1.28M-image store of 15 GB).
LAYOUT_SIZES = {"tiny-imagenet": 64, "imagenet-10": 224, "imagenet-100": 224, "imagenet-1k": 64}
LAYOUT_ABOUT = {"tiny-imagenet": "TinyImageNet, 200 classes, 64x64, 100000 train / 10000 test (its val)",
                "imagenet-1k": "ImageNet-1K (ILSVRC2012), 1000 classes, 1.28M train / 50000 test (its val)"}


def _layout_spec(layout: Layout) -> DatasetSpec:
    size = LAYOUT_SIZES.get(layout.name, 128)
    n = 200 if layout.kind == "tiny" else len(layout.wnids or ()) or 1000
    about = LAYOUT_ABOUT.get(layout.name, f"ImageNet subset {layout.name} ({n} classes), read from an ImageNet "
                                          f"layout")
    return DatasetSpec(layout.name, f"{about}; prepared once into a store (`dreamdd prepare`)",
                       DatasetInfo(layout.name, n, 3, (size, size), IMAGENET_MEAN, IMAGENET_STD, ()),
                       folders=layout.folders, layout=layout)


for _name, _layout in layouts().items():
    SPECS.add(_name, _layout_spec(_layout))
SPECS.aliases.update({"tinyimagenet": "tiny-imagenet", "tiny_imagenet": "tiny-imagenet", "tiny": "tiny-imagenet",
           "imagenet": "imagenet-1k", "imagenet1k": "imagenet-1k", "imagenet10": "imagenet-10",
           "imagenet100": "imagenet-100",
           "fashion_mnist": "fashion-mnist", "fmnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
           "cifar-10": "cifar10", "cifar_10": "cifar10", "cifar-100": "cifar100", "cifar_100": "cifar100"})
ALIASES = SPECS.aliases


def dataset_names() -> list[str]:
    """The registered dataset names (aliases such as fmnist are accepted by load() but not listed)."""
    return list(SPECS)


def _spec(name: str) -> DatasetSpec | None:
    key = name.strip().lower()
    return SPECS.get(key)


# ------------------------------------------------------------------------------------------ finding files

def _find_in(folder: Path, spec: DatasetSpec) -> dict[str, Path] | None:
    found = {}
    for names in spec.files:
        path = next((folder / n for n in names if (folder / n).is_file()), None)
        if path is None:
            return None
        found[names[0]] = path
    return found


def _locate(spec: DatasetSpec, root: Path) -> tuple[Path, dict[str, Path]] | None:
    for rel in spec.folders:
        folder = root / rel
        if folder.is_dir():
            found = _find_in(folder, spec)
            if found is not None:
                return folder, found
    return None


def _expected_files(spec: DatasetSpec) -> str:
    return ", ".join(f"{names[0]} (or {' / '.join(names[1:])})" if len(names) > 1 else names[0]
                     for names in spec.files)


def _missing(spec: DatasetSpec, root: Path, reason: str) -> DreamddError:
    folders = ", ".join(str(_abs(root / rel)) for rel in spec.folders)
    target = _abs(root / spec.folders[0])
    sources = ", ".join(r.url for r in spec.resources)
    extract = " and extract the archive" if any(r.archive for r in spec.resources) else ""
    return DreamddError(
        f"{spec.name} files not found: expected {_expected_files(spec)} in one of {folders}. {reason}. "
        f"Fix: download {sources}{extract} so the files are in {target}, or choose the folder that holds "
        f"them with --data-root (root= in Python)")


def _abs(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _verify(spec: DatasetSpec, found: dict[str, Path]) -> None:
    for path in found.values():
        if path.name in spec.checksums:
            dl.check_md5(path, spec.checksums[path.name])


def _extract_archives(spec: DatasetSpec, root: Path) -> None:
    for r in spec.resources:
        archive = root / spec.download_dir / r.filename
        if r.archive and archive.is_file():
            dl.check_md5(archive, r.md5)
            dl.extract_tar(archive, root / spec.download_dir)


def _ensure(spec: DatasetSpec, root: Path, download: bool, verify: bool) -> tuple[Path, dict[str, Path]]:
    """The folder holding the dataset's files, extracting a present archive or downloading when allowed."""
    located = _locate(spec, root)
    if located is None and any((root / spec.download_dir / r.filename).is_file() for r in spec.resources if r.archive):
        _extract_archives(spec, root)  # the archive was fetched by hand but not unpacked
        located = _locate(spec, root)
    if located is None:
        if not download:
            raise _missing(spec, root, "Downloading is off (download=False, or data.download: false in the config)")
        target = root / spec.download_dir
        created = not target.exists()
        for r in spec.resources:
            if not (target / r.filename).is_file():
                try:
                    dl.fetch(r.url, target / r.filename, r.md5)
                except dl.DownloadFailed as e:
                    if created and target.is_dir() and not any(target.iterdir()):
                        target.rmdir()  # leave no empty folder behind
                    raise _missing(spec, root, f"Downloading failed: {e}") from e
        _extract_archives(spec, root)
        located = _locate(spec, root)
        if located is None:
            raise _missing(spec, root, f"The download into {_abs(target)} did not produce them")
    if verify:
        _verify(spec, located[1])
    return located


def list_datasets(root: str | os.PathLike = "data") -> list[dict[str, Any]]:
    """One entry per registered dataset: name, whether its files are present under root, path, description."""
    root = Path(root).expanduser()
    out = []
    for spec in SPECS.values():
        if spec.builtin:
            out.append({"name": spec.name, "present": True, "path": "built-in", "description": spec.description})
            continue
        if spec.layout is not None:
            folder = spec.layout.locate(root, complete=True)
            prepared = stores.prepared(root, spec.name)
            path = str(_abs(folder or root / spec.folders[0]))
            if prepared:
                path += f" (prepared: {', '.join(p.name for p in prepared)})"
            out.append({"name": spec.name, "present": folder is not None or bool(prepared), "path": path,
                        "description": spec.description})
            continue
        located = _locate(spec, root)
        path = located[0] if located else root / spec.folders[0]
        out.append({"name": spec.name, "present": located is not None, "path": str(_abs(path)),
                    "description": spec.description})
    return out + list_user_datasets(root)


# --------------------------------------------------------------------------------------------------- load

def _digits() -> Splits:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    y = d.target.astype(np.int64)
    train, test = train_test_split(np.arange(len(y)), test_size=DIGITS_TEST_FRACTION, stratify=y, random_state=0)
    train, test = np.sort(train), np.sort(test)
    return Splits(x[train], y[train], x[test], y[test])


def _image_size(image_size: Any) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    try:
        h, w = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise DreamddError(f"image_size must be (height, width) or one int, got {image_size!r}") from None
    if h < 1 or w < 1:
        raise DreamddError(f"image_size must be positive, got {(h, w)}")
    return h, w


def _resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear (antialiased) resize of uint8 NCHW images, in chunks to bound memory."""
    if tuple(x.shape[2:]) == size:
        return x
    out = np.empty((len(x), x.shape[1], *size), dtype=np.uint8)
    for start in range(0, len(x), 4096):
        chunk = torch.from_numpy(x[start:start + 4096]).float()
        chunk = torch.nn.functional.interpolate(chunk, size=size, mode="bilinear", antialias=True,
                                                align_corners=False)
        out[start:start + 4096] = chunk.round_().clamp_(0, 255).to(torch.uint8).numpy()
    return out


def _mean_std(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 NCHW images on the [0, 1] scale."""
    c = x.shape[1]
    s, ss, n = np.zeros(c), np.zeros(c), 0
    for start in range(0, len(x), 4096):
        chunk = x[start:start + 4096].astype(np.float64) / 255.0
        s += chunk.sum(axis=(0, 2, 3))
        ss += (chunk ** 2).sum(axis=(0, 2, 3))
        n += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    mean = s / max(n, 1)
    std = np.sqrt(np.maximum(ss / max(n, 1) - mean ** 2, 0.0))
    std = np.where(std < 1e-6, 1.0, std)  # a constant channel: leave its scale alone rather than divide by 0
    return tuple(float(round(v, 6)) for v in mean), tuple(float(round(v, 6)) for v in std)


def _user_info(name: str, splits: Splits) -> DatasetInfo:
    labels_max = max(int(splits.y_train.max(initial=-1)), int(splits.y_test.max(initial=-1)))
    names = list(splits.class_names) if splits.class_names is not None else []
    if names and labels_max >= len(names):
        raise DreamddError(f"{name}: labels go up to {labels_max} but only {len(names)} class_names are given; "
                           f"give one name per class")
    num_classes = max(len(names), labels_max + 1)
    if num_classes < 1:
        raise DreamddError(f"{name} has no training images; add some")
    names = names or [str(i) for i in range(num_classes)]
    mean, std = _mean_std(splits.x_train)
    return DatasetInfo(name, num_classes, int(splits.x_train.shape[1]), tuple(splits.x_train.shape[2:]),  # type: ignore
                       mean, std, tuple(names))


def _val_total(val_size: Any, n: int) -> int:
    """The number of validation images asked for: a fraction in (0, 1) of n, or a whole count."""
    if isinstance(val_size, bool) or not isinstance(val_size, (int, float, np.integer, np.floating)):
        raise DreamddError(f"val_size must be a fraction in (0, 1) or a count >= 0, got {val_size!r}")
    if val_size < 0:
        raise DreamddError(f"val_size must be >= 0 (a fraction below 1, or a count), got {val_size}")
    if isinstance(val_size, (float, np.floating)):
        if 0 < val_size < 1:
            return int(round(float(val_size) * n))
        if not float(val_size).is_integer():
            raise DreamddError(f"val_size {val_size} is neither a fraction below 1 nor a whole count; "
                               f"use e.g. 0.1 or 5000")
    return int(val_size)


def split_validation(labels: torch.Tensor, num_classes: int, val_size: float | int, seed: int,
                     dataset: str = "the dataset") -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified (train, val) indices carved from a training split, deterministic under `seed`.

    The total is spread over classes in proportion to their sizes (largest remainders), with at least one
    validation image per class when the total is positive.
    """
    counts = np.bincount(labels.numpy(), minlength=num_classes)
    empty = [c for c in range(num_classes) if counts[c] == 0]
    if empty:
        raise DreamddError(f"{dataset}: classes {empty[:10]} have no training images; every class 0.."
                           f"{num_classes - 1} needs some (renumber the labels or add images)")
    total = _val_total(val_size, int(counts.sum()))
    take = np.zeros(num_classes, dtype=np.int64)
    if total > 0:
        quota = total * counts / counts.sum()
        take = np.floor(quota).astype(np.int64)
        order = np.argsort(-(quota - take), kind="stable")
        take[order[:total - int(take.sum())]] += 1
        take = np.maximum(take, 1)
    short = [c for c in range(num_classes) if take[c] >= counts[c]]
    if short:
        c = short[0]
        raise DreamddError(f"{dataset}: a validation split of {int(take.sum())} images would leave class {c} "
                           f"with no training images ({counts[c]} in all, {take[c]} for validation); "
                           f"lower val_size")
    g = generator(seed, "val-split")
    order = torch.sort(labels, stable=True).indices
    train, val = [], []
    for idx, k in zip(torch.split(order, counts.tolist()), take.tolist()):
        perm = torch.randperm(len(idx), generator=g)
        val.append(idx[perm[:k]])
        train.append(idx[perm[k:]])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(val)).values


def load(name: str | os.PathLike, root: str | os.PathLike = "data", val_size: float | int = 0.1, seed: int = 0,
         download: bool = True, verify: bool = False, image_size: tuple[int, int] | int | None = None,
         quiet: bool = True, workers: int | None = None) -> LoadedDataset:
    """Load a registered dataset (see dataset_names()), an image folder or an .npz file into banks.

    The validation split is carved out of the training split, stratified and deterministic under `seed`;
    the test split is the dataset's own and never depends on the seed. Image-layout datasets (TinyImageNet,
    ImageNet and its subsets) are read from their prepared store, which is built first when missing
    (`workers` decoding processes, a progress bar unless `quiet`).
    """
    size = _image_size(image_size)
    root_path = Path(root).expanduser()
    spec = _spec(str(name))
    if spec is not None and spec.layout is not None:
        return _split(*_load_stored(spec, root_path, size, quiet, workers), val_size, seed)
    if spec is not None and spec.builtin:
        splits, info, source = _digits(), spec.info, "built-in"
    elif spec is not None:
        folder, found = _ensure(spec, root_path, download, verify)
        splits = spec.read(found)  # type: ignore[misc]
        info, source = spec.info, str(_abs(folder))
        if splits.class_names is not None:
            if len(splits.class_names) != info.num_classes:
                raise DreamddError(f"{folder} names {len(splits.class_names)} classes, expected "
                                   f"{info.num_classes} for {spec.name}; replace the files with the originals")
            info = dataclasses.replace(info, class_names=tuple(splits.class_names))
        bad = max(int(splits.y_train.max(initial=0)), int(splits.y_test.max(initial=0)))
        if bad >= info.num_classes:
            raise DreamddError(f"{folder} has label {bad}, but {spec.name} has {info.num_classes} classes; "
                               f"replace the files with the originals")
    else:
        path = user_dataset(name, root_path) or Path(name).expanduser()
        if path.is_dir():
            splits = readers.read_image_folder(path, size)
            label = path.resolve().name
        elif path.suffix.lower() == ".npz" and path.is_file():
            splits = readers.read_npz(path)
            label = path.stem
        else:
            raise _unknown(str(name), path)
        if size is not None:  # before the statistics, so mean/std describe the images as used
            splits.x_train, splits.x_test = _resize(splits.x_train, size), _resize(splits.x_test, size)
        info = _user_info(label, splits)
        source = str(_abs(path)) + (f" ({splits.note})" if splits.note else "")
    if size is not None and info.image_size != size:
        splits.x_train, splits.x_test = _resize(splits.x_train, size), _resize(splits.x_test, size)
        info = dataclasses.replace(info, image_size=size)
    full = ClassBank(torch.from_numpy(np.ascontiguousarray(splits.x_train)),
                     torch.from_numpy(np.ascontiguousarray(splits.y_train, dtype=np.int64)), info.num_classes)
    test = ClassBank(torch.from_numpy(np.ascontiguousarray(splits.x_test)),
                     torch.from_numpy(np.ascontiguousarray(splits.y_test, dtype=np.int64)), info.num_classes)
    return _split(info, full, test, source, val_size, seed)


def _split(info: DatasetInfo, full: ClassBank, test: ClassBank, source: str, val_size: float | int,
           seed: int) -> LoadedDataset:
    """The dataset with its validation split carved out of the whole training bank."""
    train_idx, val_idx = split_validation(full.labels, info.num_classes, val_size, seed, info.name)
    return LoadedDataset(info=info, train=full.subset(train_idx), val=full.subset(val_idx), test=test,
                         val_size=len(val_idx), source=source)


def _load_stored(spec: DatasetSpec, root: Path, size: tuple[int, int] | None, quiet: bool,
                 workers: int | None) -> tuple[DatasetInfo, ClassBank, ClassBank, str]:
    """An image-layout dataset from its prepared store (prepared now when missing or unfinished)."""
    size = size or spec.info.image_size
    layout: Layout = spec.layout  # type: ignore[assignment]
    store = stores.open_store(stores.store_dir(root, spec.name, size))
    whole = None if store is not None or layout.wnids is None else \
        stores.open_store(stores.store_dir(root, "imagenet-1k", size))
    if whole is not None:  # a subset of a prepared ImageNet-1K: its classes' rows, nothing decoded again
        store, wanted = whole, sorted(layout.wnids)  # type: ignore[arg-type]
    else:
        if store is None:
            store = stores.prepare(layout, root, size, workers=workers, quiet=quiet)
        wanted = list(store.index["class_ids"])
    index = store.index
    position = {w: i for i, w in enumerate(index["class_ids"])}
    classes = [position[w] for w in wanted]
    info = dataclasses.replace(spec.info, num_classes=len(wanted), image_size=size, class_ids=tuple(wanted),
                               class_names=tuple(index["class_names"][i] for i in classes))
    banks = []
    for split in stores.SPLITS:
        rows, labels = store.rows(split, classes)
        banks.append(ClassBank(getattr(store, split), torch.from_numpy(labels), len(wanted),
                               rows=torch.from_numpy(rows)))
    what = f"classes of {index['dataset']}'s store " if whole is not None else ""
    return info, banks[0], banks[1], f"{_abs(store.path)} ({what}prepared from {index['source']['folder']})"


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def user_dataset(name: str | os.PathLike, root: str | os.PathLike = "data") -> Path | None:
    """A user's dataset by name or path: the path as given (absolute, or relative to the working directory),
    else NAME/ or NAME.npz under the data root; None when there is none (or NAME is a registered dataset)."""
    given = Path(name).expanduser()
    if _spec(str(name)) is not None:
        return None
    candidates = [given] if given.is_absolute() else [given, Path(root).expanduser() / given]
    if given.suffix.lower() != ".npz" and not given.is_absolute():
        candidates.append(Path(root).expanduser() / f"{given}.npz")
    for path in candidates:
        if path.is_dir() or (path.suffix.lower() == ".npz" and path.is_file()):
            return path
    return None


def _looks_like_image_folder(folder: Path) -> bool:
    """Class sub-folders (directly, or under train/) holding images, judged by their first entries."""
    top = folder / "train" if (folder / "train").is_dir() else folder
    for sub in sorted(p for p in top.iterdir() if p.is_dir())[:3]:
        if any(f.suffix.lower() in IMAGE_SUFFIXES for f in itertools.islice(sub.iterdir(), 20)):
            return True
    return False


def dataset_reference(name: str | os.PathLike, root: str | os.PathLike = "data") -> str:
    """What finds a run's dataset again from any working directory: a registered name as it is, a user's dataset
    as its absolute path."""
    path = user_dataset(name, root)
    return str(path.resolve()) if path is not None else str(name)


def list_user_datasets(root: str | os.PathLike = "data") -> list[dict[str, Any]]:
    """The user's datasets under the data root: NAME.npz files and NAME/ image folders (not a registered
    dataset's folder or a prepared store)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        return []
    taken = {folder.split("/")[0].lower() for spec in SPECS.values() for folder in spec.folders} | {"prepared"}
    out = []
    for path in sorted(root.iterdir()):
        if path.name.lower() in taken or path.name.startswith("."):
            continue
        if path.is_file() and path.suffix.lower() == ".npz":
            out.append({"name": path.stem, "present": True, "path": str(_abs(path)), "description": "your .npz"})
        elif path.is_dir() and _looks_like_image_folder(path):
            out.append({"name": path.name, "present": True, "path": str(_abs(path)),
                        "description": "your image folder"})
    return out


def _unknown(name: str, path: Path) -> DreamddError:
    if path.exists():
        return DreamddError(f"{path} is neither a folder of images nor an .npz file; pass a folder "
                            f"(<class>/<image> or train/ and test/) or an .npz with x_train, y_train, x_test, y_test")
    if os.sep in name or "/" in name or path.suffix:
        return DreamddError(f"{path} does not exist; check the path to your image folder or .npz file")
    close = difflib.get_close_matches(name.lower(), list(SPECS) + list(ALIASES), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return DreamddError(f"unknown dataset {name!r}: {hint}choose one of {', '.join(SPECS)}, "
                        f"or pass a path to an image folder or an .npz file")


def load_configured(config, quiet: bool = True) -> LoadedDataset:
    """load() with a run's settings: its `data` section and its seed (which also seeds the validation split)."""
    d = config.data
    return load(d.dataset, root=d.root, val_size=d.val_size, seed=config.seed, download=d.download,
                verify=d.verify, image_size=d.image_size, quiet=quiet)


def prepare(name: str, root: str | os.PathLike = "data", image_size: tuple[int, int] | int | None = None,
            workers: int | None = None, quiet: bool = True) -> stores.Store:
    """Build (or resume, or find up to date) the prepared store of an image-layout dataset; return it."""
    spec = _spec(str(name))
    if spec is None:
        raise _unknown(str(name), Path(name).expanduser())
    if spec.layout is None:
        raise DreamddError(f"{spec.name} is read into memory directly and needs no preparing; `dreamdd prepare` "
                           f"is for {', '.join(n for n, s in SPECS.items() if s.layout is not None)}")
    size = _image_size(image_size) or spec.info.image_size
    return stores.prepare(spec.layout, Path(root).expanduser(), size, workers=workers, quiet=quiet)
