"""DWPose on onnxruntime: YOLOX person boxes -> top-down whole-body pose per box -> OpenPose layout.

Weights are local files (this code never downloads): the DWPose release's `yolox_l.onnx` (detector) and
`dw-ll_ucoco_384.onnx` (133 COCO-WholeBody keypoints, 288x384 input, SimCC output), in one folder passed as
`--weights DIR`. The pre/post-processing follows DWPose's ControlNet annotator and mmpose's RTMPose:

- detector: letterbox to the model's input (ratio = min(H_in/h, W_in/w), image at the top-left, padding
  114), BGR 0-255 float (YOLOX is trained on cv2's BGR images, unnormalised); raw YOLOX output
  (1, N, 5 + classes) decoded over the stride-8/16/32 grids, score = objectness x class score, person class
  (0) only, NMS at IoU 0.45, boxes kept above 0.3. An mmdeploy "end2end" export (outputs `dets` (1, N, 5)
  and `labels` (1, N)) is accepted as well.
- pose: each box -> centre and size x 1.25, widened to the model's aspect ratio, affine-warped to the input
  size; RGB normalised with ImageNet mean/std (mmpose converts BGR to RGB before normalising). SimCC
  decode: argmax per axis, score = the smaller of the two maxima, position / split ratio (output length /
  input length, 2 for DWPose), mapped back through the crop.
- keypoints scoring under 0.3 count as missing, as in the annotator (`mapping.wholebody_to_person`).

No person box -> no person (DWPose's annotator would run the pose model on the whole frame instead, which
invents a skeleton on empty frames; the failure filter should see "no person" there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from magicpose.errors import UserError
from magicpose.pose.backends import POSE_ENV_HINT, PoseBackend
from magicpose.pose.backends.mapping import NUM_WHOLEBODY, wholebody_to_person
from magicpose.pose.openpose import PoseFrame

DETECTOR_FILE = "yolox_l.onnx"
POSE_FILE = "dw-ll_ucoco_384.onnx"
WEIGHTS_SOURCE = "https://huggingface.co/yzd-v/DWPose"

YOLOX_STRIDES = (8, 16, 32)
LETTERBOX_FILL = 114
PERSON_CLASS = 0
NMS_IOU = 0.45
BOX_SCORE = 0.3
BOX_PADDING = 1.25
KEYPOINT_SCORE = 0.3
IMAGENET_MEAN = np.array([123.675, 116.28, 103.53], np.float32)
IMAGENET_STD = np.array([58.395, 57.12, 57.375], np.float32)
# Used when an export leaves the input size dynamic: DWPose's sizes, (height, width).
DEFAULT_DETECTOR_HW = (640, 640)
DEFAULT_POSE_HW = (384, 288)


# ----------------------------------------------------------------------------------------------------------
# Detector
# ----------------------------------------------------------------------------------------------------------


def letterbox(image: np.ndarray, size_hw: tuple[int, int]) -> tuple[np.ndarray, float]:
    """`image` scaled to fit `size_hw` (aspect kept), at the top-left of a 114-grey canvas; and the ratio."""
    height, width = image.shape[:2]
    ratio = min(size_hw[0] / height, size_hw[1] / width)
    new_w, new_h = max(1, int(width * ratio)), max(1, int(height * ratio))
    canvas = np.full((*size_hw, 3), LETTERBOX_FILL, np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return canvas, ratio


def yolox_grid(size_hw: tuple[int, int], strides: Sequence[int] = YOLOX_STRIDES) -> tuple[np.ndarray, np.ndarray]:
    """Anchor-cell (x, y) offsets (N, 2) and their strides (N, 1), in YOLOX's output order."""
    cells, steps = [], []
    for stride in strides:
        ys, xs = np.meshgrid(np.arange(size_hw[0] // stride), np.arange(size_hw[1] // stride), indexing="ij")
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        steps.append(np.full((xs.size, 1), stride))
    return np.concatenate(cells).astype(np.float32), np.concatenate(steps).astype(np.float32)


def decode_yolox(raw: np.ndarray, size_hw: tuple[int, int], ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Raw YOLOX predictions (N, 5 + classes) -> person boxes (N, 4) xyxy in image pixels and their scores."""
    cells, strides = yolox_grid(size_hw)
    if len(raw) != len(cells):
        raise ValueError(f"YOLOX output has {len(raw)} anchors, a {size_hw} input has {len(cells)}")
    centre = (raw[:, :2] + cells) * strides
    half = np.exp(raw[:, 2:4]) * strides / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1) / ratio
    scores = raw[:, 4] * raw[:, 5 + PERSON_CLASS]
    return boxes, scores


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = NMS_IOU) -> list[int]:
    """Greedy non-maximum suppression: indices of the kept boxes, best first."""
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    order = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    while order:
        best, order = order[0], np.array(order[1:], dtype=int)
        keep.append(int(best))
        if not order.size:
            break
        top_left = np.maximum(boxes[best, :2], boxes[order, :2])
        bottom_right = np.minimum(boxes[best, 2:], boxes[order, 2:])
        overlap = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
        iou = overlap / np.maximum(areas[best] + areas[order] - overlap, 1e-9)
        order = list(order[iou <= iou_threshold])
    return keep


def select_people(boxes: np.ndarray, scores: np.ndarray, min_score: float = BOX_SCORE) -> np.ndarray:
    """Person boxes (M, 4) above `min_score` after NMS, best first."""
    confident = scores > min_score
    boxes, scores = boxes[confident], scores[confident]
    return boxes[nms(boxes, scores)] if len(boxes) else np.zeros((0, 4), np.float32)


# ----------------------------------------------------------------------------------------------------------
# Top-down pose
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Crop:
    """A box as mmpose's (centre, size) after padding and widening to the model's aspect ratio."""

    center: np.ndarray  # (2,) x, y
    size: np.ndarray  # (2,) w, h in image pixels

    @classmethod
    def from_box(cls, box: np.ndarray, input_wh: tuple[int, int], padding: float = BOX_PADDING) -> Crop:
        x0, y0, x1, y1 = (float(v) for v in box[:4])
        width, height = (x1 - x0) * padding, (y1 - y0) * padding
        aspect = input_wh[0] / input_wh[1]
        # Widen the short side rather than squash: the model was trained on undistorted crops.
        size = (width, width / aspect) if width > height * aspect else (height * aspect, height)
        return cls(np.array([(x0 + x1) / 2, (y0 + y1) / 2], np.float64), np.array(size, np.float64))

    def matrix(self, input_wh: tuple[int, int]) -> np.ndarray:
        """2x3 affine from image pixels to model-input pixels (one scale: the aspect already matches)."""
        scale = input_wh[0] / self.size[0]
        return np.array(
            [[scale, 0.0, input_wh[0] / 2 - scale * self.center[0]],
             [0.0, scale, input_wh[1] / 2 - scale * self.center[1]]],
        )  # fmt: skip

    def to_image(self, points: np.ndarray, input_wh: tuple[int, int]) -> np.ndarray:
        """Model-input pixels (K, 2) -> image pixels."""
        return points / np.array(input_wh) * self.size + self.center - self.size / 2


def pose_input(image_rgb: np.ndarray, crop: Crop, input_wh: tuple[int, int]) -> np.ndarray:
    """(1, 3, H, W) float32 model input: the warped crop, ImageNet-normalised RGB."""
    warped = cv2.warpAffine(image_rgb, crop.matrix(input_wh), input_wh, flags=cv2.INTER_LINEAR)
    normalised = (warped.astype(np.float32) - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(normalised.transpose(2, 0, 1)[None])


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray, input_wh: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """SimCC vectors (K, Lx), (K, Ly) -> positions (K, 2) in model-input pixels and scores (K,)."""
    locs = np.stack([simcc_x.argmax(axis=1), simcc_y.argmax(axis=1)], axis=1).astype(np.float64)
    scores = np.minimum(simcc_x.max(axis=1), simcc_y.max(axis=1))
    split = np.array([simcc_x.shape[1] / input_wh[0], simcc_y.shape[1] / input_wh[1]])
    return locs / split, scores.astype(np.float32)


# ----------------------------------------------------------------------------------------------------------
# Sessions
# ----------------------------------------------------------------------------------------------------------


def _import_onnxruntime(command: str) -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        hint = POSE_ENV_HINT.format(command=command)
        raise UserError(f"dwpose backend needs onnxruntime, which the pose environment has: {hint}") from error
    return onnxruntime


def load_session(path: Path, role: str, command: str = "extract-pose") -> Any:
    """An onnxruntime session on `path` (GPU first where onnxruntime-gpu is installed); UserError if unusable."""
    if not path.is_file():
        raise UserError(
            f"{path}: no such file; the dwpose backend needs the {role} {path.name} from the DWPose release "
            f"({WEIGHTS_SOURCE}): download it and pass its folder as --weights"
        )
    ort = _import_onnxruntime(command)
    wanted = ("CUDAExecutionProvider", "CPUExecutionProvider")
    providers = [p for p in wanted if p in ort.get_available_providers()]
    try:
        return ort.InferenceSession(str(path), providers=providers)
    except Exception as error:  # onnxruntime raises its own untyped Fail/InvalidProtobuf errors
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"{path}: cannot load as an ONNX model ({reason})") from error


def _input_hw(session: Any, default: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of a session's NCHW input; `default` where the export left them dynamic."""
    shape = session.get_inputs()[0].shape
    dims = [d if isinstance(d, int) and d > 0 else None for d in shape[2:4]]
    return (dims[0] or default[0], dims[1] or default[1])


class DWPoseBackend(PoseBackend):
    """YOLOX + DWPose ONNX sessions; every detected person becomes one `PersonKeypoints`."""

    name = "dwpose"

    def __init__(self, detector: Any, pose: Any) -> None:
        self.detector, self.pose = detector, pose
        self.detector_hw = _input_hw(detector, DEFAULT_DETECTOR_HW)
        pose_h, pose_w = _input_hw(pose, DEFAULT_POSE_HW)
        self.pose_wh = (pose_w, pose_h)

    @classmethod
    def from_folder(cls, folder: str | Path | None, command: str = "extract-pose") -> DWPoseBackend:
        if folder is None:
            raise UserError(
                f"the dwpose backend needs --weights DIR: a folder with {DETECTOR_FILE} and {POSE_FILE} "
                f"from {WEIGHTS_SOURCE}"
            )
        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(f"{folder}: not a folder; --weights must hold {DETECTOR_FILE} and {POSE_FILE}")
        detector = load_session(folder / DETECTOR_FILE, "person detector", command)
        return cls(detector, load_session(folder / POSE_FILE, "whole-body pose model", command))

    def boxes(self, image_rgb: np.ndarray) -> np.ndarray:
        """Person boxes (M, 4) xyxy in image pixels."""
        padded, ratio = letterbox(np.ascontiguousarray(image_rgb[..., ::-1]), self.detector_hw)
        batch = np.ascontiguousarray(padded.transpose(2, 0, 1)[None], dtype=np.float32)
        outputs = self.detector.run(None, {self.detector.get_inputs()[0].name: batch})
        if len(outputs) >= 2 and outputs[0].ndim == 3 and outputs[0].shape[-1] == 5:  # mmdeploy end2end
            dets, labels = outputs[0][0], outputs[1][0]
            people = dets[labels == PERSON_CLASS]
            return select_people(people[:, :4] / ratio, people[:, 4])
        raw = outputs[0]
        anchors = len(yolox_grid(self.detector_hw)[0])
        if raw.ndim != 3 or raw.shape[1] != anchors or raw.shape[2] < 6:
            raise UserError(
                f"the dwpose detector gives an output of shape {raw.shape}, not YOLOX's (1, {anchors}, 5 + "
                f"classes) for a {self.detector_hw[1]}x{self.detector_hw[0]} input (use {DETECTOR_FILE})"
            )
        return select_people(*decode_yolox(raw[0], self.detector_hw, ratio))

    def keypoints(self, image_rgb: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """133 whole-body keypoints (image pixels) and scores of the person in `box`."""
        crop = Crop.from_box(box, self.pose_wh)
        batch = pose_input(image_rgb, crop, self.pose_wh)
        simcc_x, simcc_y = self.pose.run(None, {self.pose.get_inputs()[0].name: batch})[:2]
        if simcc_x.shape[1] != NUM_WHOLEBODY:
            raise UserError(
                f"the dwpose pose model gives {simcc_x.shape[1]} keypoints, expected {NUM_WHOLEBODY} "
                f"(COCO-WholeBody, as {POSE_FILE})"
            )
        points, scores = decode_simcc(simcc_x[0], simcc_y[0], self.pose_wh)
        return crop.to_image(points, self.pose_wh), scores

    def detect(self, image_rgb: np.ndarray) -> PoseFrame:
        height, width = image_rgb.shape[:2]
        people = [wholebody_to_person(*self.keypoints(image_rgb, box), KEYPOINT_SCORE)
                  for box in self.boxes(image_rgb)]
        return PoseFrame(people, width, height)
