"""Pose estimators behind one interface: `backend(image_rgb) -> PoseFrame` (every person found, OpenPose layout).

Backends (`make_backend(name, weights)`):

- `mediapipe`: MediaPipe Holistic from the `mediapipe==0.10.21` wheel, which ships every model it needs
  (BlazePose full, hand and face-mesh-with-iris); nothing is downloaded. Finds ONE person per frame (the
  legacy solutions track the most prominent person). Lives in `.venv-pose` (`bash scripts/setup_pose.sh`).
- `dwpose`: DWPose (YOLOX-L person detector + RTMPose-style whole-body model, 133 COCO-WholeBody points) on
  onnxruntime, from local ONNX files (`--weights DIR` holding `yolox_l.onnx` and `dw-ll_ucoco_384.onnx`).

Only this package's submodules import mediapipe / onnxruntime, and only when a backend is built, so
`magicpose.pose` imports in either environment (and never imports torch).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType

import numpy as np

from magicpose.errors import UserError
from magicpose.pose.openpose import PoseFrame

BACKEND_NAMES: tuple[str, ...] = ("mediapipe", "dwpose")
POSE_ENV_HINT = "run `bash scripts/setup_pose.sh`, then use `.venv-pose/bin/magicpose {command} ...`"


class PoseBackend(ABC):
    """A pose estimator: call it on an (H, W, 3) uint8 RGB image, get every person it found."""

    name: str = "?"

    @abstractmethod
    def detect(self, image_rgb: np.ndarray) -> PoseFrame:
        """Run the estimator on a checked image."""

    def __call__(self, image_rgb: np.ndarray) -> PoseFrame:
        return self.detect(check_image(image_rgb))

    def close(self) -> None:
        """Release native resources (graphs, sessions); the default has none."""
        return None

    def __enter__(self) -> PoseBackend:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def check_image(image: np.ndarray) -> np.ndarray:
    """`image` as a C-contiguous (H, W, 3) uint8 array; ValueError (a caller bug) for anything else."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"pose backends take (H, W, 3) uint8 RGB images, got {array.shape} {array.dtype}")
    return np.ascontiguousarray(array)


def make_backend(name: str, weights: str | Path | None = None, command: str = "extract-pose") -> PoseBackend:
    """Build backend `name`; `command` only words the hint when the pose environment is missing."""
    if name == "mediapipe":
        from magicpose.pose.backends.mediapipe_backend import MediaPipeBackend

        if weights is not None:
            raise UserError(f"{weights}: the mediapipe backend uses the models inside its wheel; drop --weights")
        return MediaPipeBackend(command=command)
    if name == "dwpose":
        from magicpose.pose.backends.dwpose import DWPoseBackend

        return DWPoseBackend.from_folder(weights, command=command)
    raise UserError(f"unknown pose backend {name!r} (choose from {', '.join(BACKEND_NAMES)})")
