"""mmpose-style COCO-17 skeleton maps: the input style of the released Follow-Your-Pose pose adapter.

The adapter was trained on mmpose (top-down HRNet, COCO-17) visualisations with the background replaced by black
(Follow-Your-Pose README and its issues #38 / #50). This module draws that style from keypoints:

- black background, only the 19 links of mmpose's COCO skeleton, no joint dots (none are visible in the
  released `pose_example` videos);
- each link a thick line with round ends, `width` pixels across (default `default_line_width`: 1 % of the
  shorter image side, rounded half up, at least 1 px); a pixel is painted when its centre lies no more than
  `width / 2` from the segment, so a horizontal or vertical line of odd width through pixel centres covers
  exactly `width` rows or columns, and a 1 px line between two pixel rows paints both (no gaps);
- colours, in RGB:
  * `HEAD_TORSO` (255, 153, 51) orange: the face links (eyes, nose, ears), the ear-shoulder links and the
    torso (shoulder-shoulder, hip-hip, shoulder-hip);
  * `LEFT` (0, 255, 0) green: the person's LEFT arm (shoulder-elbow-wrist) and LEFT leg (hip-knee-ankle);
  * `RIGHT` (0, 128, 255) blue: the person's RIGHT arm and RIGHT leg.
  mmpose's COCO dataset info lists these as [51, 153, 255] (head/torso), [0, 255, 0] (left) and
  [255, 128, 0] (right), and its OpenCV drawing writes them into BGR images; read back as RGB that is the
  orange / green / blue measured on the released skeleton videos. A person facing the camera has the
  green side on the image's right.
- a link is drawn only when both of its keypoints have a confidence above `threshold` (default 0.3, mmpose's
  demo default) and lie on the image (mmpose skips links to off-image points); later links paint over
  earlier ones in mmpose's order (legs, torso, arms, head).

The rasteriser is plain numpy, so the pixels are the same in `.venv` and `.venv-pose` (which carry different
OpenCV versions). `render_mmpose` takes the OpenPose COCO-18 keypoints `magicpose.pose.extract` writes and
converts them with `coco18_to_coco17`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeAlias

import numpy as np

from magicpose.pose.backends.mapping import COCO17_TO_COCO18
from magicpose.pose.openpose import NUM_BODY_KEYPOINTS, PoseFrame

RGB: TypeAlias = tuple[int, int, int]

COCO17_KEYPOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
NUM_COCO17 = len(COCO17_KEYPOINTS)

HEAD_TORSO: RGB = (255, 153, 51)
LEFT: RGB = (0, 255, 0)
RIGHT: RGB = (0, 128, 255)

# mmpose's COCO skeleton in its drawing order (0-based COCO-17 indices), with each link's colour.
COCO17_LINKS: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12),  # left leg, right leg
    (11, 12), (5, 11), (6, 12), (5, 6),  # torso
    (5, 7), (6, 8), (7, 9), (8, 10),  # arms
    (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),  # eyes, nose, ears, ear-shoulder
)  # fmt: skip
LINK_COLORS: tuple[RGB, ...] = (
    LEFT, LEFT, RIGHT, RIGHT,
    HEAD_TORSO, HEAD_TORSO, HEAD_TORSO, HEAD_TORSO,
    LEFT, RIGHT, LEFT, RIGHT,
    HEAD_TORSO, HEAD_TORSO, HEAD_TORSO, HEAD_TORSO, HEAD_TORSO, HEAD_TORSO, HEAD_TORSO,
)  # fmt: skip

DEFAULT_THRESHOLD = 0.3
LINE_WIDTH_FRACTION = 0.01

# The COCO-18 row of each COCO-17 keypoint: the inverse of mapping.COCO17_TO_COCO18 (COCO-18 adds the neck).
COCO18_ROWS: tuple[int, ...] = tuple(COCO17_TO_COCO18.index(k) for k in range(NUM_COCO17))


def coco18_to_coco17(body: np.ndarray) -> np.ndarray:
    """OpenPose COCO-18 body rows (x, y, confidence) -> COCO-17 rows in COCO order (the neck is dropped)."""
    points = np.asarray(body, np.float32)
    if points.shape != (NUM_BODY_KEYPOINTS, 3):
        raise ValueError(f"COCO-18 body keypoints must be (18, 3), got {points.shape}")
    return points[list(COCO18_ROWS)].copy()


def default_line_width(width: int, height: int) -> int:
    """1 % of the shorter side, rounded half up, at least 1 px (5 px at 512)."""
    return max(1, math.floor(LINE_WIDTH_FRACTION * min(width, height) + 0.5))


def draw_line(canvas: np.ndarray, start: Sequence[float], end: Sequence[float], width: int, color: RGB) -> None:
    """Paint every pixel whose centre is within `width / 2` of the segment (a capsule: round ends)."""
    radius = width / 2.0
    (x0, y0), (x1, y1) = (float(v) for v in start), (float(v) for v in end)
    height, cols = canvas.shape[:2]
    left, right = max(0, math.floor(min(x0, x1) - radius)), min(cols - 1, math.ceil(max(x0, x1) + radius))
    top, bottom = max(0, math.floor(min(y0, y1) - radius)), min(height - 1, math.ceil(max(y0, y1) + radius))
    if left > right or top > bottom:
        return
    ys, xs = np.mgrid[top : bottom + 1, left : right + 1].astype(np.float64)
    dx, dy = x1 - x0, y1 - y0
    length2 = dx * dx + dy * dy
    # Position of each pixel's foot point along the segment, clamped to its ends.
    t = np.zeros_like(xs) if length2 == 0 else np.clip(((xs - x0) * dx + (ys - y0) * dy) / length2, 0.0, 1.0)
    distance2 = (xs - (x0 + t * dx)) ** 2 + (ys - (y0 + t * dy)) ** 2
    canvas[top : bottom + 1, left : right + 1][distance2 <= radius * radius] = color


def _visible(points: np.ndarray, width: int, height: int, threshold: float) -> np.ndarray:
    """Keypoints confident enough, finite, and on the image."""
    x, y, conf = points[:, 0], points[:, 1], points[:, 2]
    finite = np.isfinite(points).all(axis=1)
    with np.errstate(invalid="ignore"):
        inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    return finite & inside & (conf > threshold)


def draw_coco17(
    canvas: np.ndarray, keypoints: np.ndarray, *, width: int | None = None, threshold: float = DEFAULT_THRESHOLD
) -> np.ndarray:
    """Draw one person's COCO-17 (17, 3) keypoints (pixels of `canvas`) onto the RGB `canvas`, in place."""
    points = np.asarray(keypoints, np.float64)
    if points.shape != (NUM_COCO17, 3):
        raise ValueError(f"COCO-17 keypoints must be (17, 3), got {points.shape}")
    height, cols = canvas.shape[:2]
    line = default_line_width(cols, height) if width is None else int(width)
    if line < 1:
        raise ValueError(f"line width must be at least 1 px, got {width}")
    seen = _visible(points, cols, height, threshold)
    for (a, b), color in zip(COCO17_LINKS, LINK_COLORS):
        if seen[a] and seen[b]:
            draw_line(canvas, points[a, :2], points[b, :2], line, color)
    return canvas


def render_coco17(
    people: Sequence[np.ndarray],
    width: int,
    height: int,
    *,
    line_width: int | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> np.ndarray:
    """An (H, W, 3) uint8 RGB mmpose-style map of every person's COCO-17 keypoints on black."""
    if width < 1 or height < 1:
        raise ValueError(f"render size must be positive, got {width}x{height}")
    canvas = np.zeros((height, width, 3), np.uint8)
    for keypoints in people:
        draw_coco17(canvas, keypoints, width=line_width, threshold=threshold)
    return canvas


def render_mmpose(
    frame: PoseFrame,
    size: tuple[int, int] | None = None,
    *,
    line_width: int | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> np.ndarray:
    """`frame`'s OpenPose (COCO-18) bodies as an mmpose-style COCO-17 map; hands and face are not drawn.

    `size=(width, height)` renders at another resolution (keypoints scaled from the frame's size).
    """
    width, height = (frame.width, frame.height) if size is None else (int(size[0]), int(size[1]))
    scale = np.array([width / frame.width, height / frame.height, 1.0], np.float64)
    people = [coco18_to_coco17(person.body) * scale for person in frame.people]
    return render_coco17(people, width, height, line_width=line_width, threshold=threshold)
