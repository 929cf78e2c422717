"""The toy world's proof of stage 3: per-frame (stage 2) against temporal (stage 3) generation of the same held-out
dancers, with the same references, poses, seeds and sampling settings.

`compare_stages(per_frame, temporal)` takes the two lists of evaluated videos (`magicpose.toy.quickstart`'s
`animate_and_evaluate`) and returns, per method, the flicker error (`magicpose.eval.temporal`) on the whole frame,
the figure and the background, and paired differences with standard errors: the flicker gain per pair of
consecutive frames (stage 2 minus stage 3: positive = steadier), and the per-frame changes in mask IoU and colour
distance. `temporal_check` asks for a flicker gain beyond `min_se` standard errors with mask IoU and colour distance
no worse than stage 2's beyond `noise_se` standard errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from magicpose.eval import temporal
from magicpose.toy.metrics import colour_distance, figure_mask, mask_iou, paired_gain

REGIONS = temporal.REGIONS


def pair_flicker(videos: Sequence[dict[str, Any]], region: str) -> np.ndarray:
    """The flicker error of every pair of consecutive generated frames of every video (one value per pair)."""
    rows = []
    for v in videos:
        pairs = temporal.consecutive_pairs(len(v["target"]))
        terms = temporal.pair_terms(v["generated"], v["target"], pairs, v["target_mask"], region)
        rows.append(terms[:, 0])
    return np.concatenate(rows) if rows else np.zeros(0)


def frame_scores(videos: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Per generated frame: figure-mask IoU and colour distance to the ground truth (the quickstart's metrics)."""
    iou, colour = [], []
    for v in videos:
        for gen, target, mask in zip(v["generated"], v["target"], v["target_mask"]):
            iou.append(mask_iou(figure_mask(gen, v["background"]), mask))
            colour.append(colour_distance(gen, target))
    return {"mask_iou": np.array(iou), "colour_distance": np.array(colour)}


def paired(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """`a - b` per item as `magicpose.toy.metrics.paired_gain` reports it, and the number of items `n`."""
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return {**paired_gain(diff), "n": int(len(diff))}


def compare_stages(per_frame: Sequence[dict[str, Any]], temporal_videos: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stage 2 vs stage 3 on the same videos (see the module docstring)."""
    flicker = {region: (pair_flicker(per_frame, region), pair_flicker(temporal_videos, region))
               for region in REGIONS}
    scores2, scores3 = frame_scores(per_frame), frame_scores(temporal_videos)
    return {
        "stage2": {**{f"flicker_{r}": float(a.mean()) for r, (a, _) in flicker.items()},
                   **{k: float(v.mean()) for k, v in scores2.items()}},
        "stage3": {**{f"flicker_{r}": float(b.mean()) for r, (_, b) in flicker.items()},
                   **{k: float(v.mean()) for k, v in scores3.items()}},
        # positive = stage 3 better: flicker and colour distance are lower-better, IoU higher-better
        "gain": {
            **{f"flicker_{r}": paired(a, b) for r, (a, b) in flicker.items()},
            "mask_iou": paired(scores3["mask_iou"], scores2["mask_iou"]),
            "colour_distance": paired(scores2["colour_distance"], scores3["colour_distance"]),
        },
    }


def temporal_check(comparison: dict[str, Any], min_se: float = 3.0, noise_se: float = 2.0) -> dict[str, Any]:
    """Stage 3 flickers less (frame flicker gain > `min_se` standard errors) and is no worse in mask IoU and colour
    distance (neither gain below `-noise_se` standard errors)."""
    gain = comparison["gain"]
    steadier = gain["flicker_frame"]["mean"] > min_se * gain["flicker_frame"]["stderr"]
    no_worse = {k: gain[k]["mean"] >= -noise_se * gain[k]["stderr"] for k in ("mask_iou", "colour_distance")}
    return {
        "flicker_gain_se": gain["flicker_frame"]["mean"] / max(gain["flicker_frame"]["stderr"], 1e-12),
        "min_se": min_se,
        "noise_se": noise_se,
        "steadier": bool(steadier),
        "no_worse": {k: bool(v) for k, v in no_worse.items()},
        "passed": bool(steadier and all(no_worse.values())),
    }


def temporal_table(comparison: dict[str, Any]) -> str:
    """The README's table: stage 2 | stage 3 | paired gain (+- standard error) per metric."""
    rows = [f"{'metric':<22}{'stage 2':>10}{'stage 3':>10}{'gain (3 better)':>24}"]
    for key in [*(f"flicker_{r}" for r in REGIONS), "mask_iou", "colour_distance"]:
        g = comparison["gain"][key]
        rows.append(f"{key:<22}{comparison['stage2'][key]:>10.4f}{comparison['stage3'][key]:>10.4f}"
                    f"{g['mean']:>+14.4f} +- {g['stderr']:.4f}")
    return "\n".join(rows)


def write_side_by_side(path: Path, per_frame: Sequence[dict], temporal_videos: Sequence[dict], enlarge: int = 4,
                       fps: float = 8.0) -> None:
    """One row per held-out video: reference | pose | stage 2 | stage 3 | ground truth, `enlarge` x larger."""
    from magicpose.media import write_video

    frames = min(len(v["generated"]) for v in per_frame)
    rows = []
    for a, b in zip(per_frame, temporal_videos):
        ref = np.broadcast_to(a["reference"], a["generated"].shape)
        rows.append(np.concatenate([ref, a["pose"], a["generated"], b["generated"], a["target"]], 2)[:frames])
    video = [np.concatenate([r[t] for r in rows], 0).repeat(enlarge, 0).repeat(enlarge, 1) for t in range(frames)]
    write_video(path, video, fps)
