"""Index tables from other keypoint layouts onto OpenPose's (COCO-18 body, 21-point hands, 68 + 2 face).

Pure numpy, so the tables are tested without mediapipe or onnxruntime. Sources:

- BlazePose 33 landmarks: MediaPipe's pose landmark model card / `mp.solutions.pose.PoseLandmark`
  (0 nose, 2/5 left/right eye, 7/8 ears, 11/12 shoulders, 13/14 elbows, 15/16 wrists, 23/24 hips,
  25/26 knees, 27/28 ankles; "left" is the person's left). COCO-18 has no BlazePose neck: OpenPose's neck is
  the mid-shoulder point, as in DWPose's WholeBody -> OpenPose conversion.
- MediaPipe hand (21): wrist, then thumb CMC/MCP/IP/TIP, index/middle/ring/pinky MCP/PIP/DIP/TIP: the same
  order as OpenPose's hand model, so the table is the identity.
- Face mesh (468, or 478 with the iris model) -> iBUG 68: the correspondences of Peizhi Yan's
  "Mediapipe_2_Dlib_Landmarks" (2024), where a dlib/iBUG point sits between two mesh vertices their mean is
  used. Checked against the contour sets the mediapipe wheel ships (`face_mesh_connections`): the 17 jaw
  points are on FACEMESH_FACE_OVAL, brows on FACEMESH_*_EYEBROW, eyes on FACEMESH_*_EYE, mouth on
  FACEMESH_LIPS (tests/test_pose_extract.py checks this in .venv-pose). OpenPose's points 68/69 are the
  right/left pupils: the iris centres 468 (right) and 473 (left) of the refined mesh.
- COCO-WholeBody 133 (DWPose): 0-16 COCO-17 body, 17-22 feet, 23-90 the 68 iBUG face points, 91-111 left
  hand, 112-132 right hand (hands in OpenPose order). COCO-17 -> COCO-18 as in DWPose's annotator.
"""

from __future__ import annotations

import numpy as np

from magicpose.pose.openpose import NUM_BODY_KEYPOINTS, NUM_HAND_KEYPOINTS, PersonKeypoints

NECK = 1  # OpenPose's neck: the one COCO-18 point no other layout has; made from the shoulders

# BlazePose landmark index for each COCO-18 point (None: the neck).
BLAZEPOSE_TO_COCO18: tuple[int | None, ...] = (
    0,  # nose
    None,  # neck = mean of shoulders 11, 12
    12, 14, 16,  # right shoulder, elbow, wrist
    11, 13, 15,  # left shoulder, elbow, wrist
    24, 26, 28,  # right hip, knee, ankle
    23, 25, 27,  # left hip, knee, ankle
    5, 2,  # right eye, left eye
    8, 7,  # right ear, left ear
)  # fmt: skip
BLAZEPOSE_SHOULDERS = (11, 12)
NUM_BLAZEPOSE_LANDMARKS = 33

MEDIAPIPE_HAND_TO_OPENPOSE: tuple[int, ...] = tuple(range(NUM_HAND_KEYPOINTS))

# Face-mesh vertex(es) for each iBUG-68 point; two vertices = their midpoint. iBUG "right" = person's right.
FACEMESH_TO_IBUG68: tuple[tuple[int, ...], ...] = (
    # 0-16 jaw, from the right ear over the chin (8) to the left ear
    (127,), (234,), (93,), (132, 58), (58, 172), (136,), (150,), (176,), (152,),
    (400,), (379,), (365,), (397, 288), (361,), (323,), (454,), (356,),
    # 17-21 right brow (outer -> inner), 22-26 left brow (inner -> outer)
    (70,), (63,), (105,), (66,), (107,),
    (336,), (296,), (334,), (293,), (300,),
    # 27-30 nose bridge (top -> tip), 31-35 nostril base (right -> left)
    (168, 6), (197, 195), (5,), (4,),
    (75,), (97,), (2,), (326,), (305,),
    # 36-41 right eye, 42-47 left eye (outer/inner corner, upper lid, other corner, lower lid)
    (33,), (160,), (158,), (133,), (153,), (144,),
    (362,), (385,), (387,), (263,), (373,), (380,),
    # 48-59 outer lip (right corner, upper lip, left corner, lower lip), 60-67 inner lip
    (61,), (39,), (37,), (0,), (267,), (269,), (291,),
    (321,), (314,), (17,), (84,), (91,),
    (78,), (82,), (13,), (312,), (308,), (317,), (14,), (87,),
)  # fmt: skip
FACEMESH_PUPILS: tuple[int, int] = (468, 473)  # iris centres (right, left): only in the 478-point mesh
NUM_FACEMESH = 468
IBUG_RIGHT_EYE = slice(36, 42)
IBUG_LEFT_EYE = slice(42, 48)

# COCO-WholeBody / COCO-17 index for each COCO-18 point (None: the neck).
COCO17_TO_COCO18: tuple[int | None, ...] = (
    0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3,
)  # fmt: skip
COCO17_SHOULDERS = (5, 6)
WHOLEBODY_FACE = slice(23, 91)
WHOLEBODY_LEFT_HAND = slice(91, 112)
WHOLEBODY_RIGHT_HAND = slice(112, 133)
NUM_WHOLEBODY = 133


def _in_frame(xy: np.ndarray, width: int, height: int) -> np.ndarray:
    """Which points lie on the image: BlazePose extrapolates off-frame joints that OpenPose never reports."""
    return (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)


def _select(points: np.ndarray, table: tuple[int | None, ...], shoulders: tuple[int, int]) -> np.ndarray:
    """(18, 3) rows picked by `table`; the neck is the shoulders' midpoint with the weaker confidence."""
    body = np.zeros((NUM_BODY_KEYPOINTS, 3), np.float32)
    for row, index in enumerate(table):
        if index is not None:
            body[row] = points[index]
    left, right = points[list(shoulders)]
    if left[2] > 0 and right[2] > 0:
        body[NECK] = ((left[0] + right[0]) / 2, (left[1] + right[1]) / 2, min(left[2], right[2]))
    return body


def blazepose_to_coco18(
    landmarks: np.ndarray, width: int, height: int, min_visibility: float = 0.5
) -> np.ndarray:
    """BlazePose (33, 3) rows of (x px, y px, visibility) -> COCO-18 (18, 3) with confidence = visibility.

    Points below `min_visibility` or off the image get confidence 0 (missing), so the failure filter and
    the renderer treat them as OpenPose treats undetected joints.
    """
    points = np.asarray(landmarks, np.float32)
    if points.shape != (NUM_BLAZEPOSE_LANDMARKS, 3):
        raise ValueError(f"BlazePose landmarks must be (33, 3), got {points.shape}")
    points = points.copy()
    missing = (points[:, 2] < min_visibility) | ~_in_frame(points, width, height)
    points[missing] = 0.0
    return _select(points, BLAZEPOSE_TO_COCO18, BLAZEPOSE_SHOULDERS)


def _found(xy: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N, 3) points with confidence 1 on the image, 0 (and position 0) off it: these models give no scores."""
    points = np.zeros((len(xy), 3), np.float32)
    inside = _in_frame(xy, width, height)
    points[inside, :2] = xy[inside]
    points[inside, 2] = 1.0
    return points


def mediapipe_hand_to_openpose(xy: np.ndarray, width: int, height: int) -> np.ndarray:
    """MediaPipe hand (21, 2) pixels -> OpenPose hand (21, 3)."""
    xy = np.asarray(xy, np.float32)
    if xy.shape != (NUM_HAND_KEYPOINTS, 2):
        raise ValueError(f"hand landmarks must be (21, 2), got {xy.shape}")
    return _found(xy[list(MEDIAPIPE_HAND_TO_OPENPOSE)], width, height)


def facemesh_to_openpose70(xy: np.ndarray, width: int, height: int) -> np.ndarray:
    """Face mesh (468 or 478, 2) pixels -> OpenPose face (70, 3): iBUG 68 + right/left pupil.

    Without the iris vertices (468-point mesh) the pupils are the centres of the six eye-contour points.
    """
    xy = np.asarray(xy, np.float32)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) < NUM_FACEMESH:
        raise ValueError(f"face mesh must be (468 or 478, 2), got {xy.shape}")
    ibug = np.stack([xy[list(vertices)].mean(axis=0) for vertices in FACEMESH_TO_IBUG68])
    if len(xy) > max(FACEMESH_PUPILS):
        pupils = xy[list(FACEMESH_PUPILS)]
    else:
        pupils = np.stack([ibug[IBUG_RIGHT_EYE].mean(axis=0), ibug[IBUG_LEFT_EYE].mean(axis=0)])
    return _found(np.concatenate([ibug, pupils]), width, height)


def _part(points: np.ndarray) -> np.ndarray | None:
    """A hand/face with no confident point is absent (None), as OpenPose leaves undetected parts empty."""
    return points if (points[:, 2] > 0).any() else None


def wholebody_to_person(keypoints: np.ndarray, scores: np.ndarray, threshold: float = 0.3) -> PersonKeypoints:
    """COCO-WholeBody (133, 2) pixels + (133,) scores -> OpenPose person (body 18, hands 21, face 68).

    Scores below `threshold` (DWPose's own 0.3) become confidence 0. DWPose has no pupils: the face has 68
    points, which `render_pose` and the OpenPose JSON accept.
    """
    xy = np.asarray(keypoints, np.float32)
    conf = np.asarray(scores, np.float32)
    if xy.shape != (NUM_WHOLEBODY, 2) or conf.shape != (NUM_WHOLEBODY,):
        raise ValueError(f"whole-body keypoints must be (133, 2) + (133,), got {xy.shape} + {conf.shape}")
    points = np.concatenate([xy, conf[:, None]], axis=1)
    points[conf < threshold] = 0.0
    body = _select(points, COCO17_TO_COCO18, COCO17_SHOULDERS)
    return PersonKeypoints(
        body=body,
        left_hand=_part(points[WHOLEBODY_LEFT_HAND]),
        right_hand=_part(points[WHOLEBODY_RIGHT_HAND]),
        face=_part(points[WHOLEBODY_FACE]),
    )
