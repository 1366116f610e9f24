"""The prepared store: an image-layout dataset decoded once into class-sorted uint8 files plus a JSON index.

<root>/prepared/<name>-<H>x<W>/ holds train.u8 and test.u8 (raw (N, C, H, W) uint8, class after class) and
index.json (classes, per-class counts and offsets, image size, the source listing's checksum, and which classes
are written). Preparing goes one class at a time, decoding over worker processes, and records the finished
classes in index.json every few seconds (after syncing their pixels), so an interrupted run resumes there. Reading takes rows with positioned reads (os.pread),
so a run holds only the images a step touches: the pages stay in the operating system's file cache instead of
the process (a memory map would count every page a run ever touched, e.g. a clustered class, as its own).
"""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DreamddError
from .imagenet import Layout, Listing
from .imaging import decode

VERSION = 1
INDEX = "index.json"
SPLITS = ("train", "test")
SAVE_EVERY = 2.0  # seconds between index updates while preparing (and at the end)
CHANNELS = 3  # ImageNet-style datasets are stored as RGB (grayscale and CMYK JPEGs are converted)


def store_dir(root: str | os.PathLike, name: str, size: tuple[int, int]) -> Path:
    return Path(root).expanduser() / "prepared" / f"{name}-{size[0]}x{size[1]}"


def prepared(root: str | os.PathLike, name: str) -> list[Path]:
    """The complete stores of dataset `name` under root/prepared/, one per image size."""
    folder = Path(root).expanduser() / "prepared"
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob(f"{name}-*x*")):
        try:
            index = read_index(path)
        except DreamddError:
            continue
        if index is not None and index.get("complete") and index.get("dataset") == name:
            found.append(path)
    return found


class StoreSplit:
    """One split of a store: rows of uint8 (C, H, W) images read by position, never all at once."""

    def __init__(self, path: Path, shape: tuple[int, int, int, int]):
        self.path, self.shape = path, shape
        self.row_bytes = int(np.prod(shape[1:]))
        self._fd: int | None = None
        expected = shape[0] * self.row_bytes
        if not path.is_file() or path.stat().st_size != expected:
            raise DreamddError(f"{path} is missing or not {expected} bytes; the store is damaged: delete "
                               f"{path.parent} and run `dreamdd prepare` again")

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self) -> dict[str, Any]:  # worker processes open their own descriptor
        return {"path": self.path, "shape": self.shape, "row_bytes": self.row_bytes, "_fd": None}

    def _descriptor(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The images at `rows` (any order, repeats allowed) as a new (n, C, H, W) uint8 array."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8)
        if not len(rows):
            return out
        if rows.min() < 0 or rows.max() >= self.shape[0]:
            raise IndexError(f"rows outside 0..{self.shape[0] - 1}")
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        flat = out.reshape(len(rows), -1)
        fd = self._descriptor()
        start = 0
        breaks = np.flatnonzero(np.diff(sorted_rows) != 1) + 1  # runs of consecutive rows: one read each
        for stop in [*breaks.tolist(), len(rows)]:
            first, n = int(sorted_rows[start]), stop - start
            data = os.pread(fd, n * self.row_bytes, first * self.row_bytes)
            flat[order[start:stop]] = np.frombuffer(data, dtype=np.uint8).reshape(n, -1)
            start = stop
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()


@dataclass
class Store:
    """A complete prepared store: its index and one StoreSplit per split."""
    path: Path
    index: dict[str, Any]
    train: StoreSplit
    test: StoreSplit

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.index["image_size"])  # type: ignore[return-value]

    def rows(self, split: str, classes: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """The store rows of `classes` (class positions in this store) and their labels 0..len(classes)-1."""
        counts, offsets = self.index["splits"][split]["counts"], self.index["splits"][split]["offsets"]
        rows = [np.arange(offsets[c], offsets[c] + counts[c], dtype=np.int64) for c in classes]
        labels = [np.full(counts[c], k, dtype=np.int64) for k, c in enumerate(classes)]
        return (np.concatenate(rows) if rows else np.zeros(0, np.int64),
                np.concatenate(labels) if labels else np.zeros(0, np.int64))


def read_index(path: Path) -> dict[str, Any] | None:
    file = path / INDEX
    if not file.is_file():
        return None
    try:
        index = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise DreamddError(f"{file} is not readable JSON ({e}); delete {path} and run `dreamdd prepare` again") from e
    if not isinstance(index, dict) or index.get("version") != VERSION:
        raise DreamddError(f"{file} is not a version-{VERSION} dreamdd store index; delete {path} and run "
                           f"`dreamdd prepare` again")
    return index


def open_store(path: Path) -> Store | None:
    """The complete store in `path`, or None when there is none (or it is unfinished)."""
    index = read_index(path)
    if index is None or not index.get("complete"):
        return None
    h, w = index["image_size"]
    splits = {s: StoreSplit(path / index["splits"][s]["file"], (sum(index["splits"][s]["counts"]),
                                                                  index["channels"], h, w)) for s in SPLITS}
    return Store(path, index, splits["train"], splits["test"])


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _ignore_interrupt() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle (and resume from)


def decoding_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes for decoding (forked where possible: they need only Pillow and numpy)."""
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_ignore_interrupt)


def _sync(path: Path, index: dict[str, Any]) -> None:
    """Make the written images durable, then record them in the index (so "done" never precedes the data)."""
    for s in SPLITS:
        fd = os.open(path / index["splits"][s]["file"], os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    _write_json(path / INDEX, index)


def _decode_job(job: tuple[str, tuple[int, int]]) -> np.ndarray:
    return decode(job[0], job[1])


def _new_index(listing: Listing, size: tuple[int, int], checksum: str) -> dict[str, Any]:
    splits = {}
    for s in SPLITS:
        counts = listing.counts(s)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int).tolist() if counts else []
        splits[s] = {"file": f"{s}.u8", "counts": counts, "offsets": offsets, "done": [False] * len(counts)}
    return {"version": VERSION, "dataset": listing.name, "image_size": list(size), "channels": CHANNELS,
            "mode": "RGB", "resize": "shorter side to size (bilinear, antialiased), then center crop",
            "class_ids": listing.wnids, "class_names": listing.names, "splits": splits,
            "source": {"folder": str(listing.folder), "listing_sha256": checksum, "note": listing.note},
            "complete": False, "created": time.strftime("%Y-%m-%d %H:%M:%S")}


def _index_to_continue(path: Path, listing: Listing, size: tuple[int, int]) -> dict[str, Any]:
    """The index of the store in `path`: the one there when it was made from the same source listing at this size
    (complete, or with the classes done so far), else a new one with its split files allocated."""
    checksum = listing.checksum()
    path.mkdir(parents=True, exist_ok=True)
    index = read_index(path)
    if index is not None and (index["source"]["listing_sha256"] != checksum or list(index["image_size"]) != list(size)):
        index = None  # the source changed: start over
    if index is None:
        index = _new_index(listing, size, checksum)
        for s in SPLITS:
            with open(path / index["splits"][s]["file"], "wb") as f:
                f.truncate(sum(index["splits"][s]["counts"]) * CHANNELS * size[0] * size[1])
        _write_json(path / INDEX, index)
    return index


def prepare(layout: Layout, root: str | os.PathLike, size: tuple[int, int], workers: int | None = None,
            quiet: bool = True, listing: Listing | None = None) -> Store:
    """Decode `layout`'s dataset under `root` into its store (resuming an unfinished one); return it opened.

    A complete store whose source listing is unchanged is returned as is; a changed source is prepared anew.
    """
    from tqdm.auto import tqdm

    root = Path(root).expanduser()
    if listing is None:
        folder = layout.locate(root)
        if folder is None:
            raise DreamddError(f"{layout.name} files not found: expected {layout.expected(root)}. Fix: put the "
                               f"dataset there, or choose the folder that holds it with --data-root")
        listing = layout.listing(folder)
    path = store_dir(root, layout.name, size)
    index = _index_to_continue(path, listing, size)
    if index.get("complete"):
        return open_store(path)  # type: ignore[return-value]
    todo = [(s, c) for s in SPLITS for c, done in enumerate(index["splits"][s]["done"]) if not done]
    total = sum(index["splits"][s]["counts"][c] for s, c in todo)
    workers = max(1, int(workers if workers is not None else (os.cpu_count() or 1)))
    row_bytes = CHANNELS * size[0] * size[1]
    bar = tqdm(total=total, unit="img", desc=f"prepare {layout.name} {size[0]}x{size[1]}", disable=quiet,
               dynamic_ncols=True)
    pool = None
    if workers > 1:
        pool = decoding_pool(workers)
    last_saved = time.monotonic()
    try:
        for split, c in todo:
            files = listing.splits[split][c]
            jobs = [(str(f), tuple(size)) for f in files]
            images = pool.map(_decode_job, jobs, chunksize=16) if pool is not None else map(_decode_job, jobs)
            offset = index["splits"][split]["offsets"][c]
            with open(path / index["splits"][split]["file"], "r+b") as out:
                out.seek(offset * row_bytes)
                for image in images:
                    out.write(image.tobytes())
                    bar.update(1)
            index["splits"][split]["done"][c] = True
            if time.monotonic() - last_saved >= SAVE_EVERY:  # classes written since are redone after a crash
                _sync(path, index)
                last_saved = time.monotonic()
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        _sync(path, index)  # also when interrupted: the classes finished so far are kept
    index["complete"] = True
    _sync(path, index)
    return open_store(path)  # type: ignore[return-value]
