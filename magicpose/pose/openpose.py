"""OpenPose keypoints: data classes, the OpenPose JSON format, and rendering to ControlNet pose maps.

The rendering reproduces the ControlNet v1.1 OpenPose annotator (`annotator/openpose/util.py`,
`draw_bodypose` / `draw_handpose` / `draw_facepose`, called body -> hands -> faces on a black canvas),
which is the exact visual format `control_v11p_sd15_openpose` was trained on and MagicPose's TikTok pose
maps were made with:

- body: the first 17 of the annotator's limbs (it never draws its two ear-shoulder limbs), each a filled
  ellipse between its two joints with semi-minor axis ("stick width") 4, in the 18-entry colour list; the
  annotator then multiplies the whole canvas by 0.6 (uint8 truncation), so limbs end up at 60 % brightness;
  joints are then drawn on top as filled circles of radius 4 in the full-brightness per-joint colours;
- hands: the 20 bone edges as lines of thickness 2, edge `i` coloured HSV(i / 20, 1, 1), then the 21
  keypoints as filled blue circles of radius 4;
- face: the 70 landmarks (68 + 2 pupils) as filled white circles of radius 3.

Colour order: the annotator calls cv2 drawing functions, but its canvas is RGB: the gradio demo feeds the
returned map straight to the model (`torch.from_numpy(detected_map) / 255`, no channel flip) and the input
images are RGB. So `(255, 0, 0)` (the nose, the neck-right-shoulder limb) is red and hand points are blue.
`render_pose` returns RGB as well.

Sizes at other resolutions: the annotator draws with fixed pixel sizes at its detect resolution (short side
512 by default) and resizes the map to the image. We instead draw directly at the requested size and scale
every size by `min(width, height) / 512`, rounded half up and kept >= 1 px (see `marker_sizes`), so a map
drawn at 1024 px and one drawn at 512 px look alike after resizing and a 64 px test canvas still shows
every limb (1 px semi-axis: 3 px wide). At a 512 short side the output is pixel-identical to the annotator's.
Pass `thickness_scale=1.0` to get the annotator's fixed sizes at any resolution.

Keypoints are in pixels of the frame (`PoseFrame.width` x `PoseFrame.height`); a confidence <= threshold
(default 0) means "not detected": that point is not drawn, nor any limb or hand edge touching it. Like
the annotator (whose missing hand/face points are negative), hand and face points whose pixel position
truncates to a coordinate < 1 are not drawn either.
"""

from __future__ import annotations

import colorsys
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import cv2
import numpy as np

from magicpose.errors import UserError

RGB: TypeAlias = tuple[int, int, int]

# COCO-18 in OpenPose's order (the order of ControlNet's `candidate`/`subset` and of `pose_keypoints_2d`).
BODY_KEYPOINTS: tuple[str, ...] = (
    "nose", "neck",
    "r_shoulder", "r_elbow", "r_wrist",
    "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle",
    "l_hip", "l_knee", "l_ankle",
    "r_eye", "l_eye", "r_ear", "l_ear",
)  # fmt: skip

# The 17 limbs the annotator draws, 0-based, in its drawing order (later limbs paint over earlier ones).
BODY_LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7),
    (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
    (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip

# Joint `i` and limb `i` share colour `i` (the annotator indexes one list for both; limbs use the first 17).
BODY_COLORS: tuple[RGB, ...] = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip

# The annotator dims the finished limb layer with `(canvas * 0.6).astype(np.uint8)`; every limb pixel holds
# exactly one colour (fills overwrite, no blending), so drawing pre-dimmed colours gives identical pixels
# without a full-canvas multiply.
LIMB_DIM = 0.6
LIMB_COLORS: tuple[RGB, ...] = tuple(
    tuple(int(v) for v in row)
    for row in (np.array(BODY_COLORS[: len(BODY_LIMBS)], np.uint8) * LIMB_DIM).astype(np.uint8)
)

HAND_EDGES: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10),
    (10, 11), (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20),
)  # fmt: skip


def _hand_edge_color(index: int) -> RGB:
    """HSV rainbow colour of hand edge `index`, rounded to uint8 exactly as cv2 rounds the annotator's floats.

    colorsys uses the same arithmetic as matplotlib's `hsv_to_rgb` (which the annotator calls); cv2 turns
    float colours into uint8 with round-half-to-even, which is what `np.rint` does.
    """
    rgb = np.array(colorsys.hsv_to_rgb(index / float(len(HAND_EDGES)), 1.0, 1.0)) * 255
    red, green, blue = (int(v) for v in np.rint(rgb))
    return red, green, blue


HAND_EDGE_COLORS: tuple[RGB, ...] = tuple(_hand_edge_color(i) for i in range(len(HAND_EDGES)))
HAND_POINT_COLOR: RGB = (0, 0, 255)
FACE_POINT_COLOR: RGB = (255, 255, 255)

# Sizes at the reference resolution (short side 512, the annotator's default detect resolution).
REFERENCE_SIZE = 512
STICK_WIDTH = 4  # semi-minor axis of a limb ellipse
JOINT_RADIUS = 4
HAND_LINE_THICKNESS = 2
HAND_POINT_RADIUS = 4
FACE_POINT_RADIUS = 3

NUM_BODY_KEYPOINTS = len(BODY_KEYPOINTS)
NUM_HAND_KEYPOINTS = 21
FACE_KEYPOINT_COUNTS = (70, 68)  # 68 landmarks + 2 pupils, or the landmarks alone

PARTS: tuple[str, ...] = ("body", "hands", "face")

# OpenPose's default BODY_25 model has MidHip at 8 and 6 foot points at the end; these are its COCO-18 rows.
_BODY25_TO_COCO18 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
# cv2 takes int32 pixel positions; clipping absurd coordinates keeps it from overflowing.
_MAX_COORD = 1e7


# ----------------------------------------------------------------------------------------------------------
# Data classes
# ----------------------------------------------------------------------------------------------------------


def _as_points(name: str, values: Any, counts: Sequence[int]) -> np.ndarray:
    """`values` as a float32 (N, 3) array with N in `counts`; ValueError (a programming error) otherwise."""
    points = np.asarray(values, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 3 or points.shape[0] not in counts:
        expected = " or ".join(f"({n}, 3)" for n in counts)
        raise ValueError(f"{name} keypoints must have shape {expected}, got {points.shape}")
    return points


@dataclass
class PersonKeypoints:
    """One person's keypoints, rows of (x, y, confidence) in pixels of the frame; confidence 0 = missing."""

    body: np.ndarray  # (18, 3), COCO-18 order (BODY_KEYPOINTS)
    left_hand: np.ndarray | None = None  # (21, 3), the hand at l_wrist
    right_hand: np.ndarray | None = None  # (21, 3), the hand at r_wrist
    face: np.ndarray | None = None  # (70, 3): 68 landmarks + 2 pupils; (68, 3) also accepted

    def __post_init__(self) -> None:
        self.body = _as_points("body", self.body, (NUM_BODY_KEYPOINTS,))
        if self.left_hand is not None:
            self.left_hand = _as_points("left_hand", self.left_hand, (NUM_HAND_KEYPOINTS,))
        if self.right_hand is not None:
            self.right_hand = _as_points("right_hand", self.right_hand, (NUM_HAND_KEYPOINTS,))
        if self.face is not None:
            self.face = _as_points("face", self.face, FACE_KEYPOINT_COUNTS)

    def transformed(
        self, scale: tuple[float, float], offset: tuple[float, float] = (0.0, 0.0)
    ) -> PersonKeypoints:
        """A copy with every point moved to `x * sx + tx, y * sy + ty` (confidences unchanged)."""
        factor = np.array([scale[0], scale[1], 1.0], np.float64)
        shift = np.array([offset[0], offset[1], 0.0], np.float64)

        def move(points: np.ndarray) -> np.ndarray:
            return (points * factor + shift).astype(np.float32)

        def move_optional(points: np.ndarray | None) -> np.ndarray | None:
            return None if points is None else move(points)

        hands = move_optional(self.left_hand), move_optional(self.right_hand)
        return PersonKeypoints(move(self.body), hands[0], hands[1], move_optional(self.face))


@dataclass
class PoseFrame:
    """The people detected in one frame of `width` x `height` pixels."""

    people: list[PersonKeypoints]
    width: int
    height: int

    def __post_init__(self) -> None:
        if any(int(v) != v or v < 1 for v in (self.width, self.height)):
            raise ValueError(f"frame size must be positive integers, got {self.width}x{self.height}")
        self.width, self.height = int(self.width), int(self.height)

    def transformed(
        self, scale: tuple[float, float], offset: tuple[float, float], size: tuple[int, int]
    ) -> PoseFrame:
        """Keypoints moved by `x * sx + tx, y * sy + ty` onto a `size=(width, height)` canvas (crop/resize)."""
        return PoseFrame([p.transformed(scale, offset) for p in self.people], size[0], size[1])

    def resized(self, width: int, height: int) -> PoseFrame:
        """The same poses on a `width` x `height` canvas (keypoints scaled with it)."""
        return self.transformed((width / self.width, height / self.height), (0.0, 0.0), (width, height))


# ----------------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MarkerSizes:
    """Pixel sizes of the drawn primitives for one canvas."""

    stick_width: int  # semi-minor axis of the limb ellipses
    joint_radius: int
    hand_line_thickness: int
    hand_point_radius: int
    face_point_radius: int


def marker_sizes(width: int, height: int, thickness_scale: float | None = None) -> MarkerSizes:
    """Sizes for a `width` x `height` canvas: the annotator's sizes times `min(width, height) / 512`.

    Each is rounded half up and kept >= 1 so tiny canvases still show every limb, edge and point.
    `thickness_scale` replaces the automatic factor (1.0 = the annotator's fixed pixel sizes).
    """
    scale = min(width, height) / REFERENCE_SIZE if thickness_scale is None else thickness_scale

    def size(base: int) -> int:
        return max(1, math.floor(base * scale + 0.5))

    return MarkerSizes(
        size(STICK_WIDTH),
        size(JOINT_RADIUS),
        size(HAND_LINE_THICKNESS),
        size(HAND_POINT_RADIUS),
        size(FACE_POINT_RADIUS),
    )


Points: TypeAlias = list[list[float]]


def _layout(points: np.ndarray, sx: float, sy: float, threshold: float) -> tuple[Points, list[bool]]:
    """Output-canvas positions (scaled before truncation, as the annotator does) and which points are drawn.

    A point is drawn when its confidence is above the threshold and its coordinates are finite. Plain
    Python lists, because the drawing loops index them per primitive and numpy scalars are slow there.
    """
    xy = points[:, :2].astype(np.float64) * (sx, sy)
    seen = (points[:, 2] > threshold) & np.isfinite(xy).all(axis=1)
    xy = np.clip(np.nan_to_num(xy), -_MAX_COORD, _MAX_COORD)
    return xy.tolist(), seen.tolist()


def _draw_limb(canvas: np.ndarray, start: list[float], end: list[float], half_width: int, color: RGB) -> None:
    """Filled ellipse from `start` to `end`, with the annotator's integer truncations, so pixels match it."""
    (x0, y0), (x1, y1) = start, end
    length = ((y0 - y1) ** 2 + (x0 - x1) ** 2) ** 0.5
    angle = math.degrees(math.atan2(y0 - y1, x0 - x1))
    center = (int((x0 + x1) / 2), int((y0 + y1) / 2))
    polygon = cv2.ellipse2Poly(center, (int(length / 2), half_width), int(angle), 0, 360, 1)
    cv2.fillConvexPoly(canvas, polygon, color)


def _draw_bodies(canvas: np.ndarray, bodies: list[tuple[Points, list[bool]]], sizes: MarkerSizes) -> None:
    """Limbs (limb-major, then person, like the annotator), pre-dimmed; then full-brightness joints on top."""
    for limb, (a, b) in enumerate(BODY_LIMBS):
        for xy, seen in bodies:
            if seen[a] and seen[b]:
                _draw_limb(canvas, xy[a], xy[b], sizes.stick_width, LIMB_COLORS[limb])
    for joint in range(NUM_BODY_KEYPOINTS):
        for xy, seen in bodies:
            if seen[joint]:
                x, y = xy[joint]
                cv2.circle(canvas, (int(x), int(y)), sizes.joint_radius, BODY_COLORS[joint], thickness=-1)


def _on_canvas(xy: Points, seen: list[bool]) -> tuple[list[tuple[int, int]], list[bool]]:
    """Integer positions and the annotator's hand/face rule: drawn only if detected and both coordinates >= 1."""
    ints = [(int(x), int(y)) for x, y in xy]
    return ints, [ok and x >= 1 and y >= 1 for (x, y), ok in zip(ints, seen)]


def _draw_hand(canvas: np.ndarray, xy: Points, seen: list[bool], sizes: MarkerSizes) -> None:
    """Rainbow edges, then blue points, of one hand."""
    ints, ok = _on_canvas(xy, seen)
    for edge, (a, b) in enumerate(HAND_EDGES):
        if ok[a] and ok[b]:
            cv2.line(canvas, ints[a], ints[b], HAND_EDGE_COLORS[edge], thickness=sizes.hand_line_thickness)
    for point, keep in zip(ints, ok):
        if keep:
            cv2.circle(canvas, point, sizes.hand_point_radius, HAND_POINT_COLOR, thickness=-1)


def _draw_face(canvas: np.ndarray, xy: Points, seen: list[bool], sizes: MarkerSizes) -> None:
    """White landmark dots of one face."""
    ints, ok = _on_canvas(xy, seen)
    for point, keep in zip(ints, ok):
        if keep:
            cv2.circle(canvas, point, sizes.face_point_radius, FACE_POINT_COLOR, thickness=-1)


def _check_parts(parts: Iterable[str]) -> frozenset[str]:
    chosen = frozenset((parts,) if isinstance(parts, str) else parts)
    unknown = chosen - set(PARTS)
    if unknown:
        raise ValueError(f"unknown pose parts {sorted(unknown)}; choose from {PARTS}")
    return chosen


def render_pose(
    frame: PoseFrame,
    parts: Iterable[str] = PARTS,
    size: tuple[int, int] | None = None,
    *,
    threshold: float = 0.0,
    thickness_scale: float | None = None,
) -> np.ndarray:
    """Draw `frame` as a ControlNet v1.1 OpenPose map: (H, W, 3) uint8 RGB on black.

    `size=(width, height)` renders at another resolution (keypoints scaled from the frame's size). `parts`
    picks any of "body", "hands", "face" (drop hands/face for the dropout augmentation). Points with
    confidence <= `threshold` are skipped, with every limb/edge touching them. Marker sizes follow
    `marker_sizes` (`thickness_scale` overrides the automatic `min(W, H) / 512`).
    """
    chosen = _check_parts(parts)
    width, height = (frame.width, frame.height) if size is None else (int(size[0]), int(size[1]))
    if width < 1 or height < 1:
        raise ValueError(f"render size must be positive, got {width}x{height}")
    sx, sy = width / frame.width, height / frame.height
    sizes = marker_sizes(width, height, thickness_scale)
    canvas = np.zeros((height, width, 3), np.uint8)
    # Same order as the annotator's draw_pose: all bodies, then all hands (left, right per person), then faces.
    if "body" in chosen:
        _draw_bodies(canvas, [_layout(p.body, sx, sy, threshold) for p in frame.people], sizes)
    if "hands" in chosen:
        for person in frame.people:
            for hand in (person.left_hand, person.right_hand):
                if hand is not None:
                    _draw_hand(canvas, *_layout(hand, sx, sy, threshold), sizes)
    if "face" in chosen:
        for person in frame.people:
            if person.face is not None:
                _draw_face(canvas, *_layout(person.face, sx, sy, threshold), sizes)
    return canvas


# ----------------------------------------------------------------------------------------------------------
# OpenPose JSON
# ----------------------------------------------------------------------------------------------------------

_JSON_KEYS = {
    "body": "pose_keypoints_2d",
    "left_hand": "hand_left_keypoints_2d",
    "right_hand": "hand_right_keypoints_2d",
    "face": "face_keypoints_2d",
}


def _flat(points: np.ndarray | None) -> list[float]:
    """Row-major x, y, c values; each float32 written with its shortest repr so files stay small yet exact."""
    if points is None:
        return []
    return [float(str(v)) for v in points.astype(np.float32).ravel()]


def write_keypoints_json(path: str | Path, frame: PoseFrame) -> None:
    """Write `frame` as OpenPose JSON (version 1.3) plus `canvas_width`/`canvas_height`, as ControlNet tools do.

    Absent hands/face are written as empty lists, the way OpenPose writes undetected parts.
    """
    people = [
        {key: _flat(getattr(person, attr)) for attr, key in _JSON_KEYS.items()} for person in frame.people
    ]
    data = {"version": 1.3, "people": people, "canvas_width": frame.width, "canvas_height": frame.height}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # allow_nan=False: NaN/inf are not JSON, and other OpenPose readers would choke on them.
    path.write_text(json.dumps(data, allow_nan=False) + "\n", encoding="utf-8")


def _parse_points(path: Path, index: int, key: str, values: Any, counts: Sequence[int]) -> np.ndarray | None:
    """One `*_keypoints_2d` list as an (N, 3) array; None for a missing/null/empty list; UserError if malformed."""
    if values is None or (isinstance(values, list) and not values):
        return None
    where = f"{path}: people[{index}].{key}"
    if not isinstance(values, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):
        raise UserError(f"{where} must be a flat list of numbers")
    if len(values) % 3 or len(values) // 3 not in counts:
        expected = " or ".join(str(3 * n) for n in counts)
        raise UserError(f"{where} has {len(values)} values, expected {expected} (x, y, confidence per point)")
    points = np.asarray(values, np.float64).reshape(-1, 3)
    if not np.isfinite(points).all():
        raise UserError(f"{where} contains NaN or infinite values")
    return points.astype(np.float32)


def _parse_person(path: Path, index: int, entry: Any) -> PersonKeypoints:
    if not isinstance(entry, dict):
        raise UserError(f"{path}: people[{index}] is not a JSON object")
    body = _parse_points(path, index, _JSON_KEYS["body"], entry.get(_JSON_KEYS["body"]), (18, 25))
    if body is None:  # a person without body points (e.g. only a face) is kept, with no joint detected
        body = np.zeros((NUM_BODY_KEYPOINTS, 3), np.float32)
    elif len(body) == 25:
        body = body[list(_BODY25_TO_COCO18)]
    hands = [
        _parse_points(path, index, _JSON_KEYS[k], entry.get(_JSON_KEYS[k]), (21,))
        for k in ("left_hand", "right_hand")
    ]
    face = _parse_points(path, index, _JSON_KEYS["face"], entry.get(_JSON_KEYS["face"]), FACE_KEYPOINT_COUNTS)
    return PersonKeypoints(body, hands[0], hands[1], face)


def _canvas_size(path: Path, data: dict, width: int | None, height: int | None) -> tuple[int, int]:
    """The file's canvas size when it has one (its keypoints are in those pixels), else the caller's."""
    size = []
    for key, fallback in (("canvas_width", width), ("canvas_height", height)):
        value = data.get(key, fallback)
        if value is None:
            raise UserError(f"{path}: no {key} in the file; pass width= and height= to read_keypoints_json")
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or value < 1:
            raise UserError(f"{path}: {key} must be a positive integer, got {value!r}")
        size.append(int(value))
    return size[0], size[1]


def _load_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read keypoints file ({type(err).__name__}: {err})") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(
            f"{path}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno})"
        ) from err


def read_keypoints_json(
    path: str | Path, *, width: int | None = None, height: int | None = None
) -> PoseFrame:
    """Read an OpenPose JSON file (COCO-18 or BODY_25 body, optional hands/face) into a `PoseFrame`.

    The canvas size comes from `canvas_width`/`canvas_height` when the file has them (the keypoints are in
    those pixels), otherwise from `width`/`height`. Any malformed content raises a one-line `UserError`.
    """
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("people"), list):
        raise UserError(f"{path}: not OpenPose keypoints JSON (expected an object with a 'people' list)")
    frame_width, frame_height = _canvas_size(path, data, width, height)
    people = [_parse_person(path, i, entry) for i, entry in enumerate(data["people"])]
    return PoseFrame(people, frame_width, frame_height)
