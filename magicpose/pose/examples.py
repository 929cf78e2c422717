"""Procedural dances as OpenPose keypoints: the source of the shipped example pose sequences and skeleton videos.

`dance_keypoints(motion, frames, size)` animates one front-facing dancer (COCO-18 body, 21-point hands, 70-point
face, all with confidence 1) with simple 2D forward kinematics; `magicpose.pose.openpose.render_pose` turns the
frames into MagicPose's ControlNet pose maps and `magicpose.pose.mmpose.render_mmpose` into Follow-Your-Pose's
skeleton style. Motions are periodic (`period` frames per cycle), so one motion gives both a short pose
sequence and a long skeleton video. `scripts/tools/make_examples.py` writes every shipped file from
`POSE_SEQUENCES` and `SKELETON_VIDEOS` (and the reference photograph, `astronaut_image`), and a test checks
that the shipped files still match.

Coordinates while posing are "body units" (the standing figure is about 1 tall), x right, y down, the pelvis
at the origin; the person's right side is on the image's left (facing the camera).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from magicpose.pose.openpose import PersonKeypoints, PoseFrame

# Body geometry in body units.
TORSO, SHOULDER, HIP = 0.30, 0.11, 0.075  # pelvis -> neck, half shoulder width, half hip width
UPPER_ARM, FOREARM, HAND = 0.16, 0.14, 0.1
THIGH, SHIN = 0.24, 0.23
HEAD_UP, HEAD_R = 0.11, 0.085  # neck -> head centre, head radius
# Placement: body units -> pixels, and where the standing ankles are (fractions of the shorter side / height).
SCALE, GROUND = 0.72, 0.94

RIGHT, LEFT = -1, 1  # the person's sides, as the image-x direction they point to


@dataclass(frozen=True)
class Pose:
    """Joint angles (radians) and placement of one frame.

    `arm_*`: upper arm from hanging (0) through sideways (pi/2) to overhead (pi); `elbow_*`: forearm turned
    further the same way (< 0 bends inwards); `leg_*`: thigh outwards from vertical; `lift_*`: knee raised
    towards the camera (0..1); `bob`: jump height and `shift`: sideways step, in body units; `mouth`: 0..1.
    """

    arm_r: float
    arm_l: float
    elbow_r: float
    elbow_l: float
    leg_r: float = 0.04
    leg_l: float = 0.04
    lift_r: float = 0.0
    lift_l: float = 0.0
    lean: float = 0.0
    head_roll: float = 0.0
    bob: float = 0.0
    shift: float = 0.0
    mouth: float = 0.0


def jumping_jacks(phase: float) -> Pose:
    """Arms from the sides to overhead while the legs jump apart, and back; a hop at every change."""
    open_ = 0.5 - 0.5 * math.cos(phase)
    return Pose(
        arm_r=0.2 + 2.6 * open_, arm_l=0.2 + 2.6 * open_,
        elbow_r=0.25 - 0.15 * open_, elbow_l=0.25 - 0.15 * open_,
        leg_r=0.04 + 0.32 * open_, leg_l=0.04 + 0.32 * open_,
        lean=0.03 * math.sin(phase), head_roll=0.08 * math.sin(phase),
        bob=0.05 * abs(math.sin(phase)), mouth=0.5 * open_,
    )  # fmt: skip


def wave_march(phase: float) -> Pose:
    """Marching on the spot (knees up in turn, hips swaying) while the right hand waves overhead and the left
    arm punches up on every left step."""
    step_r, step_l = max(0.0, math.sin(phase)), max(0.0, -math.sin(phase))
    wave = math.sin(2.0 * phase)
    return Pose(
        arm_r=2.3 + 0.15 * wave, arm_l=0.45 + 1.6 * step_l,
        elbow_r=0.5 + 0.55 * wave, elbow_l=-0.5 + 1.3 * step_l,
        lift_r=step_r, lift_l=step_l,
        lean=0.07 * math.sin(phase), head_roll=-0.1 * math.sin(phase),
        shift=0.04 * math.sin(phase), mouth=0.3 + 0.3 * wave,
    )  # fmt: skip


MOTIONS: dict[str, Callable[[float], Pose]] = {"jumping_jacks": jumping_jacks, "wave_march": wave_march}

# What ships: name -> (motion, frames, period). The pose sequences go to example_data/pose_sequence/<name>/
# (MagicPose, 512x512 OpenPose maps), the videos to pose_example/<name>.mp4 (Follow-Your-Pose, mmpose style):
# 160 frames, so the original's 32 frames at stride 5 (156 frames) fit.
POSE_SEQUENCES: dict[str, tuple[str, int, float]] = {"001": ("jumping_jacks", 24, 12), "002": ("wave_march", 24, 12)}
SKELETON_VIDEOS: dict[str, tuple[str, int, float]] = {
    "dance_001": ("jumping_jacks", 160, 40), "dance_002": ("wave_march", 160, 40),
}  # fmt: skip
EXAMPLE_SIZE = 512
VIDEO_FPS = 30.0


# ----------------------------------------------------------------------------------------------------------
# Kinematics (body units)
# ----------------------------------------------------------------------------------------------------------


def _unit(angle: float) -> np.ndarray:
    """The direction `angle` radians clockwise from straight up (image y points down)."""
    return np.array([math.sin(angle), -math.cos(angle)])


def _across(up: np.ndarray) -> np.ndarray:
    """`up` turned a quarter clockwise: the image-right direction of a body part pointing `up`."""
    return np.array([-up[1], up[0]])


def _arm(shoulder: np.ndarray, up: np.ndarray, side: int, angle: float, elbow: float) -> list[np.ndarray]:
    """Elbow and wrist of a straight-on arm: angles turn the limb from hanging down outwards (to `side`)."""
    across = _across(up)

    def direction(a: float) -> np.ndarray:
        return -up * math.cos(a) + side * across * math.sin(a)

    elbow_at = shoulder + UPPER_ARM * direction(angle)
    return [elbow_at, elbow_at + FOREARM * direction(angle + elbow)]


def _leg(hip: np.ndarray, side: int, spread: float, lift: float) -> list[np.ndarray]:
    """Knee and ankle; a lifted knee points the thigh at the camera, so it looks shorter and the foot rises."""
    angle = spread + 0.25 * lift
    knee = hip + THIGH * (1.0 - 0.75 * lift) * np.array([side * math.sin(angle), math.cos(angle)])
    return [knee, knee + SHIN * np.array([side * math.sin(0.5 * spread), math.cos(0.5 * spread)])]


def _face_template(mouth: float) -> np.ndarray:
    """The 70 OpenPose face points (iBUG 68 + right/left pupil) of a frontal face, in head radii, y down."""
    jaw_angles = np.linspace(0.0, math.pi, 17)  # from the right ear (image left) over the chin
    jaw = np.stack([-0.9 * np.cos(jaw_angles), 0.05 + 0.9 * np.sin(jaw_angles)], 1)
    u = np.linspace(0.0, 1.0, 5)
    brow_y = -0.45 - 0.06 * np.sin(math.pi * u)
    brows = [np.stack([-0.65 + 0.5 * u, brow_y], 1), np.stack([0.15 + 0.5 * u, brow_y[::-1]], 1)]
    bridge = np.stack([np.zeros(4), np.linspace(-0.25, 0.2, 4)], 1)
    nostrils = np.array([[-0.16, 0.28], [-0.08, 0.31], [0.0, 0.32], [0.08, 0.31], [0.16, 0.28]])
    eye = np.array([[-1.0, 0.0], [-0.4, -1.0], [0.4, -1.0], [1.0, 0.0], [0.4, 1.0], [-0.4, 1.0]]) * (0.15, 0.07)
    eyes = [eye + (-0.35, -0.15), eye + (0.35, -0.15)]  # each from its image-left corner, over the top
    outer = _lip(12, 0.3, 0.07, 0.07 + 0.2 * mouth)
    inner = _lip(8, 0.2, 0.02, 0.02 + 0.18 * mouth)
    pupils = np.array([[-0.35, -0.15], [0.35, -0.15]])
    return np.concatenate([jaw, *brows, bridge, nostrils, *eyes, outer, inner, pupils])


def _lip(count: int, half_width: float, upper: float, lower: float) -> np.ndarray:
    """A lip contour from the right corner (image left) over the upper lip and back along the lower one."""
    angles = math.pi + np.arange(count) * 2.0 * math.pi / count
    heights = np.where(np.sin(angles) < 0, upper, lower)
    return np.stack([half_width * np.cos(angles), 0.58 + heights * np.sin(angles)], 1)


def _hand(wrist: np.ndarray, elbow: np.ndarray, side: int) -> np.ndarray:
    """21 OpenPose hand points: the wrist, then thumb, index, middle, ring and little finger (4 each), open."""
    along = (wrist - elbow) / (np.linalg.norm(wrist - elbow) + 1e-9)
    thumb_way = side * np.array([along[1], -along[0]])  # outwards when the arm hangs, palm to the camera
    points = [wrist]
    for spread, length in ((0.9, 0.55), (0.35, 0.8), (0.1, 0.9), (-0.15, 0.85), (-0.4, 0.7)):
        direction = math.cos(spread) * along + math.sin(spread) * thumb_way
        base = wrist + HAND * (0.15 if spread > 0.5 else 0.45) * direction
        points += [base + HAND * length * step * direction for step in (0.0, 0.4, 0.7, 1.0)]
    return np.stack(points)


def _body(pose: Pose) -> dict[str, np.ndarray]:
    """Body (18, 2), hands (21, 2) each and face (70, 2) in body units, pelvis at the origin."""
    up = _unit(pose.lean)
    across = _across(up)
    neck = TORSO * up
    body = np.zeros((18, 2))
    body[1] = neck
    body[2], body[5] = neck + RIGHT * SHOULDER * across, neck + LEFT * SHOULDER * across
    body[8], body[11] = np.array([RIGHT * HIP, 0.0]), np.array([LEFT * HIP, 0.0])
    body[3:5] = _arm(body[2], up, RIGHT, pose.arm_r, pose.elbow_r)
    body[6:8] = _arm(body[5], up, LEFT, pose.arm_l, pose.elbow_l)
    body[9:11] = _leg(body[8], RIGHT, pose.leg_r, pose.lift_r)
    body[12:14] = _leg(body[11], LEFT, pose.leg_l, pose.lift_l)
    face, centre, head_across = _head(neck, pose)
    body[0], body[14], body[15] = face[30], face[36:42].mean(0), face[42:48].mean(0)
    body[16], body[17] = centre - 0.95 * HEAD_R * head_across, centre + 0.95 * HEAD_R * head_across
    hands = {"right_hand": _hand(body[4], body[3], RIGHT), "left_hand": _hand(body[7], body[6], LEFT)}
    return {"body": body, "face": face, **hands}


def _head(neck: np.ndarray, pose: Pose) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The face points, the head centre and the head's image-right direction (rolled with the lean)."""
    head_up = _unit(pose.lean + pose.head_roll)
    head_across = _across(head_up)
    centre = neck + HEAD_UP * head_up
    local = _face_template(pose.mouth)
    face = centre + HEAD_R * (local[:, :1] * head_across - local[:, 1:] * head_up)
    return face, centre, head_across


# ----------------------------------------------------------------------------------------------------------
# Frames
# ----------------------------------------------------------------------------------------------------------


def _place(parts: dict[str, np.ndarray], pose: Pose, width: int, height: int) -> dict[str, np.ndarray]:
    """Body units -> pixels: the lower ankle on the ground line (minus the jump), centred plus the step."""
    scale = SCALE * min(width, height)
    floor = max(parts["body"][10, 1], parts["body"][13, 1])
    origin = np.array([0.5 * width + pose.shift * scale, GROUND * height - (floor + pose.bob) * scale])
    return {name: origin + scale * points for name, points in parts.items()}


def _confident(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points, np.ones((len(points), 1))], 1).astype(np.float32)


def dance_keypoints(
    motion: str,
    frames: int,
    size: int | tuple[int, int] = EXAMPLE_SIZE,
    *,
    period: float = 12.0,
    hands: bool = True,
    face: bool = True,
) -> list[PoseFrame]:
    """`frames` poses of `motion` (a `MOTIONS` key), `period` frames per cycle, on a `size` canvas.

    `size` is a side or `(width, height)`; every keypoint stays inside the canvas.
    """
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; choose from {', '.join(MOTIONS)}")
    if frames < 1 or period <= 0:
        raise ValueError(f"need frames >= 1 and period > 0, got {frames} and {period}")
    width, height = (size, size) if isinstance(size, int) else size
    poses = []
    for index in range(frames):
        pose = MOTIONS[motion](2.0 * math.pi * index / period)
        parts = _place(_body(pose), pose, width, height)
        person = PersonKeypoints(
            _confident(parts["body"]),
            left_hand=_confident(parts["left_hand"]) if hands else None,
            right_hand=_confident(parts["right_hand"]) if hands else None,
            face=_confident(parts["face"]) if face else None,
        )
        poses.append(PoseFrame([person], width, height))
    return poses


def astronaut_image() -> np.ndarray:
    """The shipped reference image: scikit-image's NASA astronaut photograph (public domain), 512x512 RGB."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[..., :3])


def pose_sequence_maps(name: str) -> list[np.ndarray]:
    """The OpenPose maps (RGB uint8) of shipped pose sequence `name` (a `POSE_SEQUENCES` key)."""
    from magicpose.pose.openpose import render_pose

    motion, frames, period = POSE_SEQUENCES[name]
    return [render_pose(frame) for frame in dance_keypoints(motion, frames, EXAMPLE_SIZE, period=period)]


def skeleton_video_frames(name: str) -> list[np.ndarray]:
    """The mmpose-style frames (RGB uint8) of shipped skeleton video `name` (a `SKELETON_VIDEOS` key)."""
    from magicpose.pose.mmpose import render_mmpose

    motion, frames, period = SKELETON_VIDEOS[name]
    poses = dance_keypoints(motion, frames, EXAMPLE_SIZE, period=period, hands=False, face=False)
    return [render_mmpose(frame) for frame in poses]
