"""`magicpose extract-pose`: OpenPose keypoints + pose maps for every usable frame of a video or folder.

Each frame goes through a pose backend (`magicpose.pose.backends`) and then the original's failure filter
(MagicDance `misc_scripts/detect_openpose_map_tiktok.py`, `filter_keypoints`): a frame is kept only if it
shows at most `max_people` people (1), more than `min_body_keypoints` (6) of the 18 body keypoints, and a
skeleton bounding box larger than `min_bbox_fraction` (4 %) of the frame. Dropped frames are listed with
their reason in the printed summary and in `report.json`, never skipped silently.

Pose maps come in two styles (`STYLES`), drawn from the same keypoints: `openpose` (the ControlNet v1.1
annotator's body + hands + face maps, what MagicPose's ControlNet takes) and `mmpose` (COCO-17 limbs in
mmpose's colours, what Follow-Your-Pose's released pose adapter takes; `magicpose.pose.mmpose`).

Imports stay torch-free (this runs in `.venv-pose`, which has no torch); backends load lazily.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from magicpose.errors import UserError
from magicpose.pose.openpose import PoseFrame

KEYPOINTS_DIR = "keypoints"
POSE_MAPS_DIR = "pose_maps"
REPORT_FILE = "report.json"
SHOWN_DROPS = 10  # dropped frames listed in the printed summary (report.json lists all)
STYLES: tuple[str, ...] = ("openpose", "mmpose")

# Why a frame was dropped (stable keys for report.json) -> what the summary calls it.
REASONS: dict[str, str] = {
    "no_person": "no person detected",
    "too_many_people": "more people than --max-people",
    "too_few_keypoints": "too few body keypoints",
    "too_small": "skeleton too small in the frame",
}


# ----------------------------------------------------------------------------------------------------------
# Failure filter
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoseFilter:
    """The original's rule for a usable pose (defaults = MagicDance's TikTok preprocessing)."""

    max_people: int = 1
    min_body_keypoints: int = 6  # keep only with MORE than this many detected body keypoints
    min_bbox_fraction: float = 0.04  # keep only if the skeleton box is LARGER than this share of the frame

    def __post_init__(self) -> None:
        if self.max_people < 1:
            raise UserError(f"--max-people must be at least 1, got {self.max_people}")
        if not 0 <= self.min_body_keypoints < 18:
            raise UserError(f"--min-body-keypoints must be 0-17, got {self.min_body_keypoints}")
        if not 0 <= self.min_bbox_fraction < 1:
            raise UserError(f"--min-bbox must be a fraction in [0, 1), got {self.min_bbox_fraction}")


@dataclass(frozen=True)
class Rejection:
    """Why a frame's pose is unusable: a `REASONS` key and a sentence with the numbers."""

    reason: str
    detail: str


def skeleton_box_fraction(body: np.ndarray, width: int, height: int) -> float:
    """Area of the box around the detected body keypoints, as a fraction of the frame's area."""
    points = body[body[:, 2] > 0, :2]
    if len(points) == 0:
        return 0.0
    extent = points.max(axis=0) - points.min(axis=0)
    return float(extent[0] * extent[1]) / float(width * height)


def check_pose(frame: PoseFrame, rule: PoseFilter) -> Rejection | None:
    """None when `frame` passes the failure filter, else the first rule it breaks."""
    count = len(frame.people)
    if count == 0:
        return Rejection("no_person", "no person detected")
    if count > rule.max_people:
        return Rejection("too_many_people", f"{count} people detected (at most {rule.max_people} allowed)")
    body = frame.people[0].body
    detected = int((body[:, 2] > 0).sum())
    if detected <= rule.min_body_keypoints:
        return Rejection(
            "too_few_keypoints",
            f"{detected} of 18 body keypoints detected (need more than {rule.min_body_keypoints})",
        )
    fraction = skeleton_box_fraction(body, frame.width, frame.height)
    if fraction <= rule.min_bbox_fraction:
        return Rejection(
            "too_small",
            f"skeleton box covers {fraction:.1%} of the frame (need more than {rule.min_bbox_fraction:.1%})",
        )
    return None


# ----------------------------------------------------------------------------------------------------------
# Input frames
# ----------------------------------------------------------------------------------------------------------


@dataclass
class FrameSource:
    """Named RGB frames of a video or image folder, decoded lazily (videos can be long)."""

    path: Path
    names: list[str]
    frames: Callable[[], Iterator[np.ndarray]]

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        return zip(self.names, self.frames(), strict=False)


def frame_names(count: int) -> list[str]:
    """`0001`, `0002`, ... (1-based like the TikTok frames; wider when a video has 10,000+ frames)."""
    width = max(4, len(str(count)))
    return [f"{index:0{width}d}" for index in range(1, count + 1)]


def _video_frames(path: Path) -> Iterator[np.ndarray]:
    from magicpose.media import iter_video_frames

    return iter_video_frames(path)


def _folder_frames(paths: list[Path]) -> Iterator[np.ndarray]:
    from magicpose.media import load_image

    for path in paths:
        yield np.asarray(load_image(path))


def open_frames(path: str | Path) -> FrameSource:
    """A `FrameSource` for a video file or a folder of images; UserError for anything else."""
    from magicpose.media import IMAGE_EXTENSIONS, count_frames, list_images

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    if path.is_dir():
        images = list_images(path)
        return FrameSource(path, [p.stem for p in images], lambda: _folder_frames(images))
    if path.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS:
        return FrameSource(path, [path.stem], lambda: _folder_frames([path]))
    count = count_frames(path)  # also turns a missing/unreadable/non-video file into a UserError
    return FrameSource(path, frame_names(count), lambda: _video_frames(path))


# ----------------------------------------------------------------------------------------------------------
# Running a backend over frames
# ----------------------------------------------------------------------------------------------------------


@dataclass
class PoseReport:
    """What happened to every frame: kept, or dropped and why."""

    command: str
    input: str
    backend: str
    rule: PoseFilter
    style: str = "openpose"
    frames: int = 0
    kept: list[str] = field(default_factory=list)
    dropped: list[dict[str, str]] = field(default_factory=list)  # {"frame", "reason", "detail"}
    seconds: float = 0.0

    def drop(self, name: str, rejection: Rejection) -> None:
        self.dropped.append({"frame": name, "reason": rejection.reason, "detail": rejection.detail})

    def by_reason(self) -> dict[str, int]:
        return dict(Counter(entry["reason"] for entry in self.dropped))

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "input": self.input,
            "backend": self.backend,
            "style": self.style,
            "filter": asdict(self.rule),
            "frames": self.frames,
            "kept": len(self.kept),
            "dropped": len(self.dropped),
            "dropped_by_reason": self.by_reason(),
            "dropped_frames": self.dropped,
            "kept_frames": self.kept,
            "seconds": round(self.seconds, 3),
        }

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    def summary(self, report_path: Path | None = None) -> str:
        """A few lines for the terminal: counts per reason, the first dropped frames, where the rest are."""
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        lines = [f"kept {len(self.kept)} of {self.frames} frames ({self.seconds:.1f} s, {rate:.1f} frames/s)"]
        if self.dropped:
            counts = ", ".join(f"{n} {REASONS.get(k, k)}" for k, n in self.by_reason().items())
            lines.append(f"dropped {len(self.dropped)} (failure filter): {counts}")
            lines += [f"  {entry['frame']}: {entry['detail']}" for entry in self.dropped[:SHOWN_DROPS]]
            if len(self.dropped) > SHOWN_DROPS:
                lines.append(f"  ... and {len(self.dropped) - SHOWN_DROPS} more")
        if self.frames and not self.kept:
            lines.append("no frame passed the filter, so no frame, pose map or keypoints file was written")
        if report_path is not None:
            lines.append(f"report: {report_path}")
        return "\n".join(lines)


KeepFrame = Callable[[str, np.ndarray, PoseFrame], None]


def run_poses(
    frames: Iterable[tuple[str, np.ndarray]],
    total: int,
    backend: Callable[[np.ndarray], PoseFrame],
    rule: PoseFilter,
    keep: KeepFrame,
    report: PoseReport,
) -> PoseReport:
    """Pose every frame, call `keep(name, image, pose)` for those passing `rule`, log the rest in `report`."""
    from tqdm import tqdm

    start = time.perf_counter()
    # disable=None: a bar on a terminal, nothing in logs and pipes.
    for name, image in tqdm(frames, total=total, unit="frame", desc=report.command, disable=None):
        pose = backend(image)
        rejection = check_pose(pose, rule)
        report.frames += 1
        if rejection is None:
            keep(name, image, pose)
            report.kept.append(name)
        else:
            report.drop(name, rejection)
    report.seconds = time.perf_counter() - start
    return report


def save_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def check_style(style: str) -> None:
    if style not in STYLES:
        raise UserError(f"unknown pose-map style {style!r} (choose from {', '.join(STYLES)})")


def render_style(pose: PoseFrame, style: str) -> np.ndarray:
    """The pose map of `pose` in `style` (a `STYLES` name), RGB uint8 at the frame's size."""
    check_style(style)
    if style == "mmpose":
        from magicpose.pose.mmpose import render_mmpose

        return render_mmpose(pose)
    from magicpose.pose.openpose import render_pose

    return render_pose(pose)


def write_pose(name: str, pose: PoseFrame, keypoints_dir: Path, maps_dir: Path, style: str = "openpose") -> None:
    """`keypoints_dir/<name>.json` (OpenPose JSON) and `maps_dir/<name>.png` (the pose map in `style`)."""
    from magicpose.pose.openpose import write_keypoints_json

    write_keypoints_json(keypoints_dir / f"{name}.json", pose)
    save_png(maps_dir / f"{name}.png", render_style(pose, style))


# ----------------------------------------------------------------------------------------------------------
# extract-pose
# ----------------------------------------------------------------------------------------------------------


def _has_entries(path: Path) -> bool:
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


def earlier_results(out: Path, overwrite: bool) -> list[Path]:
    """An earlier run's results in `out`, to remove; UserError if there are some and not `overwrite`."""
    owned = [out / KEYPOINTS_DIR, out / POSE_MAPS_DIR, out / REPORT_FILE]
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    existing = [path for path in owned if _has_entries(path)]
    if existing and not overwrite:
        raise UserError(f"{existing[0]}: already holds extract-pose results; pass --overwrite to replace them")
    return existing


def remove(paths: Iterable[Path]) -> None:
    """Delete files and folder trees (called once the backend loaded, so a failed start deletes nothing)."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def extract_pose(
    source: str | Path,
    out: str | Path,
    backend: str = "mediapipe",
    weights: str | Path | None = None,
    rule: PoseFilter | None = None,
    overwrite: bool = False,
    style: str = "openpose",
) -> PoseReport:
    """Write `out/keypoints/<frame>.json` + `out/pose_maps/<frame>.png` for kept frames and `out/report.json`.

    `style` picks the pose maps' look (`STYLES`); the keypoints are the same either way.
    """
    from magicpose.pose.backends import make_backend

    check_style(style)  # before the (slow) backend loads
    rule = rule or PoseFilter()
    frames = open_frames(source)
    out = Path(out)
    stale = earlier_results(out, overwrite)
    report = PoseReport("extract-pose", str(frames.path), backend, rule, style)
    with make_backend(backend, weights, command="extract-pose") as model:
        remove(stale)

        def keep(name: str, image: np.ndarray, pose: PoseFrame) -> None:
            write_pose(name, pose, out / KEYPOINTS_DIR, out / POSE_MAPS_DIR, style)

        run_poses(frames, len(frames.names), model, rule, keep, report)
    report.write(out / REPORT_FILE)
    return report
