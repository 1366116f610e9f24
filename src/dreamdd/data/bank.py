"""ClassBank: one split's images kept once as uint8 with a per-class index, so sampling a class is cheap.

The images are a uint8 tensor in memory, or rows of a prepared store on disk (data/store.py) read per batch.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import DreamddError


PERMUTE_UP_TO = 1 << 17  # sample(): a permutation of up to this many indices is cheap; beyond, indices are drawn


class ClassBank:
    """Images of one split held once as uint8 (N, C, H, W), labels int64 (N,), and a per-class index.

    `images` is a uint8 tensor, or a store split (anything with .shape and .read(rows) -> uint8 array) together
    with `rows`, the store row of each of the bank's images (None: all rows in order).
    """

    def __init__(self, images, labels: torch.Tensor, num_classes: int, rows: torch.Tensor | None = None):
        on_disk = hasattr(images, "read") and len(getattr(images, "shape", ())) == 4
        if rows is None and on_disk:
            rows = torch.arange(images.shape[0])
        if not on_disk and (not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4):
            raise DreamddError(f"ClassBank needs images as a uint8 tensor (N, C, H, W), got "
                               f"{_describe(images)}; convert with (x * 255).round().to(torch.uint8)")
        if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.dim() != 1:
            raise DreamddError(f"ClassBank needs labels as an int64 tensor (N,), got {_describe(labels)}; "
                               f"convert with labels.long().flatten()")
        count = len(rows) if on_disk else len(images)
        if len(labels) != count:
            raise DreamddError(f"ClassBank got {count} images but {len(labels)} labels; "
                               f"pass one label per image")
        num_classes = int(num_classes)
        if num_classes < 1:
            raise DreamddError(f"ClassBank needs num_classes >= 1, got {num_classes}")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise DreamddError(f"labels must lie in 0..{num_classes - 1}, found {int(labels.min())}.."
                               f"{int(labels.max())}; renumber the classes or raise num_classes")
        self.images = images
        self.rows = rows if on_disk else None
        self.labels = labels
        self.num_classes = num_classes
        # One stable sort gives every class's indices in ascending order.
        order = torch.sort(labels.cpu(), stable=True).indices
        counts = torch.bincount(labels.cpu(), minlength=num_classes)
        self._counts = [int(n) for n in counts]
        self._index = list(torch.split(order, self._counts))

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (f"ClassBank({len(self)} images of {self.image_shape}, {self.num_classes} classes"
                f"{', on disk' if self.rows is not None else ''})")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.images.shape[1:])  # type: ignore[return-value]

    def _check_class(self, c: int) -> int:
        c = int(c)
        if not 0 <= c < self.num_classes:
            raise DreamddError(f"class {c} does not exist: this split has classes 0..{self.num_classes - 1}")
        return c

    def class_indices(self, c: int) -> torch.Tensor:
        """Indices into self.images of class c, ascending (precomputed; do not modify in place)."""
        return self._index[self._check_class(c)]

    def class_size(self, c: int) -> int:
        return self._counts[self._check_class(c)]

    def class_counts(self) -> list[int]:
        return list(self._counts)

    def subset(self, indices: torch.Tensor) -> "ClassBank":
        """The images at `indices` as a bank: copied when in memory, only their row numbers when on disk."""
        indices = torch.as_tensor(indices, dtype=torch.long)
        if self.rows is not None:
            return ClassBank(self.images, self.labels[indices], self.num_classes, rows=self.rows[indices])
        return ClassBank(self.images[indices], self.labels[indices], self.num_classes)

    def uint8(self, indices: torch.Tensor) -> torch.Tensor:
        """The uint8 images at `indices` (N, C, H, W) on the CPU (read from disk for a stored bank)."""
        if self.rows is None:
            return self.images[indices]
        rows = self.rows[torch.as_tensor(indices, dtype=torch.long).cpu()]
        return torch.from_numpy(self.images.read(rows.numpy()))

    def batch(self, indices: torch.Tensor, device: torch.device | str) -> torch.Tensor:
        """Float32 images in [0, 1] on `device`; the uint8 copy is moved first (4x less to transfer)."""
        return self.uint8(indices).to(device).float().div_(255)

    def sample_class(self, c: int, n: int, generator: torch.Generator) -> torch.Tensor:
        """n random indices of class c without replacement (all of them, shuffled, if n exceeds the class)."""
        idx = self.class_indices(c)
        perm = torch.randperm(len(idx), generator=generator, device=generator.device).cpu()
        return idx[perm[:max(0, int(n))]]

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n random indices over the whole split without replacement (at most len(self)).

        Small splits take a prefix of a permutation; large ones draw indices and redraw repeats, so a step
        never builds a permutation of a whole ImageNet-sized split.
        """
        n = min(max(0, int(n)), len(self))
        if len(self) <= PERMUTE_UP_TO or 2 * n >= len(self):
            return torch.randperm(len(self), generator=generator, device=generator.device).cpu()[:n]
        picked = np.zeros(0, dtype=np.int64)
        while len(picked) < n:
            draw = torch.randint(len(self), (n - len(picked),), generator=generator, device=generator.device)
            picked = np.concatenate([picked, draw.cpu().numpy()])
            _, first = np.unique(picked, return_index=True)
            picked = picked[np.sort(first)]  # first occurrences, in drawing order
        return torch.from_numpy(picked)


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"{x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__
