"""Hostile inputs: a table of crafted files for every reader (idx, CIFAR pickles, SVHN .mat, image folders, npz,
.pt, safetensors, metadata.json, config.yaml, checkpoints). Each must be refused with one DreamddError (never
another exception), run no code, and cost no more than the file promises."""
import gzip
import io
import json
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dreamdd.artifact import load_distilled
from dreamdd.config import Config, dump_yaml
from dreamdd.data import readers
from dreamdd.errors import DreamddError
from dreamdd.io.rundir import RunDir, run_config
from dreamdd.sources import load_source

MARKER = "executed"


class _Boom:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _idx(dims, body=b"", dtype=0x08):
    return bytes([0, 0, dtype, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + body


def _png_header(width, height):
    """A PNG whose header claims width x height (its pixel data is a few bytes)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _png(value=0, size=8):
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _torch_bytes(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _npz_bytes(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _safetensors(header: dict | bytes, body=b""):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def _artifact(tmp, tensors: bytes, metadata=None, version=1):
    """An artifact folder: the tensors as given, metadata without a checksum (so the parser itself is tried)."""
    (tmp / "a").mkdir(exist_ok=True)
    (tmp / "a" / "distilled.safetensors").write_bytes(tensors)
    meta = {"format": "dreamdd-distilled", "format_version": version, "factor": 1,
            "dataset": {"num_classes": 10}} if metadata is None else metadata
    (tmp / "a" / "metadata.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    return tmp / "a"


def _st_tensors(images, labels):
    from safetensors.torch import save
    return save({"images": images, "labels": labels})


def write(tmp: Path, name: str, data: bytes) -> Path:
    (tmp / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp / name).write_bytes(data)
    return tmp / name


# ---- the table: (reader, case) -> function(tmp) that builds the file(s) and reads them -------------------------

def _folder(tmp, files: dict[str, bytes], reader=readers.read_class_folders):
    for name, data in files.items():
        write(tmp / "set", name, data)
    return reader(tmp / "set")


def _symlinked(tmp):
    write(tmp, "outside/secret.png", _png(9))
    write(tmp / "set", "0/a.png", _png(1))
    (tmp / "set" / "0" / "b.png").symlink_to(tmp / "outside" / "secret.png")
    return readers.read_class_folders(tmp / "set")


def _symlinked_class(tmp):
    write(tmp, "outside/c/secret.png", _png(9))
    write(tmp / "set", "0/a.png", _png(1))
    (tmp / "set" / "1").symlink_to(tmp / "outside" / "c")
    return readers.read_class_folders(tmp / "set")


def _checkpoint(tmp, data: bytes):
    write(tmp, "run/checkpoint.pt", data)
    return RunDir(tmp / "run").load_checkpoint()


def _valid_checkpoint(tmp) -> bytes:
    RunDir(tmp / "good").path.mkdir(exist_ok=True)
    RunDir(tmp / "good").save_checkpoint({"completed": 1, "images": torch.zeros(2)})
    return (tmp / "good" / "checkpoint.pt").read_bytes()


def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0xFF
    return bytes(out)


def _config(tmp, text):
    write(tmp, "run/config.yaml", text.encode())
    return run_config(RunDir(tmp / "run"))


def _cifar(tmp, obj):
    return readers.read_cifar_batch(write(tmp, "data_batch_1", obj if isinstance(obj, bytes) else pickle.dumps(obj)))


def _svhn(tmp, **variables):
    import scipy.io
    scipy.io.savemat(tmp / "train_32x32.mat", variables)
    return readers.read_svhn_mat(tmp / "train_32x32.mat")


CASES = {
    # idx (MNIST)
    ("idx", "empty"): lambda t: readers.read_idx(write(t, "a.idx", b"")),
    ("idx", "bad magic"): lambda t: readers.read_idx(write(t, "a.idx", b"\x01\x02\x03\x04" + b"\0" * 16)),
    ("idx", "float dtype"): lambda t: readers.read_idx(write(t, "a.idx", _idx([2], b"\0" * 8, dtype=0x0D))),
    ("idx", "truncated header"): lambda t: readers.read_idx(write(t, "a.idx", _idx([2, 3])[:9])),
    ("idx", "body too short"): lambda t: readers.read_idx(write(t, "a.idx", _idx([2, 3], b"\0" * 5))),
    ("idx", "body too long"): lambda t: readers.read_idx(write(t, "a.idx", _idx([2, 3], b"\0" * 7))),
    ("idx", "dims overflow int64"): lambda t: readers.read_idx(write(t, "a.idx", _idx([2**32 - 1] * 3, b"\0" * 8))),
    ("idx", "dims product wraps to body"): lambda t: readers.read_idx(
        write(t, "a.idx", _idx([2**32 - 1, 2**32 - 1, 2**32 - 1, 2**32 - 1, 1], b""))),
    ("idx", "gzip damaged"): lambda t: readers.read_idx(write(t, "a.gz", gzip.compress(_idx([4], b"abcd"))[:-9])),
    ("idx", "gzip header lies"): lambda t: readers.read_idx(
        write(t, "a.gz", gzip.compress(_idx([60000, 2000, 2000]) + b"\0" * (1 << 20)))),
    ("idx", "gzip body short"): lambda t: readers.read_idx(write(t, "a.gz", gzip.compress(_idx([10, 10], b"\0" * 50)))),
    ("idx", "images file holding labels"): lambda t: readers.read_idx_images(write(t, "a.idx", _idx([4], b"\0" * 4))),
    # CIFAR pickles
    ("cifar", "os.system pickle"): lambda t: _cifar(t, pickle.dumps({"data": _Boom(t / MARKER)})),
    ("cifar", "eval pickle"): lambda t: _cifar(t, b"cbuiltins\neval\n(S'1'\ntR."),
    ("cifar", "empty"): lambda t: _cifar(t, b""),
    ("cifar", "garbage"): lambda t: _cifar(t, os.urandom(512)),
    ("cifar", "truncated"): lambda t: _cifar(t, pickle.dumps({"data": np.zeros((2, 3072), np.uint8),
                                                               "labels": [0, 1]})[:-20]),
    ("cifar", "not a dict"): lambda t: _cifar(t, [1, 2, 3]),
    ("cifar", "missing keys"): lambda t: _cifar(t, {"data": np.zeros((2, 3072), np.uint8)}),
    ("cifar", "wrong shape"): lambda t: _cifar(t, {"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}),
    ("cifar", "wrong dtype"): lambda t: _cifar(t, {"data": np.zeros((2, 3072), np.float32), "labels": [0, 1]}),
    ("cifar", "labels count"): lambda t: _cifar(t, {"data": np.zeros((2, 3072), np.uint8), "labels": [0]}),
    # SVHN .mat
    ("svhn", "garbage"): lambda t: readers.read_svhn_mat(write(t, "train_32x32.mat", os.urandom(1024))),
    ("svhn", "empty"): lambda t: readers.read_svhn_mat(write(t, "train_32x32.mat", b"")),
    ("svhn", "missing X"): lambda t: _svhn(t, y=np.ones((2, 1))),
    ("svhn", "float images"): lambda t: _svhn(t, X=np.zeros((32, 32, 3, 2), np.float32), y=np.ones((2, 1))),
    ("svhn", "labels out of range"): lambda t: _svhn(t, X=np.zeros((32, 32, 3, 2), np.uint8), y=np.full((2, 1), 11)),
    ("svhn", "count mismatch"): lambda t: _svhn(t, X=np.zeros((32, 32, 3, 2), np.uint8), y=np.ones((3, 1))),
    # image folders
    ("images", "not an image"): lambda t: _folder(t, {"0/a.png": b"hello"}),
    ("images", "truncated png"): lambda t: _folder(t, {"0/a.png": _png(3)[:40]}),
    ("images", "bomb header 100000x100000"): lambda t: _folder(t, {"0/a.png": _png_header(100000, 100000)}),
    ("images", "bomb header 20000x20000"): lambda t: _folder(t, {"0/a.png": _png_header(20000, 20000)}),
    ("images", "bomb in a dataset folder"): lambda t: _folder(t, {"0/a.png": _png(1),
                                                                  "1/b.png": _png_header(100000, 100000)},
                                                          readers.read_image_folder),
    ("images", "sizes differ"): lambda t: _folder(t, {"0/a.png": _png(1, 8), "1/b.png": _png(1, 9)}),
    ("images", "no class folders"): lambda t: _folder(t, {"a.png": _png(1)}),
    ("images", "empty class"): lambda t: (write(t / "set", "0/a.png", _png(1)), (t / "set" / "1").mkdir(),
                                          readers.read_image_folder(t / "set")),
    ("images", "link out of the folder"): _symlinked,
    ("images", "class folder linked outside"): _symlinked_class,
    # npz, as a dataset and as a distilled set
    ("npz", "object arrays"): lambda t: readers.read_npz(write(t, "a.npz", _npz_bytes(
        x_train=np.array([object()], dtype=object), y_train=[0], x_test=[0], y_test=[0]))),
    ("npz", "not a zip"): lambda t: readers.read_npz(write(t, "a.npz", os.urandom(300))),
    ("npz", "renamed npy"): lambda t: readers.read_npz(write(t, "a.npz", _npy(np.zeros((2, 8, 8), np.uint8)))),
    ("npz", "missing keys"): lambda t: readers.read_npz(write(t, "a.npz", _npz_bytes(x_train=np.zeros((2, 8, 8))))),
    ("npz", "negative labels"): lambda t: readers.read_npz(write(t, "a.npz", _npz_bytes(
        x_train=np.zeros((2, 8, 8), np.uint8), y_train=[-1, 0], x_test=np.zeros((1, 8, 8), np.uint8), y_test=[0]))),
    ("npz", "float pixels out of range"): lambda t: readers.read_npz(write(t, "a.npz", _npz_bytes(
        x_train=np.full((2, 8, 8), 7.0), y_train=[1, 0], x_test=np.zeros((1, 8, 8)), y_test=[0]))),
    ("npz set", "object arrays"): lambda t: load_source(write(t, "s.npz", _npz_bytes(
        images=np.array([object()], dtype=object), labels=[0])), "digits"),
    ("npz set", "not a zip"): lambda t: load_source(write(t, "s.npz", os.urandom(300)), "digits"),
    ("npz set", "renamed npy"): lambda t: load_source(write(t, "s.npz", _npy(np.zeros((2, 8, 8)))), "digits"),
    ("npz set", "string labels"): lambda t: load_source(write(t, "s.npz", _npz_bytes(
        images=np.zeros((2, 1, 8, 8)), labels=np.array(["a", "b"]))), "digits"),
    ("npz set", "count mismatch"): lambda t: load_source(write(t, "s.npz", _npz_bytes(
        images=np.zeros((2, 1, 8, 8)), labels=[0, 1, 2])), "digits"),
    # .pt distilled sets
    ("pt", "empty"): lambda t: load_source(write(t, "s.pt", b""), "digits"),
    ("pt", "garbage"): lambda t: load_source(write(t, "s.pt", os.urandom(500)), "digits"),
    ("pt", "os.system pickle"): lambda t: load_source(write(t, "s.pt", pickle.dumps({"images": _Boom(t / MARKER)})),
                                                      "digits"),
    ("pt", "no images key"): lambda t: load_source(write(t, "s.pt", _torch_bytes({"w": torch.zeros(1)})), "digits"),
    ("pt", "a bare tensor"): lambda t: load_source(write(t, "s.pt", _torch_bytes(torch.zeros(3))), "digits"),
    ("pt", "string labels"): lambda t: load_source(write(t, "s.pt", _torch_bytes(
        {"images": torch.zeros(2, 1, 8, 8), "labels": "ab"})), "digits"),
    ("pt", "fractional labels"): lambda t: load_source(write(t, "s.pt", _torch_bytes(
        {"images": torch.zeros(2, 1, 8, 8), "labels": torch.tensor([0.5, 1.0])})), "digits"),
    ("pt", "5-d images"): lambda t: load_source(write(t, "s.pt", _torch_bytes(
        {"images": torch.zeros(2, 1, 1, 8, 8), "labels": torch.tensor([0, 1])})), "digits"),
    # safetensors artifacts
    ("safetensors", "empty"): lambda t: load_distilled(_artifact(t, b"")),
    ("safetensors", "header length lies"): lambda t: load_distilled(_artifact(t, struct.pack("<Q", 2**60) + b"{}")),
    ("safetensors", "header not json"): lambda t: load_distilled(_artifact(t, _safetensors(b"{not json"))),
    ("safetensors", "offsets past the end"): lambda t: load_distilled(_artifact(t, _safetensors(
        {"images": {"dtype": "F32", "shape": [1000, 1, 8, 8], "data_offsets": [0, 256000]}}, b"\0" * 16))),
    ("safetensors", "no labels"): lambda t: load_distilled(_artifact(t, _st_tensors_only(
        images=torch.zeros(1, 1, 8, 8)))),
    ("safetensors", "negative labels"): lambda t: load_distilled(_artifact(t, _st_tensors(
        torch.zeros(2, 1, 8, 8), torch.tensor([-1, 0])))),
    ("safetensors", "labels out of range"): lambda t: load_distilled(_artifact(t, _st_tensors(
        torch.zeros(2, 1, 8, 8), torch.tensor([0, 10])))),
    ("safetensors", "integer images"): lambda t: load_distilled(_artifact(t, _st_tensors(
        torch.zeros(2, 1, 8, 8, dtype=torch.int32), torch.tensor([0, 1])))),
    ("safetensors", "count mismatch"): lambda t: load_distilled(_artifact(t, _st_tensors(
        torch.zeros(3, 1, 8, 8), torch.tensor([0, 1])))),
    ("safetensors", "non-finite pixels"): lambda t: load_distilled(_artifact(t, _st_tensors(
        torch.full((2, 1, 8, 8), float("nan")), torch.tensor([0, 1])))),
    ("safetensors", "checksum missing in v2"): lambda t: load_distilled(_artifact(t, _st_tensors(
        torch.zeros(2, 1, 8, 8), torch.tensor([0, 1])), version=2)),
    ("safetensors", "checksum mismatch"): lambda t: load_distilled(_artifact(t, _st_tensors(
        torch.zeros(2, 1, 8, 8), torch.tensor([0, 1])),
        {"format_version": 2, "sha256": {"distilled.safetensors": "0"}})),
    # metadata.json
    ("metadata", "empty"): lambda t: load_distilled(_artifact(t, _good_tensors(), "")),
    ("metadata", "not json"): lambda t: load_distilled(_artifact(t, _good_tensors(), "{'a': 1")),
    ("metadata", "a list"): lambda t: load_distilled(_artifact(t, _good_tensors(), "[1, 2]")),
    ("metadata", "another format"): lambda t: load_distilled(_artifact(t, _good_tensors(), {"format": "other"})),
    ("metadata", "factor not a number"): lambda t: load_distilled(_artifact(t, _good_tensors(), {"factor": "x"})),
    ("metadata", "factor zero"): lambda t: load_distilled(_artifact(t, _good_tensors(), {"factor": 0})),
    ("metadata", "dataset not a mapping"): lambda t: load_distilled(_artifact(t, _good_tensors(), {"dataset": 3})),
    ("metadata", "binary"): lambda t: load_distilled(_binary_metadata(t)),
    # config.yaml
    ("config", "syntax error"): lambda t: _config(t, "seed: [unclosed"),
    ("config", "python tag"): lambda t: _config(t, f"seed: !!python/object/apply:os.system ['touch {t / MARKER}']"),
    ("config", "a list"): lambda t: _config(t, "- 1\n- 2\n"),
    ("config", "unknown key"): lambda t: _config(t, "synth: {nope: 1}\n"),
    ("config", "bad value"): lambda t: _config(t, "synth: {ipc: many}\n"),
    ("config", "section not a mapping"): lambda t: _config(t, "synth: 3\n"),
    ("config", "not utf-8"): lambda t: (write(t, "run/config.yaml", b"seed: 1\n\xff\xfe"),
                                        run_config(RunDir(t / "run"))),
    # checkpoints
    ("checkpoint", "empty"): lambda t: _checkpoint(t, b""),
    ("checkpoint", "garbage"): lambda t: _checkpoint(t, os.urandom(2048)),
    ("checkpoint", "truncated"): lambda t: _checkpoint(t, _valid_checkpoint(t)[:300]),
    ("checkpoint", "flipped payload byte"): lambda t: _checkpoint(t, _flip(_valid_checkpoint(t), -400)),
    ("checkpoint", "foreign torch file"): lambda t: _checkpoint(t, _torch_bytes({"completed": 1})),
    ("checkpoint", "older dreamdd, unverifiable"): lambda t: _checkpoint(t, _torch_bytes({"completed": 1,
                                                                                        "images": torch.zeros(1)})),
    ("checkpoint", "os.system pickle"): lambda t: _checkpoint(t, pickle.dumps({"completed": _Boom(t / MARKER)})),
    ("checkpoint", "envelope with a hostile payload"): lambda t: _checkpoint(t, _envelope(
        pickle.dumps({"completed": _Boom(t / MARKER)}))),
}


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _st_tensors_only(**tensors):
    from safetensors.torch import save
    return save(tensors)


def _good_tensors():
    return _st_tensors(torch.zeros(2, 1, 8, 8), torch.tensor([0, 1]))


def _binary_metadata(tmp):
    folder = _artifact(tmp, _good_tensors())
    (folder / "metadata.json").write_bytes(b"\xff\xfe\x00garbage")
    return folder


def _envelope(payload: bytes) -> bytes:
    import hashlib
    return _torch_bytes({"format": "dreamdd-checkpoint", "version": 1, "sha256": hashlib.sha256(payload).hexdigest(),
                         "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8)})


@pytest.mark.parametrize("reader, case", list(CASES), ids=[f"{r}: {c}" for r, c in CASES])
def test_a_crafted_file_is_refused_with_one_message(tmp_path, reader, case):
    with pytest.raises(DreamddError):
        CASES[reader, case](tmp_path)
    assert not (tmp_path / MARKER).exists()


def test_every_reader_is_in_the_table():
    readers_tried = {reader for reader, _ in CASES}
    assert readers_tried == {"idx", "cifar", "svhn", "images", "npz", "npz set", "pt", "safetensors", "metadata",
                             "config", "checkpoint"}
    print(f"hostile inputs: {len(CASES)} cases over {len(readers_tried)} readers")


def test_a_lying_gzip_idx_header_is_refused_before_inflating(tmp_path, monkeypatch):
    """The header promises 240 MB inside a 1 KB file: refused without reading the body."""
    path = write(tmp_path, "a.gz", gzip.compress(_idx([60000, 2000, 2000]) + b"\0" * 1000))
    reads = []
    real = gzip.GzipFile.read

    def counting(self, size=-1):
        reads.append(size)
        return real(self, size)
    monkeypatch.setattr(gzip.GzipFile, "read", counting)
    with pytest.raises(DreamddError, match="cannot hold"):
        readers.read_idx(path)
    assert all(0 <= size <= 12 for size in reads)


def test_image_folder_labels_come_from_class_names(tmp_path):
    """Folder 0 missing and folder 10 beside 2: labels are the names, not sorted positions (digits: '0'..'9')."""
    for name in ("2", "5", "9"):
        write(tmp_path / "set", f"{name}/a.png", _png(int(name)))
    d = load_source(tmp_path / "set", "digits", [str(i) for i in range(10)])
    assert sorted(d.labels.tolist()) == [2, 5, 9]
    write(tmp_path / "set", "10/a.png", _png(10))
    with pytest.raises(DreamddError, match="neither"):
        load_source(tmp_path / "set", "digits", [str(i) for i in range(10)])


def test_evaluate_labels_an_image_folder_by_class_name(tmp_path):
    from dreamdd.api import _prepare
    for name in ("1", "5", "8"):
        write(tmp_path / "set", f"{name}/a.png", _png(int(name)))
    distilled, data, _ = _prepare(tmp_path / "set", "digits", None, None, None, None, None)
    assert sorted(distilled.labels.tolist()) == [1, 5, 8]


EVALUATED = {"pt": "s.pt", "npz set": "s.npz", "safetensors": "a", "metadata": "a"}


@pytest.mark.parametrize("reader, case", [k for k in CASES if k[0] in EVALUATED],
                         ids=[f"{r}: {c}" for r, c in CASES if r in EVALUATED])
def test_dreamdd_evaluate_on_a_crafted_file_is_one_message_and_exit_2(tmp_path, capsys, reader, case):
    from dreamdd.cli import main
    with pytest.raises(DreamddError):
        CASES[reader, case](tmp_path)           # builds the file
    code = main(["evaluate", str(tmp_path / EVALUATED[reader]), "--dataset", "digits", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("dreamdd: error:") and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / MARKER).exists()


# ---- mutations of valid files: each reader either reads the file or refuses it with one DreamddError -----------

def _valid_files(tmp: Path) -> dict[str, tuple[bytes, object]]:
    """reader -> (a valid file's bytes, a function reading a file of those bytes at tmp)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 8, 8), dtype=np.uint8)
    artifact = _st_tensors(torch.rand(2, 1, 8, 8), torch.tensor([0, 1]))
    cifar = pickle.dumps({b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [0, 1]}, protocol=2)
    return {
        "idx": (_idx([6, 8, 8], images.tobytes()), lambda p: readers.read_idx(p)),
        "idx.gz": (gzip.compress(_idx([6, 8, 8], images.tobytes())), lambda p: readers.read_idx(p)),
        "cifar": (cifar, lambda p: readers.read_cifar_batch(p)),
        "npz": (_npz_bytes(x_train=images, y_train=np.arange(6) % 2, x_test=images[:2], y_test=[0, 1]),
                lambda p: readers.read_npz(p)),
        "npz set": (_npz_bytes(images=images, labels=np.arange(6) % 2), lambda p: load_source(p, "digits")),
        "pt": (_torch_bytes({"images": torch.rand(2, 1, 8, 8), "labels": torch.tensor([0, 1])}),
               lambda p: load_source(p, "digits")),
        "png": (_png(7), lambda p: readers.read_class_folders(p.parent.parent)),
        "safetensors": (artifact, lambda p: load_distilled(p)),
        "checkpoint": (_valid_checkpoint(tmp), lambda p: RunDir(p.parent).load_checkpoint()),
        "svhn": (_mat_bytes(X=rng.integers(0, 256, (32, 32, 3, 2), dtype=np.uint8), y=np.array([[1], [10]])),
                 lambda p: readers.read_svhn_mat(p)),
        "metadata": (json.dumps({"format": "dreamdd-distilled", "format_version": 1, "factor": 1,
                                 "dataset": {"num_classes": 10}, "split": {"dataset": "digits"}}).encode(),
                     lambda p: load_distilled(p.parent)),
        "config": (dump_yaml(Config()).encode(), lambda p: run_config(RunDir(p.parent))),
    }


def _mat_bytes(**variables) -> bytes:
    import scipy.io
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables)
    return buffer.getvalue()


_NAMES = {"idx": "a.idx", "idx.gz": "a.gz", "cifar": "data_batch_1", "npz": "a.npz", "npz set": "s.npz",
          "pt": "s.pt", "png": "set/0/a.png", "safetensors": "a/distilled.safetensors",
          "checkpoint": "run/checkpoint.pt", "svhn": "train_32x32.mat", "metadata": "a/metadata.json",
          "config": "run/config.yaml"}


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    kind = rng.integers(3)
    at = int(rng.integers(len(data)))
    if kind == 0:
        return data[:at]                                            # cut off
    if kind == 1:
        out = bytearray(data)
        out[at] ^= int(rng.integers(1, 256))                         # a flipped byte
        return bytes(out)
    return data[:at] + rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes() + data[at:]


def _fuzz(tmp_path, reader: str, mutations: int) -> int:
    """Read `mutations` damaged copies of a valid file; return how many were refused (the rest read fine)."""
    data, read = _valid_files(tmp_path)[reader]
    rng = np.random.default_rng(zlib.crc32(reader.encode()))
    refused = 0
    for i in range(mutations):
        path = write(tmp_path / f"m{i}", _NAMES[reader], _mutate(data, rng))
        if reader == "safetensors":   # metadata without a checksum, so that the parser itself meets the damage
            (path.parent / "metadata.json").write_text(json.dumps({"format_version": 1, "factor": 1}))
        if reader == "metadata":
            (path.parent / "distilled.safetensors").write_bytes(_good_tensors())
        try:
            read(path)
        except DreamddError:
            refused += 1
    assert not (tmp_path / MARKER).exists()
    return refused


READERS = ["idx", "idx.gz", "cifar", "svhn", "npz", "npz set", "pt", "png", "safetensors", "metadata", "config",
           "checkpoint"]


@pytest.mark.parametrize("reader", READERS)
def test_damaged_copies_of_valid_files_are_read_or_refused_never_crash(tmp_path, reader):
    _fuzz(tmp_path, reader, 8)


@pytest.mark.slow
@pytest.mark.parametrize("reader", READERS)
def test_many_damaged_copies_are_read_or_refused_never_crash(tmp_path, reader):
    refused = _fuzz(tmp_path, reader, 300)
    print(f"{reader}: 300 damaged copies, {refused} refused, {300 - refused} read")
