"""Decoding one image file to uint8 (C, H, W): shorter side resized then center-cropped, as torchvision's
Resize(size) + CenterCrop(size) (and IDC's ImageNet preprocessing), with Pillow's antialiased resampling."""
from __future__ import annotations

import os

import numpy as np

from ..errors import DreamddError


def fit(im, size: tuple[int, int]):
    """A PIL image scaled (bilinear, antialiased) so it covers (H, W), then center-cropped to exactly (H, W).

    For a square size this is "resize the shorter side to size, then center-crop"; no image is squashed.
    """
    from PIL import Image

    h, w = int(size[0]), int(size[1])
    width, height = im.size
    if (height, width) == (h, w):
        return im
    scale = max(h / height, w / width)
    new_w, new_h = max(w, round(width * scale)), max(h, round(height * scale))
    if (new_w, new_h) != (width, height):
        im = im.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - w) // 2, (new_h - h) // 2
    return im.crop((left, top, left + w, top + h))


def decode(path: str | os.PathLike, size: tuple[int, int] | None, mode: str = "RGB") -> np.ndarray:
    """The image at `path` as uint8 (C, H, W) in `mode` (RGB or L), fitted to `size` when given."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            if size is not None:
                im = fit(im, size)
            a = np.asarray(im, dtype=np.uint8)
    except Image.DecompressionBombError as e:
        raise DreamddError(f"{path} declares more pixels than Pillow accepts ({e}); it is not a photograph of a "
                           f"dataset (a decompression bomb?): remove it") from e
    except Exception as e:  # damaged data surfaces only when decoding, as any error (a broken PNG chunk: SyntaxError)
        raise DreamddError(f"{path} could not be decoded as an image ({e}); remove or replace it") from e
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
