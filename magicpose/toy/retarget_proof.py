"""Does pose retargeting help? Measured on the toy world, where "A performs B's motion" has a ground truth.

For every held-out dancer A (the quickstart's evaluated test videos) and the next one B, the model animates A's
first frame with B's motion twice, with the same seed: from B's pose maps as they are (B's body, standing where
B stands in B's video) and from B's keypoints retargeted onto A's first-frame keypoints
(`magicpose.pose.retarget.retarget_frames`: the whole of B's video drives the bone-length estimates). Both are
drawn as OpenPose maps the way the toy dataset draws its pose maps. The ground truth is A's body doing B's joint
angles, filmed as in A's video (`magicpose.toy.world.performed_motion`), rendered by the toy renderer.

Per evaluated frame (the quickstart's frames: `eval_frames` frames at `eval_stride` after frame 0), paired
between the two inputs:

* `mask_iou` (generated frames, checked): the quickstart's figure-mask IoU, `figure_mask(generated, A's
  background)` against the true mask of A doing B.
* `keypoint_error` (the pose input, checked): mean distance in pixels between the 18 body keypoints the model is
  asked to draw (B's raw or retargeted) and the true keypoints of A doing B. The generated frames carry no
  keypoints and the toy world has no pose detector, so this measures what the model is told, not what it drew;
  it is exact (the toy world knows its keypoints).
* `extent_error` (generated frames, reported): mean absolute error in pixels of the generated figure mask's
  bounding box (top, bottom, left, right) against the true mask's: a mask-based stand-in for keypoints of the
  generated frames (height and placement of the drawn figure). A frame whose figure mask is empty counts the
  whole side length.
* `input_mask_iou` (reported): IoU of the mask the renderer draws for A at the input keypoints against the
  true mask: the IoU a perfect pose-follower would reach from that input.

Each gain is retargeted minus raw (sign flipped for the errors, so positive is better), with its standard
error over frames and the fraction of frames won. The check: the mask IoU and keypoint-error gains both exceed
`min_se` (3) standard errors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

PAIR_METRICS = ("mask_iou", "keypoint_error", "extent_error", "input_mask_iou")
LOWER_IS_BETTER = frozenset({"keypoint_error", "extent_error"})
CHECKED = ("mask_iou", "keypoint_error")
MIN_SE = 3.0


def _bbox(mask: np.ndarray) -> np.ndarray | None:
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    return np.array([ys.min(), ys.max(), xs.min(), xs.max()], np.float64)


def extent_error(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute difference of the two masks' bounding boxes (top, bottom, left, right), in pixels."""
    a, b = _bbox(pred), _bbox(true)
    if a is None or b is None:
        return float(pred.shape[0]) if (a is None) != (b is None) else 0.0
    return float(np.abs(a - b).mean())


def keypoint_error(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean Euclidean distance of the body keypoints ((18, >=2) arrays, pixels)."""
    return float(np.linalg.norm(pred[:, :2] - true[:, :2], axis=1).mean())


def pair_inputs(data: Path, a: str, b: str, frames: int, stride: int) -> dict[str, Any]:
    """Everything for animating test dancer `a` with `b`'s motion (`frames` frames at `stride` after frame 0).

    Returns A's reference frame and background, the raw and retargeted keypoints and pose maps, and the true
    keypoints, frames and masks of A doing B (uint8 / bool / float arrays).
    """
    from magicpose.pose.openpose import PoseFrame, render_pose
    from magicpose.pose.retarget import retarget_frames
    from magicpose.toy.metrics import toy_background
    from magicpose.toy.render import render_person
    from magicpose.toy.world import Identity, dance_motion, motion_keypoints, performed_motion

    world = json.loads((data / "toy_world.json").read_text(encoding="utf-8"))
    size, length = world["arguments"]["size"], world["arguments"]["frames"]
    entries = {e["video"]: e for e in world["splits"]["test"]}
    ida, idb = (Identity.from_json(entries[v]["identity"]) for v in (a, b))
    own = dance_motion(np.random.default_rng(entries[a]["motion_seed"]), length, ida.body)
    driving = dance_motion(np.random.default_rng(entries[b]["motion_seed"]), length, idb.body)
    own_kp = motion_keypoints(own, size, ida.body)
    driving_kp = motion_keypoints(driving, size, idb.body)
    true_kp = motion_keypoints(performed_motion(driving, own, idb.body, ida.body), size, ida.body)
    driving_frames = [PoseFrame([k], size, size) for k in driving_kp]
    moved = retarget_frames(PoseFrame([own_kp[0]], size, size), driving_frames)
    index = [stride * (t + 1) for t in range(frames)]
    index = [i for i in index if i < length]
    raw = [driving_kp[i] for i in index]
    retargeted = [moved.frames[i].people[0] for i in index]
    truth = [render_person(ida, true_kp[i], size) for i in index]

    def maps(people: list) -> np.ndarray:
        return np.stack([render_pose(PoseFrame([p], size, size)) for p in people])

    return {
        "reference": render_person(ida, own_kp[0], size)[0],
        "background": toy_background(entries[a]["identity"], size),
        "identity": ida,
        "raw": raw, "retargeted": retargeted, "raw_pose": maps(raw), "retargeted_pose": maps(retargeted),
        "true_keypoints": [true_kp[i] for i in index],
        "target": np.stack([t[0] for t in truth]), "target_mask": np.stack([t[1] for t in truth]),
        "plan": moved.record(),
    }  # fmt: skip


def frame_rows(pair: dict[str, Any], kind: str, generated: np.ndarray) -> list[dict[str, float]]:
    """Per-frame metrics of one input (`raw` or `retargeted`) and the frames generated from it."""
    from magicpose.toy.metrics import figure_mask, mask_iou
    from magicpose.toy.render import render_person

    rows = []
    size = pair["target"].shape[1]
    for t, frame in enumerate(generated):
        true_mask = pair["target_mask"][t]
        mask = figure_mask(frame, pair["background"])
        person = pair[kind][t]
        rows.append({
            "mask_iou": mask_iou(mask, true_mask),
            "keypoint_error": keypoint_error(person.body, pair["true_keypoints"][t].body),
            "extent_error": extent_error(mask, true_mask),
            "input_mask_iou": mask_iou(render_person(pair["identity"], person, size)[1], true_mask),
        })  # fmt: skip
    return rows


def retarget_proof(pipe: Any, data: Path, scale: Any, out: Path | None = None) -> dict[str, Any]:
    """Animate each evaluated test dancer with the next one's motion, raw and retargeted; compare (see above).

    `pipe` is a toy MagicPosePipeline (the quickstart's stage-2 one), `data` the quickstart's toy dataset and
    `scale` its `Scale` (evaluated videos, frames, stride, sampling). With `out`, writes `out/retarget.mp4`:
    reference | raw pose | generated | retargeted pose | generated | ground truth, one row per pair.
    """
    from magicpose.toy.metrics import paired_gain, toy_identities
    from magicpose.toy.quickstart import generate

    names = sorted(toy_identities(data, "test"))[: scale.eval_videos]
    if len(names) < 2:
        raise ValueError("the retargeting proof needs at least two evaluated test videos")
    rows: dict[str, list[dict[str, float]]] = {"raw": [], "retargeted": []}
    pairs, plans, grid = [], {}, []
    for i, a in enumerate(names):
        b = names[(i + 1) % len(names)]
        pair = pair_inputs(data, a, b, scale.eval_frames, scale.eval_stride)
        generated = {}
        for kind in ("raw", "retargeted"):
            generated[kind] = generate(
                pipe, pair["reference"], pair[f"{kind}_pose"], scale.sampler_steps, seed=i,
                guidance_scale=scale.guidance_scale, shared_noise=scale.shared_noise,
            )  # fmt: skip
            rows[kind] += frame_rows(pair, kind, generated[kind])
        pairs.append([a, b])
        plans[f"{a}<-{b}"] = {"height_ratio": pair["plan"]["height_ratio"]}
        ref = np.broadcast_to(pair["reference"], generated["raw"].shape)
        grid.append(np.concatenate([ref, pair["raw_pose"], generated["raw"], pair["retargeted_pose"],
                                    generated["retargeted"], pair["target"]], 2))  # fmt: skip
    means = {kind: {m: float(np.mean([r[m] for r in rows[kind]])) for m in PAIR_METRICS} for kind in rows}
    gains = {}
    for m in PAIR_METRICS:
        diff = np.array([r[m] - s[m] for r, s in zip(rows["retargeted"], rows["raw"])], np.float64)
        gains[m] = paired_gain(-diff if m in LOWER_IS_BETTER else diff)
    check = {m: {"standard_errors": gains[m]["standard_errors"],
                 "passed": bool(gains[m]["standard_errors"] > MIN_SE)} for m in CHECKED}  # fmt: skip
    record = {
        "pairs": pairs, "frames": len(rows["raw"]), "without_retargeting": means["raw"],
        "with_retargeting": means["retargeted"], "gain": gains, "plans": plans,
        "check": {"min_se": MIN_SE, **check, "passed": all(c["passed"] for c in check.values())},
    }  # fmt: skip
    if out is not None:
        from magicpose.media import write_video
        from magicpose.toy.quickstart import ENLARGE

        frames = min(len(g) for g in grid)
        rows = [np.concatenate([g[t] for g in grid], 0) for t in range(frames)]
        video = [r.repeat(ENLARGE, 0).repeat(ENLARGE, 1) for r in rows]
        write_video(out / "retarget.mp4", video, 8.0)
    return record


def retarget_table(record: dict[str, Any]) -> str:
    """The proof's means and gains as a text table."""
    lines = [f"{'metric':<16}{'without':>10}{'with':>10}{'gain':>10}{'+-':>8}{'s.e.':>7}{'won':>6}"]
    for m in PAIR_METRICS:
        g = record["gain"][m]
        arrow = "(lower better)" if m in LOWER_IS_BETTER else "(higher better)"
        lines.append(f"{m:<16}{record['without_retargeting'][m]:>10.3f}{record['with_retargeting'][m]:>10.3f}"
                     f"{g['mean']:>+10.3f}{g['stderr']:>8.3f}{g['standard_errors']:>7.1f}"
                     f"{100 * g['wins']:>5.0f}%  {arrow}")  # fmt: skip
    lines.append(f"({record['frames']} frames, {len(record['pairs'])} pairs A <- B of held-out dancers; gain: "
                 "with - without, errors negated so positive is better)")  # fmt: skip
    return "\n".join(lines)
