"""Data loading: the format readers on tiny files written here, ClassBank, the validation split and load()."""
from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from dreamdd.data import ClassBank, DatasetInfo, dataset_names, list_datasets, load
from dreamdd.data import download as dl
from dreamdd.data import readers
from dreamdd.data.registry import split_validation
from dreamdd.errors import DreamddError
from dreamdd.seeding import generator

SHARED = Path("/work/shared/data")
IDX_NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte"]


# ------------------------------------------------------------------------------------------------ writers

def idx_bytes(a: np.ndarray) -> bytes:
    a = np.asarray(a, dtype=np.uint8)
    header = bytes([0, 0, 0x08, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    return header + a.tobytes()


def write_idx(path: Path, a: np.ndarray, gz: bool) -> None:
    data = idx_bytes(a)
    path.write_bytes(gzip.compress(data) if gz else data)


def write_mnist(folder: Path, n_train: int = 30, n_test: int = 10, gz: bool = True, seed: int = 0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = [rng.integers(0, 256, (n_train, 28, 28)), np.arange(n_train) % 10,
              rng.integers(0, 256, (n_test, 28, 28)), np.arange(n_test) % 10]
    for name, a in zip(IDX_NAMES, arrays):
        write_idx(folder / (name + (".gz" if gz else "")), a, gz)
    return arrays


def write_cifar10(folder: Path, per_batch: int = 4, protocol: int = 2, bytes_keys: bool = True):
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    key = (lambda k: k.encode()) if bytes_keys else (lambda k: k)
    all_data = []
    for i, name in enumerate([f"data_batch_{b}" for b in range(1, 6)] + ["test_batch"]):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [(i * per_batch + j) % 10 for j in range(per_batch)]
        all_data.append((data, labels))
        with open(folder / name, "wb") as f:
            pickle.dump({key("batch_label"): key(name), key("labels"): labels, key("data"): data,
                         key("filenames"): [key(f"{j}.png") for j in range(per_batch)]}, f, protocol=protocol)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({key("label_names"): [key(n) for n in names], key("num_vis"): 3072}, f, protocol=protocol)
    return all_data, names


def write_cifar100(folder: Path, n_train: int = 200, n_test: int = 20):
    rng = np.random.default_rng(2)
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("test", n_test)):
        fine = [j % 100 for j in range(n)]
        with open(folder / name, "wb") as f:
            pickle.dump({b"filenames": [b"x.png"] * n, b"batch_label": name.encode(), b"fine_labels": fine,
                         b"coarse_labels": [j // 5 for j in fine],
                         b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}, f, protocol=2)
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                     b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}, f, protocol=2)


def write_svhn(path: Path, n: int, seed: int = 3):
    import scipy.io

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = (np.arange(n) % 10 + 1).reshape(n, 1)  # 1..10, where 10 means digit 0
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"X": x, "y": y})
    return x, y


def write_pngs(folder: Path, classes: dict[str, int], mode: str = "RGB", size=(6, 5), seed: int = 4):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c, n in classes.items():
        (folder / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (size[0], size[1], 3) if mode == "RGB" else size
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(folder / c / f"{i}.png")


# ----------------------------------------------------------------------------------------------- idx files

@pytest.mark.parametrize("gz", [True, False])
def test_idx_reader(tmp_path, gz):
    arrays = write_mnist(tmp_path, gz=gz)
    suffix = ".gz" if gz else ""
    x = readers.read_idx_images(tmp_path / (IDX_NAMES[0] + suffix))
    y = readers.read_idx_labels(tmp_path / (IDX_NAMES[1] + suffix))
    assert x.shape == (30, 1, 28, 28) and x.dtype == np.uint8
    assert np.array_equal(x[:, 0], arrays[0]) and y.dtype == np.int64 and np.array_equal(y, arrays[1])


def test_idx_detects_gzip_by_content_and_rejects_corrupt_files(tmp_path):
    a = np.arange(24).reshape(2, 3, 4)
    misnamed = tmp_path / "images"  # gzipped though the name says otherwise
    misnamed.write_bytes(gzip.compress(idx_bytes(a)))
    assert np.array_equal(readers.read_idx(misnamed), a)
    bad_magic = tmp_path / "bad"
    bad_magic.write_bytes(b"\x12\x34\x08\x03" + idx_bytes(a)[4:])
    with pytest.raises(DreamddError, match="magic"):
        readers.read_idx(bad_magic)
    truncated = tmp_path / "short"
    truncated.write_bytes(idx_bytes(a)[:-5])
    with pytest.raises(DreamddError, match="truncated"):
        readers.read_idx(truncated)
    broken_gz = tmp_path / "broken.gz"
    broken_gz.write_bytes(gzip.compress(idx_bytes(a))[:-10])
    with pytest.raises(DreamddError):
        readers.read_idx(broken_gz)
    write_idx(tmp_path / "labels", np.arange(5), gz=False)
    with pytest.raises(DreamddError, match="swapped"):
        readers.read_idx_images(tmp_path / "labels")


def test_load_mnist_layouts(tmp_path):
    write_mnist(tmp_path / "MNIST" / "raw", gz=False)
    data = load("mnist", root=tmp_path, val_size=0, download=False)
    assert (len(data.train), len(data.test), data.val_size) == (30, 10, 0)
    assert data.info.class_names == tuple("0123456789") and data.info.mean == (0.1307,)
    assert data.source.endswith(os.path.join("MNIST", "raw"))
    write_mnist(tmp_path / "fmnist-root" / "fashion-mnist", gz=True)
    fm = load("fmnist", root=tmp_path / "fmnist-root", val_size=10, download=False)
    assert fm.info.name == "fashion-mnist" and fm.info.class_names[0] == "T-shirt/top" and fm.val_size == 10


# ------------------------------------------------------------------------------------------- CIFAR pickles

@pytest.mark.parametrize("protocol,bytes_keys", [(2, True), (pickle.HIGHEST_PROTOCOL, False)])
def test_cifar10_reader(tmp_path, protocol, bytes_keys):
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    batches, names = write_cifar10(folder, protocol=protocol, bytes_keys=bytes_keys)
    s = readers.read_cifar10(folder)
    assert s.x_train.shape == (20, 3, 32, 32) and s.x_test.shape == (4, 3, 32, 32)
    data, labels = batches[0]
    assert s.x_train[0, 0, 0, 0] == data[0, 0] and s.x_train[0, 1, 0, 0] == data[0, 1024]  # R, G, B planes
    assert s.x_train[0, 2, 31, 31] == data[0, 3071] and list(s.y_train[:4]) == labels
    assert s.class_names == names
    loaded = load("cifar10", root=tmp_path, val_size=0, download=False)
    assert loaded.info.class_names == tuple(names) and loaded.info.channels == 3
    assert loaded.info.std == (0.2023, 0.1994, 0.2010)


def test_cifar100_reader(tmp_path):
    write_cifar100(tmp_path / "cifar-100-python")
    s = readers.read_cifar100(tmp_path / "cifar-100-python")
    assert s.x_train.shape == (200, 3, 32, 32) and s.y_train.max() == 99 and len(s.class_names) == 100
    data = load("cifar100", root=tmp_path, val_size=100, download=False)
    assert data.info.num_classes == 100 and data.info.class_names[5] == "fine5"
    assert data.val_size == 100 and data.val.class_counts() == [1] * 100


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "cifar-10-batches-py"
    write_cifar10(evil)
    with open(evil / "data_batch_1", "wb") as f:
        pickle.dump({b"data": _Exploit(marker), b"labels": [0]}, f, protocol=2)
    with pytest.raises(DreamddError, match="refusing"):
        readers.load_pickle(evil / "data_batch_1")
    with pytest.raises(DreamddError, match="system"):
        load("cifar10", root=tmp_path, download=False)
    assert not marker.exists()
    (tmp_path / "eval.pkl").write_bytes(b"cbuiltins\neval\n(S'1+1'\ntR.")
    with pytest.raises(DreamddError, match="builtins.eval"):
        readers.load_pickle(tmp_path / "eval.pkl")


# ----------------------------------------------------------------------------------------------- SVHN .mat

def test_svhn_reader(tmp_path):
    x, y = write_svhn(tmp_path / "svhn" / "train_32x32.mat", 20)
    write_svhn(tmp_path / "svhn" / "test_32x32.mat", 10)
    xs, ys = readers.read_svhn_mat(tmp_path / "svhn" / "train_32x32.mat")
    assert xs.shape == (20, 3, 32, 32) and xs.dtype == np.uint8
    assert xs[3, 1, 5, 7] == x[5, 7, 1, 3]
    assert ys.tolist() == [(i + 1) % 10 for i in range(20)]  # label 10 became 0
    data = load("svhn", root=tmp_path, val_size=0, download=False)
    assert len(data.train) == 20 and data.info.mean == (0.4377, 0.4438, 0.4728)


# -------------------------------------------------------------------------------------------- image folder

def test_image_folder_train_test_layout(tmp_path):
    write_pngs(tmp_path / "pets" / "train", {"cat": 3, "dog": 4})
    write_pngs(tmp_path / "pets" / "test", {"cat": 1, "dog": 2})
    data = load(str(tmp_path / "pets"), val_size=0)
    assert data.info.class_names == ("cat", "dog") and data.info.channels == 3
    assert data.info.image_size == (6, 5) and data.train.images.shape == (7, 3, 6, 5)
    assert data.train.class_counts() == [3, 4] and data.test.class_counts() == [1, 2]
    assert data.info.name == "pets" and len(data.info.mean) == 3


def test_image_folder_flat_layout_gray_and_sizes(tmp_path):
    root = tmp_path / "shapes"
    write_pngs(root, {"a": 10, "b": 5}, mode="L")
    data = load(root, val_size=0)
    assert data.info.channels == 1
    assert data.test.class_counts() == [2, 1] and data.train.class_counts() == [8, 4]  # 20 % carved
    assert "20%" in data.source and "seed 0" in data.source
    again = load(root, val_size=0, seed=7)
    assert torch.equal(again.test.images, data.test.images)  # the carved test split ignores the run seed
    write_pngs(root, {"c": 2}, mode="RGB", size=(9, 9))
    with pytest.raises(DreamddError, match="image_size"):
        load(root)
    resized = load(root, val_size=0, image_size=(4, 4))
    assert resized.info.channels == 3 and resized.train.images.shape[1:] == (3, 4, 4)
    assert resized.info.image_size == (4, 4)


# ----------------------------------------------------------------------------------------------------- npz

def test_npz_layouts(tmp_path):
    rng = np.random.default_rng(5)
    nhwc = rng.integers(0, 256, (12, 7, 6, 3), dtype=np.uint8)
    y = np.arange(12) % 3
    np.savez(tmp_path / "rgb.npz", x_train=nhwc, y_train=y, x_test=nhwc[:3], y_test=y[:3],
             class_names=np.array(["r", "g", "b"]))
    data = load(tmp_path / "rgb.npz", val_size=0)
    assert data.train.images.shape == (12, 3, 7, 6) and data.info.class_names == ("r", "g", "b")
    assert torch.equal(data.train.images[0], torch.from_numpy(nhwc[0]).permute(2, 0, 1))
    expected_mean = nhwc.reshape(-1, 3).mean(0) / 255
    assert np.allclose(data.info.mean, expected_mean, atol=1e-5)

    gray = rng.random((12, 5, 5)).astype(np.float32)  # NHW floats in [0, 1]
    np.savez(tmp_path / "gray.npz", x_train=gray, y_train=y, x_test=gray[:2], y_test=y[:2])
    data = load(str(tmp_path / "gray.npz"), val_size=0)
    assert data.train.images.shape == (12, 1, 5, 5) and data.info.class_names == ("0", "1", "2")
    assert data.train.images[0, 0, 0, 0] == round(float(gray[0, 0, 0]) * 255)

    nchw = rng.integers(0, 256, (12, 3, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "nchw.npz", x_train=nchw, y_train=y, x_test=nchw[:2], y_test=y[:2])
    assert torch.equal(load(tmp_path / "nchw.npz", val_size=0).train.images, torch.from_numpy(nchw))

    np.savez(tmp_path / "bad.npz", x_train=gray * 2, y_train=y, x_test=gray, y_test=y)
    with pytest.raises(DreamddError, match=r"\[0, 1\]"):
        load(tmp_path / "bad.npz")
    np.savez(tmp_path / "nokeys.npz", x=gray)
    with pytest.raises(DreamddError, match="x_train"):
        load(tmp_path / "nokeys.npz")


# -------------------------------------------------------------------------------------------------- bank

def make_bank(counts=(5, 3, 7), size=(1, 2, 2)) -> ClassBank:
    labels = torch.tensor([c for c, n in enumerate(counts) for _ in range(n)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    images = torch.arange(len(labels), dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, *size).contiguous()
    return ClassBank(images, labels, len(counts))


def test_class_bank_indexing():
    bank = make_bank()
    assert len(bank) == 15 and bank.class_counts() == [5, 3, 7] and bank.class_size(2) == 7
    for c in range(3):
        idx = bank.class_indices(c)
        assert idx.dtype == torch.long and torch.all(bank.labels[idx] == c)
        assert torch.equal(idx, torch.sort(idx).values)
    sub = bank.subset(bank.class_indices(1))
    assert sub.class_counts() == [0, 3, 0] and sub.num_classes == 3
    x = bank.batch(torch.tensor([0, 14]), "cpu")
    assert x.dtype == torch.float32 and x.shape == (2, 1, 2, 2) and x.max() <= 1
    assert torch.allclose(x[1], torch.full((1, 2, 2), 14 / 255))
    with pytest.raises(DreamddError):
        bank.class_indices(3)
    with pytest.raises(DreamddError, match="uint8"):
        ClassBank(torch.zeros(2, 1, 2, 2), torch.zeros(2, dtype=torch.long), 1)
    with pytest.raises(DreamddError, match="labels"):
        ClassBank(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 5]), 2)


def test_class_bank_sampling():
    bank = make_bank()
    idx = bank.sample_class(2, 4, generator(0, "t"))
    assert len(idx) == 4 and len(set(idx.tolist())) == 4 and torch.all(bank.labels[idx] == 2)
    assert torch.equal(idx, bank.sample_class(2, 4, generator(0, "t")))
    every = bank.sample_class(1, 10, generator(0, "t"))
    assert sorted(every.tolist()) == bank.class_indices(1).tolist()
    some = bank.sample(6, generator(1))
    assert len(set(some.tolist())) == 6 and some.max() < 15
    assert sorted(bank.sample(100, generator(1)).tolist()) == list(range(15))


# -------------------------------------------------------------------------------------- validation split

def test_validation_split_stratified_deterministic_disjoint():
    labels = torch.tensor([c for c, n in enumerate([100, 50, 30]) for _ in range(n)])
    train, val = split_validation(labels, 3, 0.1, seed=0)
    assert len(val) == 18 and torch.bincount(labels[val]).tolist() == [10, 5, 3]
    assert set(train.tolist()).isdisjoint(val.tolist()) and len(train) + len(val) == 180
    t2, v2 = split_validation(labels, 3, 0.1, seed=0)
    assert torch.equal(val, v2) and torch.equal(train, t2)
    _, v3 = split_validation(labels, 3, 0.1, seed=1)
    assert not torch.equal(val, v3)
    _, v4 = split_validation(labels, 3, 9, seed=0)  # a count, spread proportionally
    assert torch.bincount(labels[v4]).tolist() == [5, 3, 1]
    _, v5 = split_validation(labels, 3, 2, seed=0)  # at least one per class
    assert torch.bincount(labels[v5]).tolist() == [1, 1, 1]
    train, val = split_validation(labels, 3, 0, seed=0)
    assert len(val) == 0 and len(train) == 180
    with pytest.raises(DreamddError, match="no training images"):
        split_validation(torch.tensor([0, 0, 1]), 2, 0.5, seed=0)
    with pytest.raises(DreamddError):
        split_validation(labels, 3, -1, seed=0)
    with pytest.raises(DreamddError):
        split_validation(labels, 3, 2.5, seed=0)


# ---------------------------------------------------------------------------------------- digits & load

def test_digits_fixed_test_split():
    a = load("digits", val_size=0.1, seed=0)
    b = load("digits", val_size=0.1, seed=1)
    assert a.info.num_classes == 10 and a.info.channels == 1 and a.info.image_size == (8, 8)
    assert len(a.test) == 450 and len(a.train) + a.val_size == 1347 and a.source == "built-in"
    assert torch.equal(a.test.images, b.test.images) and torch.equal(a.test.labels, b.test.labels)
    assert not torch.equal(a.val.images, b.val.images)
    both = lambda d: sorted(map(bytes, torch.cat([d.train.images, d.val.images]).flatten(1).numpy()))  # noqa: E731
    assert both(a) == both(b)  # train + val is the same pool whatever the seed
    assert a.train.images.max() == 255 and a.val_size == 135
    assert all(n > 0 for n in a.val.class_counts())


def test_missing_files_without_download(tmp_path):
    with pytest.raises(DreamddError) as e:
        load("mnist", root=tmp_path, download=False)
    msg = str(e.value)
    for name in IDX_NAMES:
        assert name in msg
    assert str(tmp_path / "mnist") in msg and "--data-root" in msg and "ossci-datasets" in msg
    with pytest.raises(DreamddError, match="test_32x32.mat"):
        load("svhn", root=tmp_path, download=False)
    with pytest.raises(DreamddError, match="did you mean 'mnist'"):
        load("mnsit", root=tmp_path)


def test_failed_download_names_files(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(dl.urllib.request, "urlopen", offline)
    with pytest.raises(DreamddError, match="no network") as e:
        load("cifar10", root=tmp_path, download=True)
    assert "data_batch_1" in str(e.value) and "cifar-10-python.tar.gz" in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_download_checksum_mismatch_deletes_file(tmp_path, monkeypatch):
    monkeypatch.setattr(dl.urllib.request, "urlopen", lambda *a, **k: io.BytesIO(b"not the dataset"))
    with pytest.raises(DreamddError, match="md5"):
        dl.fetch("https://example.invalid/f.gz", tmp_path / "f.gz", md5="0" * 32)
    assert list(tmp_path.iterdir()) == []
    dl.fetch("https://example.invalid/f.gz", tmp_path / "f.gz", md5=dl.hashlib.md5(b"not the dataset").hexdigest())
    assert (tmp_path / "f.gz").read_bytes() == b"not the dataset"


def test_verify_checks_known_checksums(tmp_path):
    write_mnist(tmp_path / "mnist", gz=True)
    load("mnist", root=tmp_path, val_size=0, download=False)  # trusted by default
    with pytest.raises(DreamddError, match="md5"):
        load("mnist", root=tmp_path, val_size=0, download=False, verify=True)


def test_extract_tar_is_safe(tmp_path):
    def tar_with(name: str) -> Path:
        path = tmp_path / f"{len(list(tmp_path.iterdir()))}.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
        return path

    out = tmp_path / "out"
    dl.extract_tar(tar_with("folder/file.txt"), out)
    assert (out / "folder" / "file.txt").read_bytes() == b"hi"
    for bad in ("../escape.txt", "/abs.txt"):
        with pytest.raises(DreamddError, match="unsafe"):
            dl.extract_tar(tar_with(bad), out)
    assert not (tmp_path / "escape.txt").exists()


def test_list_datasets_and_names(tmp_path):
    write_mnist(tmp_path / "mnist")
    entries = {d["name"]: d for d in list_datasets(tmp_path)}
    assert list(entries) == dataset_names()
    assert set(dataset_names()) == {"digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "svhn",
                                    "tiny-imagenet", "imagenet-1k", "imagenette", "imagewoof", "imagefruit",
                                    "imageyellow", "imagemeow", "imagesquawk", "imagenet-10", "imagenet-100"}
    assert not entries["tiny-imagenet"]["present"] and not entries["imagenette"]["present"]
    assert entries["mnist"]["present"] and entries["mnist"]["path"] == str(tmp_path / "mnist")
    assert not entries["cifar10"]["present"] and entries["cifar10"]["path"].endswith("cifar-10-batches-py")
    assert entries["digits"]["present"] and all(d["description"] for d in entries.values())


def test_dataset_info_normalize_and_dict():
    info = DatasetInfo("x", 2, 3, (4, 4), (0.1, 0.2, 0.3), (0.5, 0.5, 0.25), ("a", "b"))
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    y = info.normalize(x)
    assert y.dtype == torch.float64 and torch.allclose(y[:, 2], (x[:, 2] - 0.3) / 0.25)
    assert torch.allclose(info.denormalize(y), x)
    assert DatasetInfo.from_dict(info.to_dict()) == info
    with pytest.raises(DreamddError):
        DatasetInfo.from_dict({"name": "x"})


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "mnist").is_dir() or not (SHARED / "fashion-mnist").is_dir(),
                    reason="no shared MNIST copies")
def test_real_mnist_and_fashion_mnist():
    for name in ("mnist", "fashion-mnist"):
        data = load(name, root=SHARED, val_size=0, download=False)
        assert (len(data.train), len(data.test)) == (60000, 10000)
        assert data.train.images.shape[1:] == (1, 28, 28) and data.info.num_classes == 10
        mean = data.train.images.float().mean().item() / 255
        assert abs(mean - data.info.mean[0]) < 0.01


class _Server:
    """A local HTTP server sending `body` with a Content-Length of `length`, `delay` seconds between bytes."""

    def __init__(self, body: bytes, length: int, delay: float = 0.0):
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(handler):
                handler.send_response(200)
                handler.send_header("Content-Length", str(length))
                handler.end_headers()
                for i in range(len(body)):
                    try:
                        handler.wfile.write(body[i:i + 1])
                        handler.wfile.flush()
                    except OSError:
                        return
                    if delay:
                        import time
                        time.sleep(delay)

            def log_message(handler, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/f.gz"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_a_download_has_an_overall_deadline_and_leaves_nothing_behind(tmp_path):
    with _Server(b"x" * 200, 200, delay=0.05) as server:
        with pytest.raises(dl.DownloadFailed, match="not finished within"):
            dl.fetch(server.url, tmp_path / "new" / "deep" / "f.gz", timeout=5, deadline=0.3)
    assert list(tmp_path.iterdir()) == []


def test_a_body_shorter_than_its_length_is_refused_without_md5(tmp_path):
    with _Server(b"x" * 10, 100) as server:
        with pytest.raises(dl.DownloadFailed):
            dl.fetch(server.url, tmp_path / "f.gz", timeout=5)
    assert list(tmp_path.iterdir()) == []
    with _Server(b"y" * 10, 10) as server:
        assert dl.fetch(server.url, tmp_path / "f.gz", timeout=5).read_bytes() == b"y" * 10


def test_a_failed_download_creates_no_data_root(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(dl.urllib.request, "urlopen", offline)
    with pytest.raises(DreamddError, match="no network"):
        load("cifar10", root=tmp_path / "no" / "such" / "root", download=True)
    assert list(tmp_path.iterdir()) == []
