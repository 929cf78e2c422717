"""Toy-world metrics: does a generated frame follow the pose, and does it look like the reference?

Plain functions on numpy arrays (frames are `H W 3` uint8 RGB, or `T H W 3` for a clip; masks are bool `H W`
or `T H W`). Everything is measured against the ground-truth frames of held-out toy videos:

* pose following: `mask_iou(figure_mask(generated, background), true_mask)`. The toy renderer draws hard-edged
  shapes over a background it can re-render from the video's identity (`toy_world.json`), so the figure is
  every pixel whose colour is far from that background (`figure_mask`). On ground-truth frames this extractor
  matches the true masks almost exactly (see `evaluate_toy(...)["mask_extractor_iou"]`); on generated frames it
  measures where the model painted something other than the reference's background.
* appearance: `l1`, `psnr`, `ssim` (the TikTok protocol's metrics, `magicpose.eval.metrics`, in their
  `fixed` form: L1 on [0, 1], PSNR from a float MSE, grayscale SSIM with a 7x7 window) and
  `colour_histogram_distance` and `colour_distance` (per-channel Wasserstein-1), each on the whole frame and on
  the figure only (the generated frame's extracted figure against the true one: do the clothes, skin and hair have
  the reference's colours?).

`evaluate_toy` compares the generated frames with two baselines: *copy the reference frame* (the reference's
true mask and pixels as the prediction of every target frame) and *wrong reference* (the same pose sequence
generated from another identity's reference). A model that learned pose following beats the first on mask IoU;
one whose appearance comes from the reference has a lower colour distance than the second.

Temporal consistency (`toy_flicker`, `evaluate_toy(...)["flicker"]`): the flicker error of
`magicpose.eval.temporal` (mean |d_pred − d_gt| of consecutive frames' differences on [0, 1], mean over a video's
pairs, then over videos) and the temporal energies mean |d_pred|, mean |d_gt| and their ratio, for the whole frame
and split by the *true* person masks: figure = the person in either frame of the pair, background = the rest.
Consecutive means consecutive among the evaluated frames (the quickstart's are `eval_stride` source frames
apart). *Copy the reference* is a static video: its flicker equals the ground truth's energy (it never moves).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from magicpose.eval import metrics as protocol_metrics
from magicpose.eval import temporal
from magicpose.toy.render import render_background
from magicpose.toy.world import Background

PSNR_CAP = protocol_metrics.PSNR_CAP  # dB: identical frames (infinite PSNR) count as this, so means stay finite
# RGB distance (0-255 scale) from the background above which a pixel is figure: chosen per frame by Otsu's method
# within this band. The toy world keeps figure colours >= 60 from the background (`MIN_BACKGROUND_DISTANCE`), so
# any threshold in the band segments ground truth exactly; on a generated frame Otsu puts it in the valley between
# the background's colour error and the figure, so a background rendered a little off is not read as figure.
FIGURE_THRESHOLD_BAND = (30.0, 58.0)
HIST_BINS = 8  # per channel: 8^3 colour cells

METRICS = ("mask_iou", "l1", "psnr", "ssim", "colour_distance", "colour_hist", "figure_colour_distance",
           "figure_colour_hist")
LOWER_IS_BETTER = frozenset({"l1", "colour_distance", "colour_hist", "figure_colour_distance", "figure_colour_hist"})


# ----- masks -------------------------------------------------------------------------------------------------
def mask_iou(pred: np.ndarray, true: np.ndarray) -> float:
    """Intersection over union of two bool masks (any shape; two empty masks count as 1)."""
    pred, true = np.asarray(pred, bool), np.asarray(true, bool)
    union = np.logical_or(pred, true).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, true).sum() / union)


def figure_mask(frame: np.ndarray, background: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Bool mask of the pixels whose RGB distance to `background` (same shape, uint8) exceeds a threshold.

    `threshold=None`: Otsu's threshold of this frame's distance map, clipped to `FIGURE_THRESHOLD_BAND`
    (see there); a number: that fixed threshold.
    """
    diff = np.asarray(frame, np.float32) - np.asarray(background, np.float32)
    distance = np.sqrt((diff**2).sum(-1))
    if threshold is None:
        threshold = float(np.clip(otsu_threshold(distance), *FIGURE_THRESHOLD_BAND))
    return distance > threshold


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """The threshold that maximises the between-class variance of `values` (Otsu 1979), on a histogram."""
    values = np.asarray(values, np.float64).ravel()
    hist, edges = np.histogram(values, bins=bins, range=(0.0, max(float(values.max()), 1e-6)))
    p = hist / max(hist.sum(), 1)
    centres = 0.5 * (edges[:-1] + edges[1:])
    w0, m0 = np.cumsum(p), np.cumsum(p * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (m0[-1] * w0 - m0) ** 2 / (w0 * (1.0 - w0))
    between[~np.isfinite(between)] = 0.0
    # an empty valley gives a plateau of equal splits: take its middle, not its first bin
    best = np.flatnonzero(between >= between.max() * (1.0 - 1e-9))
    return float(edges[best + 1].mean())


def toy_background(identity: dict[str, Any], size: int) -> np.ndarray:
    """The `size` x `size` RGB background of a toy identity (an entry of `toy_world.json`), re-rendered."""
    bg = dict(identity["background"])
    bg["colour"], bg["colour2"] = tuple(bg["colour"]), tuple(bg["colour2"])
    return np.array(render_background(Background(**bg), size)[..., :3])


def toy_identities(root: str | Path, split: str = "test") -> dict[str, dict[str, Any]]:
    """video name -> identity (as in `toy_world.json`) of one split of a toy dataset."""
    world = json.loads((Path(root) / "toy_world.json").read_text(encoding="utf-8"))
    return {entry["video"]: entry["identity"] for entry in world["splits"][split]}


# ----- image metrics: the TikTok protocol's (`metrics.py`, `fixed` form), on uint8 frames ----------------------
def _uint8(frames: np.ndarray) -> np.ndarray:
    """uint8 as is; [0, 1] floats rounded to 8 bits (the protocol's metrics read 8-bit frames)."""
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames
    return np.clip(np.rint(frames.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def _frames(a: np.ndarray, b: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(`H W 3`, `H W 3`) pairs of one frame (`H W 3`) or a clip (`T H W 3`)."""
    a, b = _uint8(a), _uint8(b)
    if a.ndim == 3:
        return [(a, b)]
    return list(zip(a, b))


def l1(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference on the [0, 1] scale (the protocol's `fixed` L1)."""
    return float(np.mean([protocol_metrics.l1(x, y, "fixed") for x, y in _frames(a, b)]))


def psnr(a: np.ndarray, b: np.ndarray, cap: float = PSNR_CAP) -> float:
    """PSNR in dB (the protocol's `fixed` PSNR, float MSE), at most `cap` (identical frames give `cap`)."""
    values = [protocol_metrics.psnr(x, y, "fixed") for x, y in _frames(a, b)]
    return float(min(cap, np.mean(values)))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of `H W 3` or `T H W 3` frames: the protocol's (grayscale, 7x7 uniform window, skimage)."""
    return float(np.mean([protocol_metrics.ssim(x, y) for x, y in _frames(a, b)]))


def colour_histogram(pixels: np.ndarray, bins: int = HIST_BINS) -> np.ndarray:
    """Normalised 3-D RGB histogram (`bins`^3 cells summing to 1) of `... 3` uint8 pixels (zeros if none)."""
    px = np.asarray(pixels, np.uint8).reshape(-1, 3).astype(np.int64) * bins // 256
    counts = np.bincount((px[:, 0] * bins + px[:, 1]) * bins + px[:, 2], minlength=bins**3).astype(np.float64)
    total = counts.sum()
    return counts / total if total else counts


def colour_histogram_distance(
    a: np.ndarray,
    b: np.ndarray,
    mask_a: np.ndarray | None = None,
    mask_b: np.ndarray | None = None,
    bins: int = HIST_BINS,
) -> float:
    """Total-variation distance (half the L1, in [0, 1]) between the colour histograms of two images.

    With masks, only the masked pixels count (e.g. the figure region of each image). 0: the same colours in
    the same proportions; 1: no colour in common. An empty region against a non-empty one counts as 1.
    """
    pa = np.asarray(a)[np.asarray(mask_a, bool)] if mask_a is not None else np.asarray(a)
    pb = np.asarray(b)[np.asarray(mask_b, bool)] if mask_b is not None else np.asarray(b)
    if pa.size == 0 or pb.size == 0:
        return 0.0 if pa.size == pb.size else 1.0
    return float(0.5 * np.abs(colour_histogram(pa, bins) - colour_histogram(pb, bins)).sum())


def colour_distance(
    a: np.ndarray, b: np.ndarray, mask_a: np.ndarray | None = None, mask_b: np.ndarray | None = None
) -> float:
    """Colour-distribution distance in [0, 1]: per-channel 1-D Wasserstein-1 between the pixel values, / 255,
    averaged over R, G, B.

    Unlike a binned histogram, a colour that is off by a few levels is a few levels away, not in another bin, so
    a slightly noisy or blurred rendering of the right colours scores near 0 and the wrong colours score far.
    With masks, only the masked pixels count; an empty region against a non-empty one counts as 1.
    """
    pa = np.asarray(a)[np.asarray(mask_a, bool)] if mask_a is not None else np.asarray(a)
    pb = np.asarray(b)[np.asarray(mask_b, bool)] if mask_b is not None else np.asarray(b)
    pa, pb = pa.reshape(-1, 3).astype(np.float64), pb.reshape(-1, 3).astype(np.float64)
    if len(pa) == 0 or len(pb) == 0:
        return 0.0 if len(pa) == len(pb) else 1.0
    # W1 between two 1-D empirical distributions = the mean gap between their quantile functions
    q = (np.arange(256) + 0.5) / 256
    gaps = np.abs(np.quantile(pa, q, axis=0) - np.quantile(pb, q, axis=0))  # 256 3
    return float(gaps.mean() / 255.0)


# ----- evaluation --------------------------------------------------------------------------------------------
def frame_metrics(
    pred: np.ndarray, pred_mask: np.ndarray, target: np.ndarray, target_mask: np.ndarray
) -> dict:
    """Every metric of one predicted frame against its ground truth (masks: predicted and true figure)."""
    return {
        "mask_iou": mask_iou(pred_mask, target_mask),
        "l1": l1(pred, target),
        "psnr": psnr(pred, target),
        "ssim": ssim(pred, target),
        "colour_distance": colour_distance(pred, target),
        "colour_hist": colour_histogram_distance(pred, target),
        "figure_colour_distance": colour_distance(pred, target, pred_mask, target_mask),
        "figure_colour_hist": colour_histogram_distance(pred, target, pred_mask, target_mask),
    }


def toy_flicker(videos: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """method -> region (frame, figure, background) -> `temporal.Flicker.record()` (flicker, energies, ratio, videos).

    Methods as in `evaluate_toy`: `generated`, `copy_reference` (the reference frame repeated: a static video) and
    `wrong_reference` (only the videos that have `wrong_generated`). Regions come from the true masks `target_mask`.
    """
    predictions = {
        "generated": lambda v: v["generated"],
        "copy_reference": lambda v: np.broadcast_to(v["reference"], np.shape(v["target"])),
        "wrong_reference": lambda v: v.get("wrong_generated"),
    }  # fmt: skip
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for method, predict in predictions.items():
        pairs = [(predict(v), v) for v in videos if predict(v) is not None]
        if not pairs:
            continue
        out[method] = {
            region: temporal.pool_videos(
                [temporal.video_terms(pred, v["target"], masks=v["target_mask"], region=region) for pred, v in pairs]
            ).record()
            for region in temporal.REGIONS
        }
    return out


def paired_gain(gains: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Per-item gains (one per frame or pair, positive = better): mean, its standard error, the mean in standard
    errors, and the fraction of items that gained (`wins`). The toy world's proofs all report their gains this way."""
    gains = np.asarray(gains, np.float64)
    n = len(gains)
    mean = float(gains.mean()) if n else float("nan")
    stderr = float(gains.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return {"mean": mean, "stderr": stderr, "standard_errors": mean / stderr if stderr > 0 else float("nan"),
            "wins": float((gains > 0).mean()) if n else float("nan")}  # fmt: skip


def _paired_gain(a: Sequence[dict], b: Sequence[dict], key: str) -> dict:
    """Per-frame `a[key] - b[key]` as `paired_gain` reports it."""
    return paired_gain([x[key] - y[key] for x, y in zip(a, b)])


def _mean(rows: Sequence[dict]) -> dict:
    return {key: float(np.mean([row[key] for row in rows])) for key in rows[0]} if rows else {}


def evaluate_toy(videos: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-metric means over every frame of every video, for the generated frames and the two baselines.

    Each video is a dict of numpy arrays:
    `target` (T H W 3 uint8, ground truth), `target_mask` (T H W bool, true masks), `reference` (H W 3, the
    reference frame), `reference_mask` (H W bool), `background` (H W 3: this identity's re-rendered
    background), `generated` (T H W 3, frames generated from `reference` and the targets' poses), and
    optionally `wrong_generated` (T H W 3, the same poses generated from another identity's reference) with
    `wrong_background` (that identity's background: the generated figure is segmented against it).

    Returns `{"generated": {...}, "copy_reference": {...}, "wrong_reference": {...}, "mask_iou_gain": {...},
    "mask_extractor_iou": x, "frames": n, "flicker": {...}}`, where the first three map each of `METRICS` to its mean,
    `mask_iou_gain` is the per-frame IoU of the generated frame minus the copy-reference baseline's (`mean`,
    `stderr`, `wins`: fraction of frames where generation wins), and `mask_extractor_iou` is the mean IoU of
    `figure_mask` on the ground-truth frames against their true masks; `flicker` is `toy_flicker(videos)`.
    """
    rows: dict[str, list[dict]] = {"generated": [], "copy_reference": [], "wrong_reference": []}
    extractor = []
    for v in videos:
        for t in range(len(v["target"])):
            target, target_mask = v["target"][t], v["target_mask"][t]
            extractor.append(mask_iou(figure_mask(target, v["background"]), target_mask))
            gen = v["generated"][t]
            rows["generated"].append(
                frame_metrics(gen, figure_mask(gen, v["background"]), target, target_mask)
            )
            rows["copy_reference"].append(
                frame_metrics(v["reference"], v["reference_mask"], target, target_mask)
            )
            if v.get("wrong_generated") is not None:
                wrong = v["wrong_generated"][t]
                wrong_mask = figure_mask(wrong, v["wrong_background"])
                rows["wrong_reference"].append(frame_metrics(wrong, wrong_mask, target, target_mask))
    result: dict[str, Any] = {name: _mean(r) for name, r in rows.items() if r}
    result["mask_iou_gain"] = _paired_gain(rows["generated"], rows["copy_reference"], "mask_iou")
    result["mask_extractor_iou"] = float(np.mean(extractor)) if extractor else float("nan")
    result["frames"] = len(extractor)
    result["flicker"] = toy_flicker(videos)
    return result
