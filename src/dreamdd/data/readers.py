"""File-format readers: each returns numpy uint8 images (N, C, H, W) and int64 labels, and rejects corrupt files."""
from __future__ import annotations

import gzip
import os
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DreamddError
from .imaging import decode

GZIP_MAGIC = b"\x1f\x8b"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
GRAY_MODES = {"1", "L", "LA"}
FOLDER_TEST_FRACTION = 0.2  # test share carved from a folder without train/ and test/ subfolders
FOLDER_TEST_SEED = 0


@dataclass
class Splits:
    """A dataset's train and test arrays as read from disk, plus class names if the files carry them."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str] | None = None
    note: str = ""  # how the files were interpreted, when that is not obvious (e.g. a carved test split)


# ----------------------------------------------------------------------------------------------- idx (MNIST)

_IDX_DTYPES = {0x08: np.uint8}


GZIP_MAX_RATIO = 1100  # deflate expands at most ~1032:1, so a gzip file cannot hold more than this times its size


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An idx file (gzipped or not, detected from its first bytes) as a numpy array of its declared shape.

    The header is checked against what the file can hold before the body is read, so a lying header costs
    nothing (and a gzipped file is inflated only as far as its header promises)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        gzipped = f.read(2) == GZIP_MAGIC
    try:
        with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES or magic[3] == 0:
                raise DreamddError(f"{path} is not an idx file of unsigned bytes (bad magic number {magic.hex()}); "
                                   f"replace it with the original MNIST-format file")
            ndim = magic[3]
            dims = f.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise DreamddError(f"{path} is truncated (header incomplete); replace it with the original file")
            shape = tuple(int.from_bytes(dims[4 * i:4 * i + 4], "big") for i in range(ndim))
            expected = 1
            for d in shape:
                expected *= d   # Python integers: no overflow
            header = 4 + 4 * ndim
            possible = size * GZIP_MAX_RATIO if gzipped else size - header
            if expected > possible or (not gzipped and expected != possible):
                raise DreamddError(f"{path} declares shape {shape} ({expected} bytes of data) but "
                                   f"{'cannot hold that many' if gzipped else f'holds {possible}'}; the file is "
                                   f"truncated or corrupt, replace it with the original")
            body = f.read(expected + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise DreamddError(f"{path} is a damaged {'gzip' if gzipped else 'idx'} file ({e}); delete it and fetch "
                           "it again") from e
    if len(body) != expected:
        raise DreamddError(f"{path} declares shape {shape} ({expected} bytes of data) but holds "
                           f"{'more' if len(body) > expected else len(body)}; the file is truncated or corrupt, "
                           f"replace it with the original")
    return np.frombuffer(body, dtype=_IDX_DTYPES[magic[2]]).reshape(shape)


def read_idx_images(path: str | os.PathLike) -> np.ndarray:
    x = read_idx(path)
    if x.ndim != 3:
        raise DreamddError(f"{path} holds an array of shape {x.shape}, not images (N, H, W); "
                           f"check that the image and label files are not swapped")
    return x[:, None].copy()


def read_idx_labels(path: str | os.PathLike) -> np.ndarray:
    y = read_idx(path)
    if y.ndim != 1:
        raise DreamddError(f"{path} holds an array of shape {y.shape}, not labels (N,); "
                           f"check that the image and label files are not swapped")
    return y.astype(np.int64)


def read_idx_pair(images: str | os.PathLike, labels: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    x, y = read_idx_images(images), read_idx_labels(labels)
    if len(x) != len(y):
        raise DreamddError(f"{images} has {len(x)} images but {labels} has {len(y)} labels; "
                           f"the two files must come from the same split")
    return x, y


# ----------------------------------------------------------------------------------------- CIFAR pickles

def _allowed_globals() -> dict[tuple[str, str], object]:
    import builtins
    import codecs
    import copyreg

    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    reconstruct, scalar = multiarray._reconstruct, multiarray.scalar
    allowed: dict[tuple[str, str], object] = {}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # pickles from numpy 1.x and 2.x
        allowed[(module, "_reconstruct")] = reconstruct
        allowed[(module, "scalar")] = scalar
    if hasattr(numeric, "_frombuffer"):  # numpy's protocol-5 array pickles
        for module in ("numpy.core.numeric", "numpy._core.numeric"):
            allowed[(module, "_frombuffer")] = numeric._frombuffer
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    allowed[("copyreg", "_reconstructor")] = copyreg._reconstructor
    allowed[("_codecs", "encode")] = codecs.encode  # how Python 3 writes bytes at protocol 2
    for name in ("object", "list", "dict", "tuple", "set", "frozenset", "bytes", "bytearray", "str", "int",
                 "float", "complex", "bool"):
        allowed[("builtins", name)] = getattr(builtins, name)
        allowed[("__builtin__", name)] = getattr(builtins, name)  # Python 2 pickles
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only; any other global (os.system, eval, ...) is refused."""

    _allowed: dict[tuple[str, str], object] | None = None

    def find_class(self, module: str, name: str) -> object:
        if RestrictedUnpickler._allowed is None:
            RestrictedUnpickler._allowed = _allowed_globals()
        try:
            return RestrictedUnpickler._allowed[(module, name)]
        except KeyError:
            raise DreamddError(f"refusing to load {module}.{name} from a pickle: dataset pickles only hold "
                               f"arrays, lists and dicts, so this file is not a genuine dataset file (it could "
                               f"run code); delete it and fetch the original") from None


def load_pickle(path: str | os.PathLike) -> object:
    """Unpickle with RestrictedUnpickler (encoding="bytes", as for Python 2 files)."""
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, encoding="bytes").load()
    except DreamddError:
        raise
    except Exception as e:  # corrupt pickles raise many kinds of error
        raise DreamddError(f"{path} could not be read as a pickle ({type(e).__name__}: {e}); "
                           f"the file is corrupt, replace it with the original") from e


def _str_keys(obj: object, path: Path) -> dict[str, object]:
    if not isinstance(obj, dict):
        raise DreamddError(f"{path} holds a {type(obj).__name__}, not a dict of arrays; "
                           f"replace it with the original CIFAR file")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _names(values: object) -> list[str]:
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]  # type: ignore


def read_cifar_batch(path: str | os.PathLike, label_key: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR python batch: 'data' (N, 3072: R, G, B planes of 32x32) and labels under `label_key`."""
    path = Path(path)
    d = _str_keys(load_pickle(path), path)
    if "data" not in d or label_key not in d:
        raise DreamddError(f"{path} lacks the keys 'data' and '{label_key}' (has {sorted(d)}); "
                           f"replace it with the original CIFAR file")
    data = np.asarray(d["data"])
    labels = np.asarray(d[label_key], dtype=np.int64).reshape(-1)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DreamddError(f"{path}: 'data' is {data.dtype} {data.shape} for {len(labels)} labels, expected "
                           f"uint8 (N, 3072); replace it with the original CIFAR file")
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar_names(path: str | os.PathLike, key: str) -> list[str]:
    path = Path(path)
    d = _str_keys(load_pickle(path), path)
    if key not in d:
        raise DreamddError(f"{path} lacks '{key}' (has {sorted(d)}); replace it with the original CIFAR file")
    return _names(d[key])


CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
CIFAR100_FILES = ["train", "test", "meta"]


def read_cifar10(folder: str | os.PathLike) -> Splits:
    """cifar-10-batches-py/: data_batch_1..5, test_batch, batches.meta."""
    folder = Path(folder)
    parts = [read_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = read_cifar_batch(folder / "test_batch")
    return Splits(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), x_test, y_test,
                  read_cifar_names(folder / "batches.meta", "label_names"))


def read_cifar100(folder: str | os.PathLike) -> Splits:
    """cifar-100-python/: train, test, meta; the 100 fine labels."""
    folder = Path(folder)
    x_train, y_train = read_cifar_batch(folder / "train", "fine_labels")
    x_test, y_test = read_cifar_batch(folder / "test", "fine_labels")
    return Splits(x_train, y_train, x_test, y_test, read_cifar_names(folder / "meta", "fine_label_names"))


# ------------------------------------------------------------------------------------------------ SVHN .mat

def read_svhn_mat(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """An SVHN cropped-digits .mat: X is (H, W, C, N) uint8, y is (N, 1) with 10 meaning digit 0."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises several error types for damaged files
        raise DreamddError(f"{path} could not be read as a MATLAB file ({e}); replace it with the original") from e
    if "X" not in mat or "y" not in mat:
        raise DreamddError(f"{path} lacks the variables X and y; it is not an SVHN cropped-digits file")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1).astype(np.int64)
    if x.ndim != 4 or x.shape[2] != 3 or x.shape[3] != len(y) or x.dtype != np.uint8:
        raise DreamddError(f"{path}: X is {x.dtype} {x.shape} for {len(y)} labels, expected uint8 (H, W, 3, N); "
                           f"replace it with the original SVHN file")
    y[y == 10] = 0
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise DreamddError(f"{path}: labels outside 1..10; replace it with the original SVHN file")
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y


# -------------------------------------------------------------------------------------------- image folder

def _inside(entry: Path, folder: Path) -> Path:
    """`entry`, unless it is a link leading out of `folder` (which is refused: a dataset reads only itself)."""
    if entry.is_symlink() and not entry.resolve().is_relative_to(folder.resolve()):
        raise DreamddError(f"{entry} is a link to {entry.resolve()}, outside {folder}; copy the file in or remove "
                           "the link")
    return entry


def _image_files(folder: Path) -> list[Path]:
    return sorted(_inside(p, folder) for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(_inside(p, folder) for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _survey(files: list[Path], image_size: tuple[int, int] | None, folder: Path) -> str:
    """Check every file opens as an image (headers only) and return the common mode: L if all gray, else RGB."""
    from PIL import Image

    modes, sizes = set(), set()
    for f in files:
        try:
            with Image.open(f) as im:
                modes.add(im.mode)
                sizes.add(im.size)  # (width, height)
        except Exception as e:  # PIL raises many kinds (OSError, SyntaxError, DecompressionBombError, ...)
            raise DreamddError(f"{f} could not be read as an image ({e}); remove it from {folder}") from e
        if im.size[0] * im.size[1] > Image.MAX_IMAGE_PIXELS:   # a decompression bomb, or no dataset image
            raise DreamddError(f"{f} claims {im.size[0]} x {im.size[1]} pixels, more than the {Image.MAX_IMAGE_PIXELS}"
                               f" an image may have; remove it from {folder}")
    if image_size is None and len(sizes) > 1:
        shown = ", ".join(f"{h}x{w}" for w, h in sorted(sizes)[:5])
        raise DreamddError(f"the images in {folder} have different sizes ({shown}{', ...' if len(sizes) > 5 else ''}"
                           f"); pass --image-size S (data.image_size) to resize them all to one size")
    return "L" if modes <= GRAY_MODES else "RGB"


def _decode(f: Path, mode: str, image_size: tuple[int, int] | None) -> np.ndarray:
    return decode(f, image_size, mode)


def read_image_folder(folder: str | os.PathLike, image_size: tuple[int, int] | None = None) -> Splits:
    """FOLDER/train/<class>/* and FOLDER/test/<class>/*, or FOLDER/<class>/* (a 20 % test split is then carved).

    Class names are the sorted names of the class folders. Images become RGB, or L when all are grayscale;
    with image_size=(H, W) every image is resized (shorter side) and center-cropped to it, otherwise all must
    share one size.
    """
    folder = Path(folder)
    split_layout = (folder / "train").is_dir() and (folder / "test").is_dir()
    if split_layout:
        classes = [d.name for d in _class_dirs(folder / "train")]
        extra = sorted({d.name for d in _class_dirs(folder / "test")} - set(classes))
        if extra:
            raise DreamddError(f"{folder / 'test'} has class folders {extra} that {folder / 'train'} lacks; "
                               f"every test class needs training images, so add them or remove those folders")
        groups = {s: [(c, f) for c in classes if (folder / s / c).is_dir() for f in _image_files(folder / s / c)]
                  for s in ("train", "test")}
    else:
        classes = [d.name for d in _class_dirs(folder)]
        groups = {"all": [(c, f) for c in classes for f in _image_files(folder / c)]}
    if not classes:
        raise DreamddError(f"{folder} has no class folders; arrange images as {folder}/<class>/<image> "
                           f"(optionally under train/ and test/)")
    root_for_class = folder / "train" if split_layout else folder
    empty = [c for c in classes if not _image_files(root_for_class / c)]
    if empty:
        raise DreamddError(f"class folders {empty} in {root_for_class} hold no images "
                           f"({', '.join(sorted(IMAGE_SUFFIXES))}); add images or remove those folders")
    entries = [e for g in groups.values() for e in g]
    mode = _survey([f for _, f in entries], image_size, folder)
    x = np.stack([_decode(f, mode, image_size) for _, f in entries])
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[c] for c, _ in entries], dtype=np.int64)
    if split_layout:
        n_train = len(groups["train"])
        return Splits(x[:n_train], y[:n_train], x[n_train:], y[n_train:], classes)
    test = _carve_test(y, FOLDER_TEST_FRACTION, FOLDER_TEST_SEED)
    train = np.setdiff1d(np.arange(len(y)), test)
    return Splits(x[train], y[train], x[test], y[test], classes,
                  note=f"no train/ and test/ subfolders: a stratified {FOLDER_TEST_FRACTION:.0%} test split "
                       f"was carved with seed {FOLDER_TEST_SEED}")


def read_class_folders(folder: str | os.PathLike,
                       image_size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every image of FOLDER/<class>/*, unsplit: (uint8 NCHW, int64 labels, sorted class folder names)."""
    folder = Path(folder)
    classes = [d.name for d in _class_dirs(folder)]
    entries = [(i, f) for i, c in enumerate(classes) for f in _image_files(folder / c)]
    if not entries:
        raise DreamddError(f"{folder} holds no images in class folders; arrange them as {folder}/<class>/<image>")
    mode = _survey([f for _, f in entries], image_size, folder)
    x = np.stack([_decode(f, mode, image_size) for _, f in entries])
    return x, np.array([i for i, _ in entries], dtype=np.int64), classes


def _carve_test(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Per class, round(fraction * n) random indices (kept below n so the class keeps a training image)."""
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = min(int(round(fraction * len(idx))), len(idx) - 1)
        picked.append(rng.permutation(idx)[:k])
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


# ------------------------------------------------------------------------------------------------------ npz

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _to_nchw_uint8(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[-1] in (1, 3):
            x = x.transpose(0, 3, 1, 2)
        elif x.shape[1] not in (1, 3):
            raise DreamddError(f"{path}: {key} has shape {x.shape}; expected (N, H, W), (N, H, W, C) or "
                               f"(N, C, H, W) with C = 1 or 3")
    else:
        raise DreamddError(f"{path}: {key} has shape {x.shape}; expected (N, H, W), (N, H, W, C) or (N, C, H, W)")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if np.issubdtype(x.dtype, np.floating):
        if x.size and (not np.isfinite(x).all() or x.min() < 0 or x.max() > 1):
            raise DreamddError(f"{path}: {key} is float with values outside [0, 1]; store uint8 0..255 or "
                               f"floats scaled to [0, 1]")
        return np.ascontiguousarray(np.rint(x * 255).astype(np.uint8))
    if np.issubdtype(x.dtype, np.integer) and (not x.size or (x.min() >= 0 and x.max() <= 255)):
        return np.ascontiguousarray(x.astype(np.uint8))
    raise DreamddError(f"{path}: {key} has dtype {x.dtype}; store images as uint8 0..255 or floats in [0, 1]")


def _labels(y: np.ndarray, key: str, path: Path) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and 1 in y.shape:  # (N, 1) or (1, N)
        y = y.reshape(-1)
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
        raise DreamddError(f"{path}: {key} is {y.dtype} {y.shape}; store labels as integers 0..K-1 of shape (N,)")
    if y.size and y.min() < 0:
        raise DreamddError(f"{path}: {key} has negative labels; number the classes 0..K-1")
    return y.astype(np.int64)


def read_npz(path: str | os.PathLike) -> Splits:
    """An .npz with x_train, y_train, x_test, y_test (and optionally class_names); no pickled objects."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in NPZ_KEYS if k not in f.files]
            if missing:
                raise DreamddError(f"{path} lacks {missing} (has {f.files}); save it with "
                                   f"np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)")
            arrays = {k: f[k] for k in NPZ_KEYS}
            names = f["class_names"] if "class_names" in f.files else None
    except DreamddError:
        raise
    except ValueError as e:  # object arrays need pickle, which is refused
        raise DreamddError(f"{path} holds pickled objects ({e}); store plain numeric arrays, and class_names "
                           f"as a string array (np.array([...], dtype=str))") from e
    except Exception as e:
        raise DreamddError(f"{path} could not be read as an .npz file ({e}); re-save it with np.savez") from e
    x_train = _to_nchw_uint8(arrays["x_train"], "x_train", path)
    x_test = _to_nchw_uint8(arrays["x_test"], "x_test", path)
    y_train = _labels(arrays["y_train"], "y_train", path)
    y_test = _labels(arrays["y_test"], "y_test", path)
    for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if len(x) != len(y):
            raise DreamddError(f"{path}: x_{split} has {len(x)} images but y_{split} has {len(y)} labels; "
                               f"store one label per image")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DreamddError(f"{path}: x_train images are {x_train.shape[1:]} but x_test images are "
                           f"{x_test.shape[1:]} (C, H, W); store both splits in one shape")
    return Splits(x_train, y_train, x_test, y_test, None if names is None else _names(np.asarray(names).tolist()))
