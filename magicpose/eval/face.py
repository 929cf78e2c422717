"""Face-Cos: where the face is (from the ground truth's OpenPose keypoints) and how it is cropped for ArcFace.

MagicPose reports Face-Cos ("cosine similarity of face-identity features") without releasing the code, so this
is our definition, built from the standard insightface recognition pipeline:

1. **Five points.** The ground-truth frame's keypoints give the five ArcFace alignment points, in ArcFace's
   order (image-left eye, image-right eye, nose tip, image-left and image-right mouth corner):
   with OpenPose face landmarks (68 iBUG points, + 2 pupils) the eye centres are the means of points 36-41 and
   42-47, the nose tip is 30 and the mouth corners 48 and 54; without face landmarks the body's `r_eye`,
   `l_eye` and `nose` give the first three. A point counts when its confidence is > 0 (the convention of
   `magicpose.pose.openpose`); a frame needs all five (landmarks) or all three (body points), else it has
   "no face". Of several people, the one with the largest eye distance (the nearest face: the dancer).
2. **Alignment.** The least-squares similarity (rotation, uniform scale, shift; Umeyama, no reflection) from
   those points to insightface's 112x112 template `ARCFACE_DST`, then `cv2.warpAffine` (bilinear, black
   border): insightface's `norm_crop`, i.e. the crops ArcFace was trained on.
3. **Same crop for both frames.** The generated frame follows the ground truth's pose, so the ground truth's
   points align both. A generated face that is misplaced therefore also scores lower (a face detector run
   on each frame would separate the two; none is bundled).

Keypoints are in the pixels of the *source* frame (the JSON's `canvas_width` / `canvas_height`, or the size of
the dataset frame); `infer-tiktok` centre-crops (or pads) that frame to a square and resizes it, so the points
are mapped through the same square (`square_fractions`) and then onto the evaluated frame's pixels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from magicpose.errors import UserError
from magicpose.pose.openpose import BODY_KEYPOINTS, PersonKeypoints, read_keypoints_json

FACE_SIZE = 112
# insightface's `arcface_dst` (utils/face_align.py): the five points of an aligned 112x112 face.
ARCFACE_DST = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
_LANDMARKS = ((36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47), (30,), (48,), (54,))  # iBUG-68 indices
_BODY = tuple(BODY_KEYPOINTS.index(n) for n in ("r_eye", "l_eye", "nose"))  # the subject's right eye is image-left
RESIZE_MODES = ("crop", "pad")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


# ----------------------------------------------------------------------------------------------------------
# Points and alignment
# ----------------------------------------------------------------------------------------------------------


def alignment_points(person: PersonKeypoints) -> np.ndarray | None:
    """`k 2` points matching `ARCFACE_DST[:k]` (k = 5 from face landmarks, 3 from body points), or None."""
    if person.face is not None:
        groups = [person.face[list(idx)] for idx in _LANDMARKS]
        if all((g[:, 2] > 0).all() for g in groups):
            return np.array([g[:, :2].mean(0) for g in groups], np.float64)
    body = person.body[list(_BODY)]
    if (body[:, 2] > 0).all():
        return body[:, :2].astype(np.float64)
    return None


def pick_face(people: list[PersonKeypoints]) -> np.ndarray | None:
    """The alignment points of the person with the largest eye distance (the nearest face), or None."""
    found = [p for p in map(alignment_points, people) if p is not None]
    return max(found, key=lambda p: float(np.linalg.norm(p[1] - p[0])), default=None)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """`2 3` least-squares similarity mapping `src` onto `dst` (Umeyama 1991, no reflection); None if degenerate."""
    mu_src, mu_dst = src.mean(0), dst.mean(0)
    a, b = src - mu_src, dst - mu_dst
    variance = (a**2).sum() / len(src)
    if variance < 1e-12:  # all points at one spot: no scale can be estimated
        return None
    u, s, vt = np.linalg.svd(b.T @ a / len(src))
    sign = np.array([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    rotation = u @ np.diag(sign) @ vt
    scale = float((s * sign).sum() / variance)
    shift = mu_dst - scale * rotation @ mu_src
    return np.hstack([scale * rotation, shift[:, None]])


def align_face(frame: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The `112 112 3` uint8 crop of `frame` under `matrix` (insightface's norm_crop: bilinear, black border)."""
    return cv2.warpAffine(frame, matrix, (FACE_SIZE, FACE_SIZE), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))


def square_fractions(points: np.ndarray, width: int, height: int, mode: str) -> np.ndarray:
    """Source-frame pixel positions -> fractions of the centre square `infer-tiktok` cut (or padded) out of it.

    The integer offsets are `transform_image`'s; +0.5 / -0.5 convert pixel centres to edges and back, so the
    mapping commutes with resizing the square to any side (`x_eval = fraction * side - 0.5`).
    """
    if mode == "pad":
        side = max(width, height)
        offset = np.array([(side - width) // 2, (side - height) // 2], np.float64)
    else:
        side = min(width, height)
        offset = -np.array([(width - side) // 2, (height - side) // 2], np.float64)
    return (points + offset + 0.5) / side


def face_matrix(fractions: np.ndarray, width: int, height: int) -> np.ndarray | None:
    """The alignment matrix for an evaluated frame (the square resized), from points given as square fractions."""
    pixels = fractions * np.array([width, height], np.float64) - 0.5
    return similarity_transform(pixels, ARCFACE_DST[: len(pixels)])


# ----------------------------------------------------------------------------------------------------------
# Where the keypoints are
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaceKeypoints:
    """`folder/<video>/<frame>.json` in the pixels of the source frames, and how those were made square."""

    folder: Path
    resize_mode: str = "crop"
    frames: Path | None = None  # the dataset's frame folder (source sizes when a JSON has no canvas size)
    origin: str = "--keypoints"

    def points(self, video: str, stem: str) -> np.ndarray | None | str:
        """Square fractions of the frame's alignment points; None when no face; "no keypoints" without a file."""
        path = self.folder / video / f"{stem}.json"
        if not path.is_file():
            return "no keypoints"
        size = self._source_size(path, video, stem)
        pose = read_keypoints_json(path, width=size[0], height=size[1])
        found = pick_face(pose.people)
        return None if found is None else square_fractions(found, pose.width, pose.height, self.resize_mode)

    def _source_size(self, path: Path, video: str, stem: str) -> tuple[int | None, int | None]:
        """The source frame's size when the JSON lacks `canvas_width` (OpenPose's own files do)."""
        if self.frames is None or "canvas_width" in _json_keys(path):
            return None, None
        for suffix in IMAGE_SUFFIXES:
            frame = self.frames / video / f"{stem}{suffix}"
            if frame.is_file():
                with Image.open(frame) as image:
                    return image.size
        return None, None

    def record(self) -> dict[str, str]:
        return {"keypoints": str(self.folder), "resize_mode": self.resize_mode, "found_by": self.origin}


def _json_keys(path: Path) -> set[str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return set()  # read_keypoints_json reports it with the reason
    return set(data) if isinstance(data, dict) else set()


def read_infer_record(pred_root: Path, gt_root: Path) -> tuple[Path, dict] | None:
    """(path, settings) of the `infer.json` beside `pred/` (or `gt/`), as `magicpose infer-tiktok` writes it."""
    for root in (pred_root, gt_root):
        path = Path(root).parent / "infer.json"
        if path.is_file():
            try:
                settings = json.loads(path.read_text(encoding="utf-8")).get("settings")
            except (OSError, json.JSONDecodeError, AttributeError):
                continue
            if isinstance(settings, dict):
                return path, settings
    return None


def find_keypoints(
    pred_root: Path, gt_root: Path, keypoints: Path | None, resize_mode: str | None
) -> FaceKeypoints | str:
    """The keypoints for Face-Cos: `--keypoints`, else the dataset named in `infer.json`; else why there are none.

    `infer.json` (written by `infer-tiktok`) records the dataset folder, the split and `inference.resize_mode`,
    so `DATA/keypoints_<split>/` is found without extra options.
    """
    if resize_mode is not None and resize_mode not in RESIZE_MODES:
        raise UserError(f"keypoints resize mode: {resize_mode!r} is not one of {', '.join(RESIZE_MODES)}")
    found = read_infer_record(pred_root, gt_root)
    data = Path(found[1].get("data", "")) if found and found[1].get("data") else None
    split = str(found[1].get("split", "")) if found else ""
    mode = resize_mode or (found[1].get("inference", {}).get("resize_mode") if found else None) or "crop"
    frames = data / split if data and split and (data / split).is_dir() else None
    if keypoints is not None:
        if not keypoints.is_dir():
            raise UserError(f"{keypoints}: no such keypoints folder (expected <video>/<frame>.json)")
        return FaceKeypoints(keypoints, mode, frames, "--keypoints")
    if found is None:
        return "no keypoints: pass --keypoints DIR (OpenPose JSON per frame) or evaluate an infer-tiktok output"
    folder = data / f"keypoints_{split}" if data and split else None
    if folder is None or not folder.is_dir():
        return f"no keypoints: {folder or 'the dataset'} named by {found[0]} is not a folder (pass --keypoints DIR)"
    return FaceKeypoints(folder, mode, frames, str(found[0]))
