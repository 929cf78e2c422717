"""Geometry and tensors shared by the datasets: square crops (fractions of the square, so a pose map stored at
another resolution gets the same window as its frame) and image -> tensor conversion."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from magicpose.media import square_region

RESIZE_MODES = ("crop", "pad")


@dataclass(frozen=True)
class SquareCrop:
    """A square window of the square-ified image (centre crop or pad), as fractions of its side.

    Fractions rather than pixels, so a pose map stored at another resolution (same aspect ratio) gets
    exactly the same window as its frame.
    """

    left: float = 0.0
    top: float = 0.0
    side: float = 1.0

    @classmethod
    def random(cls, rng: np.random.Generator, scale: tuple[float, float] | None) -> SquareCrop:
        """RandomResizedCrop with ratio 1: area fraction uniform in `scale`, position uniform."""
        if scale is None:
            return cls()
        side = math.sqrt(rng.uniform(scale[0], scale[1]))
        return cls(left=rng.uniform(0.0, 1.0 - side), top=rng.uniform(0.0, 1.0 - side), side=side)


def transform_image(image: Image.Image, size: int, mode: str, crop: SquareCrop) -> Image.Image:
    """Square the image (centre crop, or pad with black), take the `crop` window, resize to `size`.

    With the full window this is exactly `media.to_square`, which inference uses. The square is cut
    out first so the bilinear filter never reads pixels outside it (train/test consistency).
    """
    square = square_region(image, mode)
    side = square.width
    x0, y0 = crop.left * side, crop.top * side
    box = (x0, y0, x0 + crop.side * side, y0 + crop.side * side)
    return square.resize((size, size), Image.Resampling.BILINEAR, box=box)


def to_tensor(image: Image.Image, signed: bool) -> torch.Tensor:
    """(3, H, W) float: [-1, 1] when `signed` (images), else [0, 1] (pose maps, as ControlNet expects).

    The arithmetic is done in numpy on purpose: torch's intra-op thread pool makes these tiny
    elementwise ops about 10x slower in the main process of a small machine (num_workers=0).
    """
    values = np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1), dtype=np.float32)
    if signed:
        values *= 1.0 / 127.5
        values -= 1.0
    else:
        values *= 1.0 / 255.0
    return torch.from_numpy(values)


def check_size_and_mode(size: int, resize_mode: str) -> None:
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    if resize_mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}")
