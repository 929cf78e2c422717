"""`magicpose prepare-video`: turn one video into a TikTok-layout training/test video folder.

    ROOT/<split>/<name>/<frame>.png             frames
    ROOT/pose_map_<split>/<name>/<frame>.png    pose maps (body + hands + face)
    ROOT/keypoints_<split>/<name>/<frame>.json  OpenPose keypoints
    ROOT/reports/<split>/<name>.json            what was dropped and why (outside the three trees)

Frames whose pose fails the original's filter are left out of ALL trees (the original removed failure
cases from the training data), and the count and reasons are printed and written to the report. Frame
names keep their position in the (resampled) video, so a dropped frame leaves a gap in the numbering.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np

from magicpose.errors import UserError
from magicpose.pose.extract import (
    FrameSource,
    PoseFilter,
    PoseReport,
    open_frames,
    remove,
    run_poses,
    save_png,
    write_pose,
)
from magicpose.pose.openpose import PoseFrame

POSE_PREFIX = "pose_map_"
KEYPOINTS_PREFIX = "keypoints_"
REPORTS_DIR = "reports"

T = TypeVar("T")


def resample_indices(count: int, source_fps: float, target_fps: float | None) -> list[int]:
    """Indices of the frames kept when a `source_fps` video of `count` frames is shown at `target_fps`.

    Each output frame k shows the first source frame at or after time k / target_fps (a tiny tolerance
    absorbs float error). Upsampling would only duplicate frames, which adds nothing to a dataset: a
    `target_fps` at or above the source rate keeps every frame.
    """
    if target_fps is None or target_fps >= source_fps:
        return list(range(count))
    step = source_fps / target_fps
    picks = (math.ceil(k * step - 1e-6) for k in range(math.ceil(count / step) + 1))
    return sorted({index for index in picks if index < count})


def _pick(items: Iterable[T], indices: list[int]) -> Iterator[T]:
    wanted = set(indices)
    return (item for index, item in enumerate(items) if index in wanted)


def video_fps(path: Path) -> float | None:
    """Average frame rate from the container (None if it records none)."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
    except (av.error.FFmpegError, OSError, ValueError, IndexError):
        return None
    return float(rate) if rate else None


def resampled(source: FrameSource, fps: float | None) -> FrameSource:
    """`source` at `fps` (frames renamed 0001, ... in their new order); unchanged without `fps`."""
    if fps is None:
        return source
    if fps <= 0:
        raise UserError(f"--fps must be positive, got {fps}")
    if source.path.is_dir():
        raise UserError(f"{source.path}: --fps needs a video input (a folder of frames has no frame rate)")
    rate = video_fps(source.path)
    if rate is None:
        raise UserError(f"{source.path}: the video records no frame rate, so --fps cannot resample it")
    indices = resample_indices(len(source.names), rate, fps)
    if fps >= rate:
        print(f"note: --fps {fps:g} is not below the video's {rate:g} fps: every frame is kept")
    names = [f"{i:0{max(4, len(str(len(indices))))}d}" for i in range(1, len(indices) + 1)]
    return FrameSource(source.path, names, lambda: _pick(source.frames(), indices))


def video_dirs(root: Path, split: str, name: str) -> list[Path]:
    """Frames, pose maps and keypoints folders of one video."""
    return [root / split / name, root / f"{POSE_PREFIX}{split}" / name, root / f"{KEYPOINTS_PREFIX}{split}" / name]


def _check_name(value: str, what: str) -> None:
    if not value or value in {".", ".."} or "/" in value or "\\" in value or value.startswith("."):
        raise UserError(f"{value!r}: not a usable {what} (one plain folder name, not a path)")


def existing_video(root: Path, split: str, name: str, overwrite: bool) -> list[Path]:
    """An earlier version of this video (folders and report), to remove; UserError unless `overwrite`."""
    _check_name(split, "--split")
    _check_name(name, "--name")
    if root.exists() and not root.is_dir():
        raise UserError(f"{root}: exists and is not a folder")
    existing = [path for path in video_dirs(root, split, name) if path.exists()]
    if existing and not overwrite:
        raise UserError(f"{existing[0]}: video folder already exists; pass --overwrite to replace it")
    return [*existing, report_path(root, split, name)]


def report_path(root: Path, split: str, name: str) -> Path:
    return root / REPORTS_DIR / split / f"{name}.json"


def prepare_video(
    source: str | Path,
    root: str | Path,
    split: str = "train_set",
    name: str | None = None,
    fps: float | None = None,
    backend: str = "mediapipe",
    weights: str | Path | None = None,
    rule: PoseFilter | None = None,
    overwrite: bool = False,
) -> tuple[PoseReport, Path]:
    """Decode, pose and filter `source` into `root`'s TikTok layout; returns the report and its path."""
    from magicpose.pose.backends import make_backend

    rule = rule or PoseFilter()
    root = Path(root)
    frames = resampled(open_frames(source), fps)
    name = name or frames.path.stem
    stale = existing_video(root, split, name, overwrite)
    frames_dir, maps_dir, keypoints_dir = video_dirs(root, split, name)
    report = PoseReport("prepare-video", str(frames.path), backend, rule)
    with make_backend(backend, weights, command="prepare-video") as model:
        remove(stale)

        def keep(frame: str, image: np.ndarray, pose: PoseFrame) -> None:
            save_png(frames_dir / f"{frame}.png", image)
            write_pose(frame, pose, keypoints_dir, maps_dir)

        run_poses(frames, len(frames.names), model, rule, keep, report)
    written = report_path(root, split, name)
    report.write(written)
    return report, written
