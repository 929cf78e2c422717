"""Video clips + captions for Follow-Your-Pose stage 2 (text-to-video fine-tuning, pose optional).

Format (`data.layout: captions`; the original's HD-VILA CSV is `magicpose.data.hdvila`): one captions file, `.jsonl`
(one JSON object per line) or `.csv` (a header row), paths relative to the file:

    {"video": "clips/0001.mp4", "caption": "a man dancing on the beach"}
    {"video": "clips/0002", "caption": "a woman doing yoga", "pose": "poses/0002.mp4"}

    video,caption,pose
    clips/0001.mp4,a man dancing on the beach,

* `video`: a video file (mp4, mov, mkv, webm, gif, ...) or a folder of frames (png / jpg, naturally sorted);
* `caption`: the text of the clip;
* `pose` (optional): skeleton frames of the same clip, video or folder, frame-aligned with `video`; needed only with
  `train.pose_in_stage2: true`.

A training item is a window of `frames` frames taken every `stride` frames from a random start (the original:
12 frames at stride 4; the paper: 8 consecutive frames). A clip too short for the stride gets the largest stride
that fits (the original's fallback); a clip with fewer than `frames` frames is an error naming it. Frames are
centre-cropped (or padded) to squares of `size`. Randomness comes from (seed, epoch, index), as the TikTok datasets.
Videos are decoded whole: use short clips (the original used 64-frame HD-VILA segments).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from magicpose.data.transforms import to_tensor
from magicpose.errors import UserError
from magicpose.media import iter_video_frames, list_images, load_image, to_square


@dataclass
class Clip:
    video: Path
    caption: str
    pose: Path | None = None


def read_captions(path: str | Path) -> list[Clip]:
    """The clips listed in a `.jsonl` or `.csv` captions file; every referenced path must exist."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such captions file (data.captions)")
    rows = _read_rows(path)
    if not rows:
        raise UserError(f"{path}: lists no clips")
    clips = []
    for line, row in rows:
        if not row.get("video") or row.get("caption") is None:
            if "clip_id" in row or "videoid" in row:
                raise UserError(f"{path}: an HD-VILA-layout CSV; read it with data.layout=hdvila data.csv={path} "
                                "data.root=<the folder holding part_<id>/video_clips/>")
            raise UserError(f"{path}:{line}: needs 'video' and 'caption'")
        clip = Clip(path.parent / str(row["video"]), str(row["caption"]),
                    path.parent / str(row["pose"]) if row.get("pose") else None)
        for kind, target in (("video", clip.video), ("pose", clip.pose)):
            if target is not None and not target.exists():
                raise UserError(f"{path}:{line}: {kind} {target} does not exist")
        clips.append(clip)
    return clips


def _read_rows(path: Path) -> list[tuple[int, dict]]:
    if path.suffix.lower() == ".csv":
        with open(path, newline="") as f:
            return [(number + 2, row) for number, row in enumerate(csv.DictReader(f))]
    if path.suffix.lower() != ".jsonl":
        raise UserError(f"{path}: captions must be a .jsonl or .csv file")
    rows = []
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{number}: not JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{number}: expected a JSON object")
        rows.append((number, row))
    return rows


def read_clip_frames(path: Path) -> list[Image.Image]:
    """All frames of a video file or a frame folder."""
    if path.is_dir():
        return [load_image(p) for p in list_images(path)]
    return [Image.fromarray(frame) for frame in iter_video_frames(path)]


def clip_window(available: int, frames: int, stride: int, rng: np.random.Generator, source: Path) -> list[int]:
    """Indices of a random window of `frames` frames every `stride` (smaller stride when the clip is short)."""
    if available < frames:
        raise UserError(f"{source}: has {available} frames, fewer than the {frames} a training clip needs")
    if frames > 1:
        stride = max(1, min(stride, (available - 1) // (frames - 1)))
    span = (frames - 1) * stride + 1
    start = int(rng.integers(0, available - span + 1))
    return list(range(start, start + span, stride))


class VideoCaptionDataset(torch.utils.data.Dataset):
    """Map-style clips. Item: `pixel_values` f 3 S S in [-1, 1], `caption` str, `index` int, and with
    `with_pose` `pose_pixel_values` f 3 S S in [0, 1]."""

    def __init__(self, captions: str | Path, frames: int = 8, stride: int = 1, size: int = 512,
                 resize_mode: str = "crop", seed: int = 0, with_pose: bool = False) -> None:
        if frames < 1 or stride < 1 or size < 1:
            raise UserError(f"data: frames, stride and size must be >= 1 (got {frames}, {stride}, {size})")
        if resize_mode not in ("crop", "pad"):
            raise UserError(f"data.resize_mode: {resize_mode!r} is not 'crop' or 'pad'")
        self.clips = read_captions(captions)
        if with_pose:
            missing = [c.video for c in self.clips if c.pose is None]
            if missing:
                raise UserError(f"{captions}: {len(missing)} clip(s) have no 'pose' (e.g. {missing[0]}), "
                                "but train.pose_in_stage2 is true")
        self.frames, self.stride, self.size, self.resize_mode = frames, stride, size, resize_mode
        self.seed, self.with_pose = seed, with_pose

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        return self.item(index, 0)

    def item(self, index: int, epoch: int) -> dict:
        clip = self.clips[index]
        rng = np.random.default_rng([self.seed, epoch, index])
        frames = read_clip_frames(clip.video)
        window = clip_window(len(frames), self.frames, self.stride, rng, clip.video)
        out = {"pixel_values": self._stack([frames[i] for i in window], signed=True), "caption": clip.caption,
               "index": index}
        if self.with_pose:
            poses = read_clip_frames(clip.pose)
            if len(poses) < window[-1] + 1:
                raise UserError(f"{clip.pose}: has {len(poses)} frames, the clip {clip.video} has {len(frames)}")
            out["pose_pixel_values"] = self._stack([poses[i] for i in window], signed=False)
        return out

    def _stack(self, images: list[Image.Image], signed: bool) -> torch.Tensor:
        return torch.stack([to_tensor(to_square(image, self.size, self.resize_mode), signed) for image in images])


def write_captions(clips: list[tuple[Path, str]], captions: str | Path) -> Path:
    """A `.jsonl` captions file listing `(video or frame folder, caption)` pairs, paths relative to the file."""
    import os

    captions = Path(captions)
    captions.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"video": os.path.relpath(video, captions.parent), "caption": caption})
             for video, caption in clips]
    captions.write_text("\n".join(lines) + "\n")
    return captions


def captions_for_folders(split: str | Path, captions: str | Path, caption: str) -> Path:
    """One clip per frame folder of `split` (e.g. `dataset/toy/train_set`), all with the same caption."""
    folders = sorted((p for p in Path(split).iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.name)
    if not folders:
        raise UserError(f"{split}: no frame folders")
    return write_captions([(folder, caption) for folder in folders], captions)
