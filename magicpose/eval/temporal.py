"""Temporal consistency: the flicker error of a predicted video against its ground truth. Needs no weights.

Not one of DisCo's metrics (nor MagicPose's): ours, so `disco` and `fixed` report the same value.

Definition. Frames are `T H W 3` RGB, uint8 read as x / 255 (floats are taken as already in [0, 1]). For each
pair of consecutive frames (t−1, t) of one video:

    d_pred = pred_t − pred_{t−1},   d_gt = gt_t − gt_{t−1}            (float, per pixel and channel, in [−1, 1])
    flicker(t)     = mean |d_pred − d_gt|                              (over the region's pixels and the 3 channels)
    energy_pred(t) = mean |d_pred|,   energy_gt(t) = mean |d_gt|       (the raw temporal change of each side)

Pooling: a video's value is the mean over its pairs; the reported value is the mean over videos (every video
weighs the same, however long). `energy_ratio` = pooled `energy_pred` / pooled `energy_gt` (None when the
ground truth never changes). A video with fewer than two frames has no pair and is left out.

Reading it: `flicker` is 0 when the prediction changes exactly as the ground truth does, even if every frame is
off by the same amount (a constant colour shift has L1 > 0 but flicker 0); it is the L1 of the temporal
derivative. `energy_ratio` tells the two ways to be wrong apart: ≫ 1 the prediction changes more than the real
video (flicker, noise that is redrawn per frame); ≪ 1 it changes less (static or blurry frames, frozen motion).

Regions (when person masks are given, `T H W` bool): for the pair (t−1, t) the *figure* is every pixel that is
the person in either frame (mask_{t−1} | mask_t: where the motion is) and the *background* every other pixel;
`frame` is every pixel. A pair whose region is empty is left out of that region's mean.

Which frames are consecutive is the caller's business: `magicpose evaluate` pairs a frame with its successor by
stem (the next frame number; a gap breaks the pair) as it builds FID-VID/FVD clips; the toy world uses the order of
the frames it evaluated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Region = Literal["frame", "figure", "background"]
REGIONS: tuple[Region, ...] = ("frame", "figure", "background")
# The three per-pair terms, in the order `pair_terms` returns them.
TERMS = ("flicker", "energy_pred", "energy_gt")
SETTING = (
    "ours, not DisCo's: per pair of consecutive frames (next frame number; a gap breaks the pair) "
    "mean |(pred_t - pred_t-1) - (gt_t - gt_t-1)| over pixels and channels on [0, 1] RGB after --size resizing; "
    "mean over a video's pairs, then over videos; flicker_energy_pred / _gt = mean |pred_t - pred_t-1| / "
    "|gt_t - gt_t-1| pooled the same way, flicker_energy_ratio = their quotient (>1 flickers, <1 static)"
)


def to_unit(frames: np.ndarray) -> np.ndarray:
    """float64 in [0, 1]: uint8 / 255; floats as they are (assumed [0, 1])."""
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames.astype(np.float64) / 255.0
    return frames.astype(np.float64)


def consecutive_pairs(length: int) -> list[tuple[int, int]]:
    """(t−1, t) for every frame but the first: the pairs of a video whose frames are all consecutive."""
    return [(t - 1, t) for t in range(1, length)]


def region_mask(masks: np.ndarray | None, i: int, j: int, region: Region) -> np.ndarray | None:
    """The pixels of `region` for the pair (i, j); None means every pixel."""
    if region == "frame":
        return None
    if masks is None:
        raise ValueError(f"region {region!r} needs person masks")
    moving = np.asarray(masks[i], bool) | np.asarray(masks[j], bool)
    return moving if region == "figure" else ~moving


def pair_terms(
    pred: np.ndarray,
    gt: np.ndarray,
    pairs: Sequence[tuple[int, int]],
    masks: np.ndarray | None = None,
    region: Region = "frame",
) -> np.ndarray:
    """`n 3` array: (flicker, energy_pred, energy_gt) of each pair whose region is not empty (see the docstring)."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape or pred.ndim != 4 or pred.shape[-1] != 3:
        raise ValueError(f"pred and gt must be two T H W 3 arrays of one shape, got {pred.shape} and {gt.shape}")
    rows = []
    for i, j in pairs:
        d_pred = to_unit(pred[j]) - to_unit(pred[i])
        d_gt = to_unit(gt[j]) - to_unit(gt[i])
        keep = region_mask(masks, i, j, region)
        if keep is not None:
            if not keep.any():
                continue
            d_pred, d_gt = d_pred[keep], d_gt[keep]  # n_pixels 3
        rows.append((np.abs(d_pred - d_gt).mean(), np.abs(d_pred).mean(), np.abs(d_gt).mean()))
    return np.array(rows, np.float64).reshape(-1, len(TERMS))


def video_terms(
    pred: np.ndarray,
    gt: np.ndarray,
    pairs: Sequence[tuple[int, int]] | None = None,
    masks: np.ndarray | None = None,
    region: Region = "frame",
) -> np.ndarray | None:
    """One video's (flicker, energy_pred, energy_gt): means over its pairs (default: all consecutive); None if none."""
    pairs = consecutive_pairs(len(pred)) if pairs is None else pairs
    rows = pair_terms(pred, gt, pairs, masks, region)
    return rows.mean(0) if len(rows) else None


@dataclass(frozen=True)
class Flicker:
    """Pooled temporal scores of a set of videos (means over videos of per-video means over pairs)."""

    flicker: float
    energy_pred: float
    energy_gt: float
    videos: int  # videos with at least one pair

    @property
    def energy_ratio(self) -> float | None:
        """energy_pred / energy_gt: > 1 the prediction changes more than the truth (flicker), < 1 less (static).

        None when the ground truth never changes (or no video has a pair): a JSON null, not a NaN or infinity.
        """
        return self.energy_pred / self.energy_gt if self.energy_gt > 0 else None

    def record(self) -> dict[str, float | int | None]:
        return {"flicker": self.flicker, "energy_pred": self.energy_pred, "energy_gt": self.energy_gt,
                "energy_ratio": self.energy_ratio, "videos": self.videos}  # fmt: skip


def pool_videos(per_video: Sequence[np.ndarray | None]) -> Flicker:
    """Mean over the videos that have a pair (NaN everywhere when none has)."""
    rows = [v for v in per_video if v is not None]
    if not rows:
        return Flicker(float("nan"), float("nan"), float("nan"), 0)
    mean = np.mean(rows, axis=0)
    return Flicker(float(mean[0]), float(mean[1]), float(mean[2]), len(rows))
