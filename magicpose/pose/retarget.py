"""Pose retargeting: a driving dancer's motion on the reference person's body (pure numpy).

A pose sequence extracted from someone else's video carries that dancer's body: height, limb lengths, shoulder
width, head size and where they stand. Fed as is, the ControlNet forces those proportions onto the reference
person. `retarget_frames` rebuilds every driving frame on the reference's skeleton instead:

- **Bones.** Every bone of the OpenPose kinematic tree (`BONES`: the 17 limbs the annotator draws, all hanging
  from the neck) is rescaled to the reference's length. A bone's ratio is `reference length / driving length`,
  where the driving length is a robust estimate over the whole sequence: the `percentile`-th (default 90th)
  percentile of its per-frame lengths, over the frames showing both of its joints. A 2D bone only ever looks
  SHORTER than it is (foreshortening: turning, an arm pointing at the camera), so a high percentile estimates
  its true length where the median would not; it stays below the maximum so a few over-long mis-detections do
  not set it. The same ratio serves every frame, so nothing jitters: each bone keeps its direction and its
  per-frame foreshortening, only its length changes.
- **Face and hands** follow their anchors: face points keep their offsets from the nose scaled by the head
  ratio (the eye and ear bones' summed reference / driving lengths; else the neck-nose bone's ratio; else the
  height ratio), hand points keep their offsets from the body's wrist scaled by that side's forearm ratio.
- **Placement.** The root is the neck (the mid-shoulder point where the neck is missing, as our extraction
  backends make the neck). The driving dancer's root motion relative to its first frame is scaled by the
  height ratio and applied from where the reference's root is: `x -> reference_root + height_ratio *
  (x - driving_root_at_first_frame)` (`Retargeting.place`). The height ratio compares the summed lengths of
  the neck-nose, neck-hip, hip-knee and knee-ankle bones (both sides) present in both skeletons; when those
  include no neck-hip bone (a half-body reference), it compares all the bones present in both instead.
- **Missing keypoints** (confidence <= `threshold`) stay missing: they are written as (0, 0, 0), OpenPose's
  "not detected". They do not break the chain: a present point whose parent is missing is placed from its
  nearest present ancestor with the ratio of the chain between them (the driving-length-weighted mean of the
  bones' ratios, exact when that chain is straight); a point with no present ancestor (the neck is missing)
  keeps its own displacement, mapped by `Retargeting.place` like the root. A face whose nose is missing
  anchors on its own nose tip (landmark 30), a hand whose body wrist is missing on its own wrist point, each
  placed where the missing body point would go.
- **Bones the reference lacks** (one of its joints undetected) take the mirrored bone's ratio (left for right)
  when that one was measured, else the height ratio; bones no driving frame shows likewise. The returned
  record says which, per bone (`source`). The height ratio rather than 1: the two videos' pixels need not be
  of the same scale, so "unchanged" means "scaled with the body".

The retargeted frames are in the reference's pixels (on its canvas), so their pose maps line up with the
reference image. Only the first person of each frame is retargeted (extract-pose keeps one by default).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np

from magicpose.errors import UserError
from magicpose.pose.openpose import (
    BODY_KEYPOINTS,
    BODY_LIMBS,
    PersonKeypoints,
    PoseFrame,
    read_keypoints_json,
)

# (parent, child) joints, from the neck outwards: parents always come before their children.
BONES: tuple[tuple[int, int], ...] = BODY_LIMBS
ROOT = 1  # neck
PARENT: dict[int, int] = {child: parent for parent, child in BONES}
SHOULDERS = (2, 5)
NOSE = 0
# The person's right <-> left joints (for a bone the reference lacks on one side).
MIRROR: dict[int, int] = {2: 5, 3: 6, 4: 7, 8: 11, 9: 12, 10: 13, 14: 15, 16: 17}
MIRROR.update({v: k for k, v in list(MIRROR.items())})
HEIGHT_BONES: tuple[tuple[int, int], ...] = ((1, 0), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13))
TORSO_BONES: tuple[tuple[int, int], ...] = ((1, 8), (1, 11))
HEAD_BONES: tuple[tuple[int, int], ...] = ((0, 14), (14, 16), (0, 15), (15, 17))
NOSE_BONE = (1, 0)
FACE_NOSE_TIP = 30  # iBUG-68 nose tip: the face's stand-in for the body's nose
HAND_ROOT = 0  # the hand model's wrist point: the hand's stand-in for the body's wrist
# part -> (body joint it hangs from, its stand-in point, the bone whose ratio scales it)
HANDS: dict[str, tuple[int, tuple[int, int]]] = {"left_hand": (7, (6, 7)), "right_hand": (4, (3, 4))}
PART_NAMES: tuple[str, ...] = ("body", "left_hand", "right_hand", "face")
DEFAULT_PERCENTILE = 90.0

Parts: TypeAlias = dict[str, np.ndarray]  # PART_NAMES -> float64 (N, 3) rows of x, y, confidence


def bone_name(bone: tuple[int, int]) -> str:
    return f"{BODY_KEYPOINTS[bone[0]]}-{BODY_KEYPOINTS[bone[1]]}"


def _mirror(bone: tuple[int, int]) -> tuple[int, int]:
    return MIRROR.get(bone[0], bone[0]), MIRROR.get(bone[1], bone[1])


def _present(points: np.ndarray, threshold: float) -> np.ndarray:
    return (points[:, 2] > threshold) & np.isfinite(points).all(axis=1)


def root_point(body: np.ndarray, threshold: float = 0.0) -> np.ndarray | None:
    """The neck, else the mid-shoulder point, else None."""
    seen = _present(body, threshold)
    if seen[ROOT]:
        return body[ROOT, :2].copy()
    if seen[list(SHOULDERS)].all():
        return body[list(SHOULDERS), :2].mean(axis=0)
    return None


# ----------------------------------------------------------------------------------------------------------
# Measuring: the ratios
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoneRatio:
    """One bone's scale: `ratio` = `reference` / `driving` px where both exist, else a fallback (`source`)."""

    ratio: float
    reference: float | None  # its length in the reference, px
    driving: float | None  # the robust estimate of its length over the driving sequence, px
    frames: int  # driving frames showing it
    source: str  # "measured", or which fallback and why

    def to_json(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 4)

        return {"ratio": round(self.ratio, 6), "reference_px": rounded(self.reference),
                "driving_px": rounded(self.driving), "driving_frames": self.frames, "source": self.source}


@dataclass(frozen=True)
class Retargeting:
    """Everything that maps a driving frame onto the reference's body; the same for every frame."""

    bones: dict[tuple[int, int], BoneRatio]
    height_ratio: float
    height_bones: tuple[str, ...]  # the bones the height ratio compares
    head_ratio: float
    head_source: str
    hand_ratios: dict[str, float]  # "left_hand" / "right_hand" -> that side's forearm ratio
    reference_root: np.ndarray  # (2,) px on the reference's canvas
    driving_root: np.ndarray  # (2,) px: the driving root in its first frame that has one
    driving_root_frame: int
    percentile: float
    threshold: float
    frames: int

    def ratio(self, bone: tuple[int, int]) -> float:
        return self.bones[bone].ratio

    def place(self, xy: np.ndarray) -> np.ndarray:
        """Driving pixels -> reference pixels for the root (and for points with no present ancestor)."""
        return self.reference_root + self.height_ratio * (np.asarray(xy, np.float64) - self.driving_root)

    def chain_ratio(self, ancestor: int, joint: int) -> float:
        """The scale of the path `ancestor` -> `joint`: its bones' ratios, weighted by their driving lengths."""
        path = []
        while joint != ancestor:
            path.append((PARENT[joint], joint))
            joint = PARENT[joint]
        if len(path) == 1:
            return self.bones[path[0]].ratio
        weights = [self._driving_scale(bone) for bone in path]
        if any(w is None for w in weights):  # a bone known to neither skeleton: plain mean
            weights = [1.0] * len(path)
        return float(sum(w * self.bones[b].ratio for w, b in zip(weights, path)) / sum(weights))

    def _driving_scale(self, bone: tuple[int, int]) -> float | None:
        entry = self.bones[bone]
        if entry.driving is not None:
            return entry.driving
        return None if entry.reference is None else entry.reference / self.height_ratio

    def to_json(self) -> dict[str, Any]:
        """The record for retarget.json / run.json."""
        translation = self.reference_root - self.height_ratio * self.driving_root
        return {
            "method": "bone-length retargeting along the OpenPose tree from the neck (magicpose.pose.retarget)",
            "percentile": self.percentile,
            "threshold": self.threshold,
            "frames": self.frames,
            "height_ratio": round(self.height_ratio, 6),
            "height_bones": list(self.height_bones),
            "head_ratio": round(self.head_ratio, 6),
            "head_source": self.head_source,
            "hand_ratios": {side.removesuffix("_hand"): round(r, 6) for side, r in self.hand_ratios.items()},
            "bones": {bone_name(bone): entry.to_json() for bone, entry in self.bones.items()},
            "offset": {
                "reference_root": [round(float(v), 3) for v in self.reference_root],
                "driving_root": [round(float(v), 3) for v in self.driving_root],
                "driving_root_frame": self.driving_root_frame,
                "translation": [round(float(v), 3) for v in translation],
                "rule": "x' = reference_root + height_ratio * (x - driving_root) for the root",
            },
        }


def bone_lengths(body: np.ndarray, threshold: float = 0.0) -> dict[tuple[int, int], float]:
    """The length (px) of every bone whose two joints are present."""
    seen = _present(body, threshold)
    return {(p, c): float(np.hypot(*(body[c, :2] - body[p, :2]))) for p, c in BONES if seen[p] and seen[c]}


def robust_length(lengths: Sequence[float], percentile: float = DEFAULT_PERCENTILE) -> float | None:
    """A bone's true length from its per-frame 2D lengths: their `percentile`-th percentile (None if none)."""
    if not len(lengths):
        return None
    value = float(np.percentile(np.asarray(lengths, np.float64), percentile))
    return value if value > 0 else None


def _fallback(
    bone: tuple[int, int], measured: dict[tuple[int, int], float], height: float, why: str
) -> tuple[float, str]:
    mirror = _mirror(bone)
    if mirror != bone and mirror in measured:
        return measured[mirror], f"mirrored from {bone_name(mirror)} ({why})"
    return height, f"height ratio ({why})"


def _sum_ratio(bones: Iterable[tuple[int, int]], reference: dict, driving: dict) -> tuple[float, list] | None:
    shared = [b for b in bones if reference.get(b) is not None and driving.get(b) is not None]
    if not shared:
        return None
    return sum(reference[b] for b in shared) / sum(driving[b] for b in shared), shared


def measure(
    reference: Parts,
    driving: Sequence[Parts | None],
    *,
    percentile: float = DEFAULT_PERCENTILE,
    threshold: float = 0.0,
) -> Retargeting:
    """The ratios and the placement that retarget `driving` (people per frame, None = nobody) to `reference`."""
    if not 0 < percentile <= 100:
        raise UserError(f"the length percentile must be in (0, 100], got {percentile}")
    ref_lengths = {b: v for b, v in bone_lengths(reference["body"], threshold).items() if v > 0}
    per_frame: dict[tuple[int, int], list[float]] = {bone: [] for bone in BONES}
    for person in driving:
        if person is not None:
            for bone, length in bone_lengths(person["body"], threshold).items():
                per_frame[bone].append(length)
    drv_lengths = {bone: robust_length(values, percentile) for bone, values in per_frame.items()}

    measured = {b: ref_lengths[b] / drv_lengths[b] for b in BONES if b in ref_lengths and drv_lengths[b]}
    height = _sum_ratio(HEIGHT_BONES, ref_lengths, drv_lengths)
    if height is None or not set(height[1]) & set(TORSO_BONES):  # a half body: its overall scale instead
        height = _sum_ratio(BONES, ref_lengths, drv_lengths)
    if height is None:
        raise UserError("the reference and the driving poses show no bone in common (both joints detected), "
                        "so their proportions cannot be compared")
    height_ratio, height_bones = height

    bones = {}
    for bone in BONES:
        ref, drv, count = ref_lengths.get(bone), drv_lengths[bone], len(per_frame[bone])
        if bone in measured:
            ratio, source = measured[bone], "measured"
        else:
            why = "the reference lacks this bone" if ref is None else "no driving frame shows this bone"
            ratio, source = _fallback(bone, measured, height_ratio, why)
        bones[bone] = BoneRatio(float(ratio), ref, drv, count, source)

    head = _sum_ratio(HEAD_BONES, ref_lengths, drv_lengths)
    if head is not None:
        head_ratio, head_source = head[0], "eye and ear bones: " + ", ".join(bone_name(b) for b in head[1])
    elif NOSE_BONE in measured:
        head_ratio, head_source = measured[NOSE_BONE], "neck-nose bone (no eye or ear bone in both)"
    else:
        head_ratio, head_source = height_ratio, "height ratio (no head bone in both)"

    ref_root = root_point(reference["body"], threshold)
    if ref_root is None:
        raise UserError("the reference shows neither the neck nor both shoulders, so there is no root to place "
                        "the driving motion from")
    first = next(((t, root) for t, person in enumerate(driving) if person is not None
                  for root in [root_point(person["body"], threshold)] if root is not None), None)
    if first is None:
        raise UserError("no driving frame shows the neck or both shoulders, so the motion cannot be placed")
    return Retargeting(
        bones=bones,
        height_ratio=float(height_ratio),
        height_bones=tuple(bone_name(b) for b in height_bones),
        head_ratio=float(head_ratio),
        head_source=head_source,
        hand_ratios={part: bones[forearm].ratio for part, (_, forearm) in HANDS.items()},
        reference_root=ref_root,
        driving_root=first[1],
        driving_root_frame=first[0],
        percentile=float(percentile),
        threshold=float(threshold),
        frames=len(driving),
    )


# ----------------------------------------------------------------------------------------------------------
# Applying: one frame at a time
# ----------------------------------------------------------------------------------------------------------


def _nearest_present_ancestor(joint: int, seen: np.ndarray) -> int | None:
    while joint in PARENT:
        joint = PARENT[joint]
        if seen[joint]:
            return joint
    return None


def _place_joint(plan: Retargeting, joint: int, xy: np.ndarray, body: np.ndarray, out: np.ndarray,
                 seen: np.ndarray) -> np.ndarray:
    """Where `joint`, at driving position `xy`, goes: from its nearest present ancestor, else by `place`."""
    ancestor = _nearest_present_ancestor(joint, seen)
    if ancestor is None:
        return plan.place(xy)
    return out[ancestor, :2] + plan.chain_ratio(ancestor, joint) * (xy - body[ancestor, :2])


def _place_part(plan: Retargeting, points: np.ndarray, anchor: int, stand_in: int, ratio: float,
                body: np.ndarray, out_body: np.ndarray, seen_body: np.ndarray) -> np.ndarray:
    """Face or hand points: their offsets from the body anchor (or their own stand-in for it) times `ratio`."""
    seen = _present(points, plan.threshold)
    out = np.zeros_like(points)
    if seen_body[anchor]:
        source, target = body[anchor, :2], out_body[anchor, :2]
    elif seen[stand_in]:
        source = points[stand_in, :2]
        target = _place_joint(plan, anchor, source, body, out_body, seen_body)
    else:  # nothing to hang the part from: each point keeps its own displacement
        out[seen, :2] = plan.place(points[seen, :2])
        out[seen, 2] = points[seen, 2]
        return out
    out[seen, :2] = target + ratio * (points[seen, :2] - source)
    out[seen, 2] = points[seen, 2]
    return out


def apply(plan: Retargeting, person: Parts) -> Parts:
    """One driving person on the reference's body (float64; missing points come back as (0, 0, 0))."""
    body = np.asarray(person["body"], np.float64)
    seen = _present(body, plan.threshold)
    out = np.zeros_like(body)
    for joint in (ROOT, *(child for _, child in BONES)):
        if seen[joint]:
            out[joint, :2] = _place_joint(plan, joint, body[joint, :2], body, out, seen)
            out[joint, 2] = body[joint, 2]
    result: Parts = {"body": out}
    for part, (wrist, _) in HANDS.items():
        if person.get(part) is not None:
            points = np.asarray(person[part], np.float64)
            result[part] = _place_part(plan, points, wrist, HAND_ROOT, plan.hand_ratios[part], body, out, seen)
    if person.get("face") is not None:
        face = np.asarray(person["face"], np.float64)
        result["face"] = _place_part(plan, face, NOSE, FACE_NOSE_TIP, plan.head_ratio, body, out, seen)
    return result


def retarget_parts(
    reference: Parts,
    driving: Sequence[Parts | None],
    *,
    percentile: float = DEFAULT_PERCENTILE,
    threshold: float = 0.0,
) -> tuple[list[Parts | None], Retargeting]:
    """`driving` (one person per frame as float64 arrays, None = nobody) on `reference`'s body, and the plan."""
    plan = measure(reference, driving, percentile=percentile, threshold=threshold)
    return [None if person is None else apply(plan, person) for person in driving], plan


# ----------------------------------------------------------------------------------------------------------
# PoseFrames
# ----------------------------------------------------------------------------------------------------------


def to_parts(person: PersonKeypoints) -> Parts:
    parts = {name: getattr(person, name) for name in PART_NAMES}
    return {name: np.asarray(points, np.float64) for name, points in parts.items() if points is not None}


def from_parts(parts: Parts) -> PersonKeypoints:
    return PersonKeypoints(parts["body"], parts.get("left_hand"), parts.get("right_hand"), parts.get("face"))


@dataclass
class RetargetResult:
    frames: list[PoseFrame]  # on the reference's canvas
    plan: Retargeting

    def record(self) -> dict[str, Any]:
        return self.plan.to_json()


def retarget_frames(
    reference: PoseFrame | PersonKeypoints,
    driving: Sequence[PoseFrame],
    *,
    percentile: float = DEFAULT_PERCENTILE,
    threshold: float = 0.0,
    size: tuple[int, int] | None = None,
) -> RetargetResult:
    """The first person of every `driving` frame moved onto the reference's body (its first person).

    The frames come back on the reference frame's canvas (`size=(width, height)` for a bare
    `PersonKeypoints`, default: the driving frames' size); a frame without people stays empty.
    """
    if not driving:
        raise UserError("no driving poses to retarget")
    if isinstance(reference, PoseFrame):
        if not reference.people:
            raise UserError("no person in the reference's keypoints")
        canvas = (reference.width, reference.height)
        reference = reference.people[0]
    else:
        canvas = size or (driving[0].width, driving[0].height)
    people = [to_parts(frame.people[0]) if frame.people else None for frame in driving]
    moved, plan = retarget_parts(to_parts(reference), people, percentile=percentile, threshold=threshold)
    frames = [PoseFrame([] if p is None else [from_parts(p)], *canvas) for p in moved]
    return RetargetResult(frames, plan)


# ----------------------------------------------------------------------------------------------------------
# Finding keypoints beside pose maps
# ----------------------------------------------------------------------------------------------------------

KEYPOINTS_DIR = "keypoints"  # extract-pose's layout: OUT/keypoints/<frame>.json beside OUT/pose_maps/<frame>.png
POSE_MAPS_DIR = "pose_maps"
TIKTOK_POSE_PREFIX, TIKTOK_KEYPOINTS_PREFIX = "pose_map_", "keypoints_"  # ROOT/pose_map_<split>/<video>/


def _keypoint_folders(folder: Path) -> list[Path]:
    """Where a pose folder's keypoints may be: itself (sidecars), OUT/keypoints of an extract-pose folder,
    pose_maps/'s sibling keypoints/, or the TikTok layout's keypoints_<split>/<video>."""
    places = [folder, folder / KEYPOINTS_DIR]
    if folder.name == POSE_MAPS_DIR:
        places.append(folder.parent / KEYPOINTS_DIR)
    if folder.parent.name.startswith(TIKTOK_POSE_PREFIX):
        split = folder.parent.name.removeprefix(TIKTOK_POSE_PREFIX)
        places.append(folder.parent.parent / f"{TIKTOK_KEYPOINTS_PREFIX}{split}" / folder.name)
    return [place for place in places if place.is_dir()]


def _files(folder: Path, extensions: Iterable[str]) -> list[Path]:
    from magicpose.media import natural_sort_key

    wanted = set(extensions)
    found = [p for p in folder.iterdir()
             if p.is_file() and not p.name.startswith(".") and p.suffix.lower().lstrip(".") in wanted]
    return sorted(found, key=lambda p: natural_sort_key(p.name))


def find_keypoints(path: str | Path) -> list[Path]:
    """The OpenPose keypoints JSON files of a pose sequence, in frame order.

    `path` is one JSON file, a folder of them, an extract-pose output folder (its `keypoints/`), or a folder of
    pose maps whose keypoints are beside them (`<frame>.json` next to `<frame>.png`), in the sibling
    `keypoints/` of extract-pose's `pose_maps/`, or in the TikTok layout's `keypoints_<split>/<video>/`. With
    maps, every map needs its keypoints (same name) and the order is the maps'. UserError otherwise.
    """
    from magicpose.media import IMAGE_EXTENSIONS

    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".json":
        return [path]
    if not path.is_dir():
        what = "no such file or folder" if not path.exists() else "not a folder or a keypoints .json file"
        raise UserError(f"{path}: {what}; pose retargeting needs OpenPose keypoints JSON (extract-pose writes them)")
    places = _keypoint_folders(path)
    maps = _files(path, IMAGE_EXTENSIONS)
    if maps:
        for place in places:
            files = [place / f"{m.stem}.json" for m in maps]
            if all(f.is_file() for f in files):
                return files
        searched = ", ".join(str(p) for p in places)
        missing = next(m for m in maps if not any((p / f"{m.stem}.json").is_file() for p in places))
        raise UserError(f"{missing}: no keypoints JSON ({missing.stem}.json) for this pose map in {searched}; "
                        "retargeting needs OpenPose keypoints for every map (extract-pose writes them)")
    for place in places:
        files = _files(place, ("json",))
        if files:
            return files
    raise UserError(f"{path}: no keypoints JSON files (pose retargeting needs the OpenPose keypoints extract-pose "
                    "writes in keypoints/)")


def read_sequence(files: Sequence[Path]) -> list[PoseFrame]:
    """Every keypoints file as a PoseFrame (one-line UserError for a malformed one)."""
    return [read_keypoints_json(path) for path in files]


def check_canvas(frame: PoseFrame, width: int, height: int, what: str) -> PoseFrame:
    """`frame` rescaled onto a `width` x `height` image of the same shape; UserError for another aspect ratio."""
    if (frame.width, frame.height) == (width, height):
        return frame
    if abs(frame.width / frame.height - width / height) > 0.01 * (width / height):
        raise UserError(f"{what}: keypoints of a {frame.width}x{frame.height} canvas do not fit the "
                        f"{width}x{height} reference image (other aspect ratio)")
    return frame.resized(width, height)

