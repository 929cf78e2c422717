"""MediaPipe Holistic backend: body (BlazePose), both hands and the face mesh of ONE person per frame.

Only models inside the `mediapipe==0.10.21` wheel are used (`mediapipe/modules/...`):
pose_detection + pose_landmark_full (`model_complexity=1`; 0 and 2 would download lite/heavy models),
palm_detection + hand_landmark_full, holistic's hand_recrop, face_landmark_with_attention (the refined
478-point mesh with irises) and face_detection. Nothing is fetched at run time.

MediaPipe's legacy solutions follow the most prominent person, so `PoseFrame.people` has at most one entry:
the `max_people` part of the failure filter never fires with this backend (use `dwpose` for crowds).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from magicpose.errors import UserError
from magicpose.pose.backends import POSE_ENV_HINT, PoseBackend
from magicpose.pose.backends.mapping import (
    blazepose_to_coco18,
    facemesh_to_openpose70,
    mediapipe_hand_to_openpose,
)
from magicpose.pose.openpose import PersonKeypoints, PoseFrame

MEDIAPIPE_VERSION = "0.10.21"
MODEL_COMPLEXITY = 1  # the only BlazePose landmark model the wheel ships


def _import_mediapipe(command: str) -> Any:
    """`mediapipe`, or a UserError pointing at the pose environment (it cannot live in the main venv)."""
    try:
        import mediapipe
    except ImportError as error:
        hint = POSE_ENV_HINT.format(command=command)
        raise UserError(f"mediapipe backend needs the pose environment: {hint}") from error
    return mediapipe


def _pixels(landmarks: Any, width: int, height: int) -> np.ndarray:
    """Normalised MediaPipe landmarks -> (N, 2) float32 pixels."""
    return np.array([(p.x * width, p.y * height) for p in landmarks.landmark], np.float32)


class MediaPipeBackend(PoseBackend):
    """MediaPipe Holistic in static-image mode (every frame on its own, like the original's OpenPose)."""

    name = "mediapipe"

    def __init__(self, min_visibility: float = 0.5, min_detection_confidence: float = 0.5,
                 command: str = "extract-pose") -> None:
        mediapipe = _import_mediapipe(command)
        self.min_visibility = min_visibility
        self._holistic = mediapipe.solutions.holistic.Holistic(
            static_image_mode=True,
            model_complexity=MODEL_COMPLEXITY,
            refine_face_landmarks=True,  # iris points -> OpenPose pupils; model is in the wheel
            min_detection_confidence=min_detection_confidence,
        )

    def detect(self, image_rgb: np.ndarray) -> PoseFrame:
        height, width = image_rgb.shape[:2]
        result = self._holistic.process(image_rgb)
        if result.pose_landmarks is None:
            return PoseFrame([], width, height)
        return PoseFrame([self._person(result, width, height)], width, height)

    def _person(self, result: Any, width: int, height: int) -> PersonKeypoints:
        pose = _pixels(result.pose_landmarks, width, height)
        visibility = np.array([p.visibility for p in result.pose_landmarks.landmark], np.float32)
        body = blazepose_to_coco18(np.column_stack([pose, visibility]), width, height, self.min_visibility)

        def hand(landmarks: Any) -> np.ndarray | None:
            return None if landmarks is None else mediapipe_hand_to_openpose(_pixels(landmarks, width, height),
                                                                           width, height)

        face = result.face_landmarks
        return PersonKeypoints(
            body=body,
            left_hand=hand(result.left_hand_landmarks),  # Holistic's "left" is the person's left
            right_hand=hand(result.right_hand_landmarks),
            face=None if face is None else facemesh_to_openpose70(_pixels(face, width, height), width, height),
        )

    def close(self) -> None:
        self._holistic.close()
