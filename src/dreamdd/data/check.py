"""`dreamdd datasets --check NAME`: a dataset's layout, counts per class and split, missing, duplicate or unknown
classes, unreadable files and class order against the pinned lists, each problem with how to fix it."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DreamddError
from .imagenet import Layout, Listing
from .imaging import decode
from .store import decoding_pool
from .subsets import imagenet_classes, subsets


@dataclass
class CheckReport:
    name: str
    lines: list[str] = field(default_factory=list)  # what was found
    problems: list[str] = field(default_factory=list)  # what is wrong, each with its fix

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        out = [f"{self.name}:"] + [f"  {line}" for line in self.lines]
        out += [f"  PROBLEM: {p}" for p in self.problems]
        out.append(f"  {'OK' if self.ok else f'{len(self.problems)} problem(s)'}")
        return "\n".join(out)


def _readable(path: str) -> str | None:
    try:
        decode(path, None)
    except DreamddError as e:
        return str(e)
    return None


def _unreadable(files: list[Path], workers: int, quiet: bool) -> list[str]:
    from tqdm.auto import tqdm

    names = [str(f) for f in files]
    bar = tqdm(total=len(names), unit="img", desc="decoding every image", disable=quiet, dynamic_ncols=True)
    errors = []
    pool = None
    if workers > 1:
        pool = decoding_pool(workers)
    try:
        results = pool.map(_readable, names, chunksize=64) if pool is not None else map(_readable, names)
        for error in results:
            bar.update(1)
            if error is not None:
                errors.append(error)
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return errors


def _pinned(layout: Layout, folder: Path, report: CheckReport) -> None:
    """Class folders against the pinned list: missing and unknown wnids, for ImageNet and its subsets."""
    train = folder / "train"
    if not train.is_dir():
        return
    present = sorted(p.name for p in train.iterdir() if p.is_dir() and not p.name.startswith("."))
    pinned = imagenet_classes()
    wanted = sorted(layout.wnids) if layout.wnids is not None else sorted(pinned)
    missing = [w for w in wanted if w not in present]
    if missing:
        report.problems.append(f"{len(missing)} of the {len(wanted)} classes have no folder in {train}: "
                               f"{', '.join(missing[:50])}{' ...' if len(missing) > 50 else ''}; restore them from the "
                               f"ImageNet archive")
    unknown = [w for w in present if w not in pinned]
    if unknown:
        report.problems.append(f"{train} has folders that are not ImageNet-1K wnids: {', '.join(unknown[:20])}"
                               f"{' ...' if len(unknown) > 20 else ''}; remove or rename them")


def _counts(listing: Listing, report: CheckReport) -> None:
    for split in ("train", "test"):
        counts = listing.counts(split)
        role = "train (the validation split is carved from it)" if split == "train" else "test"
        report.lines.append(f"{split}: {sum(counts)} images, {min(counts)}..{max(counts)} per class ({role})")
        empty = [w for w, n in zip(listing.wnids, counts) if n == 0]
        if empty:
            report.problems.append(f"{len(empty)} classes have no {split} images: {', '.join(empty[:20])}"
                                   f"{' ...' if len(empty) > 20 else ''}; restore them from the original archive")


def _order(layout: Layout, listing: Listing, report: CheckReport) -> None:
    first = ", ".join(f"{i}={w} ({n})" for i, (w, n) in enumerate(zip(listing.wnids[:3], listing.names[:3])))
    report.lines.append(f"class order: sorted wnids: {first}, ...")
    if listing.wnids != sorted(listing.wnids) or len(set(listing.wnids)) != len(listing.wnids):
        report.problems.append("class order is not the sorted, duplicate-free wnid list; report this as a bug")
    if layout.kind == "tiny":
        if len(listing.wnids) != 200:
            report.lines.append(f"note: wnids.txt lists {len(listing.wnids)} classes, the original TinyImageNet 200; "
                                f"these are used as listed")
        return
    pinned = sorted(layout.wnids) if layout.wnids is not None else sorted(imagenet_classes())
    if listing.wnids == pinned:
        source = next((s.source for s in subsets().values() if s.name == layout.name), "ImageNet-1K's 1000 wnids")
        report.lines.append(f"classes match the pinned list ({source})")


def check(name: str, root: str | os.PathLike = "data", workers: int | None = None, quiet: bool = True,
          decode_all: bool = True) -> CheckReport:
    """Check one registered dataset under `root`; decode_all also decodes every image file (slow on ImageNet)."""
    from . import registry

    spec = registry._spec(name)
    if spec is None:
        raise registry._unknown(name, Path(name).expanduser())
    report = CheckReport(spec.name)
    root = Path(root).expanduser()
    if spec.layout is None:
        return _check_loaded(spec.name, root, report)
    layout = spec.layout
    folder = layout.locate(root)
    if folder is None:
        report.problems.append(f"no {spec.name} files found: expected {layout.expected(root)}; put the dataset "
                               f"there or pass the folder that holds it with --data-root")
        return report
    report.lines.append(f"layout: {folder}")
    if layout.kind == "imagenet":
        _pinned(layout, folder, report)
    try:
        listing = layout.listing(folder)
    except DreamddError as e:
        if not report.problems:   # the pinned-list check already names missing or unknown class folders
            report.problems.append(str(e))
        return report
    report.lines.append(f"classes: {len(listing.wnids)}" + (f" ({listing.note})" if listing.note else ""))
    _counts(listing, report)
    _order(layout, listing, report)
    if decode_all:
        files = [f for split in listing.splits.values() for files in split for f in files]
        errors = _unreadable(files, max(1, workers or os.cpu_count() or 1), quiet)
        report.lines.append(f"decoded {len(files)} files: {len(files) - len(errors)} readable")
        for error in errors[:20]:
            report.problems.append(error)
        if len(errors) > 20:
            report.problems.append(f"... and {len(errors) - 20} more unreadable files")
    return report


def _check_loaded(name: str, root: Path, report: CheckReport) -> CheckReport:
    """Array datasets (MNIST, CIFAR, SVHN, digits): read them without downloading and count."""
    from .registry import load

    try:
        data = load(name, root=root, download=False, val_size=0)
    except DreamddError as e:
        report.problems.append(str(e))
        return report
    report.lines.append(f"source: {data.source}")
    for split, bank in (("train", data.train), ("test", data.test)):
        counts = bank.class_counts()
        report.lines.append(f"{split}: {len(bank)} images, {min(counts)}..{max(counts)} per class")
    report.lines.append(f"classes: {data.info.num_classes} ({', '.join(data.info.class_names[:5])}, ...)")
    return report
