"""Stage-2 clips in the original Follow-Your-Pose layout (HD-VILA-100M): a caption CSV + video clips under a root.

    ROOT/caption_rm2048_train.csv            (the released name; caption_2048_val_new.csv for validation)
    ROOT/part_0/video_clips/<clip_id>        (clip files, e.g. part_0/video_clips/abc123.5.mp4)

CSV headers (the first row), either
* `clip_id, part_id, caption` (the original's): the clip is `ROOT/part_<part_id>/video_clips/<clip_id>`;
* `videoid, page_dir, name` (WebVid-style names): the clip is `ROOT/<page_dir>/<videoid>`.
Other columns are ignored. A clip id without a file extension gets `.mp4`.

A clip may have several rows, one caption per 64-frame segment in row order (the original's CSVs); a training window
gets the caption of the segment holding its centre frame (the nearest segment; the last one past the end).

Frame sampling is the original's: candidate frames every `stride` frames (`sample_frame_rate`, 4 in the released
config), a random contiguous run of `frames` candidates (`n_sample_frames`, 12); a clip with fewer than `frames`
candidates takes candidates every `length // frames` frames instead; a clip shorter than `frames` is skipped. Like the
original, a missing, unreadable or too short clip is skipped (the next clip is taken), but here with one warning per
clip, and never more than `MAX_SKIPS` in a row. Only the frames up to the window's end are decoded.

The whole CSV is held in memory as Python strings (the full HD-VILA CSV: several GB; shard it for smaller hosts).
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from magicpose.data.tiktok import DatasetWarning
from magicpose.data.transforms import to_tensor
from magicpose.errors import UserError
from magicpose.media import count_frames, iter_video_frames, list_images, load_image, to_square

SEGMENT_FRAMES = 64  # one caption row per 64-frame segment of a clip
MAX_SKIPS = 100  # unusable clips in a row before the dataset gives up
HEADERS = {  # columns -> how a row names its clip file under the root
    ("clip_id", "part_id", "caption"): lambda row: Path(f"part_{row['part_id']}") / "video_clips" / row["clip_id"],
    ("videoid", "page_dir", "name"): lambda row: Path(row["page_dir"]) / row["videoid"],
}
CAPTION_COLUMN = {"clip_id": "caption", "videoid": "name"}


@dataclass
class HdVilaClip:
    path: Path
    captions: list[str]  # one per 64-frame segment, in row order


def read_hdvila_csv(csv_path: str | Path, root: str | Path) -> list[HdVilaClip]:
    """The clips of an HD-VILA-style CSV (rows of one clip grouped, in order of first appearance)."""
    csv_path, root = Path(csv_path), Path(root)
    if not csv_path.is_file():
        raise UserError(f"{csv_path}: no such CSV (data.csv; the original's caption_rm2048_train.csv)")
    if not root.is_dir():
        raise UserError(f"{root}: no such folder (data.root: the folder holding part_<id>/video_clips/)")
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = columns
        header = next((h for h in HEADERS if set(h) <= set(columns)), None)
        if header is None:
            raise UserError(f"{csv_path}: header {', '.join(columns) or '(empty)'} has neither "
                            "'clip_id, part_id, caption' nor 'videoid, page_dir, name'")
        clips: dict[Path, HdVilaClip] = {}
        for row in reader:
            path = root / _with_video_suffix(HEADERS[header](row))
            clips.setdefault(path, HdVilaClip(path, [])).captions.append(row[CAPTION_COLUMN[header[0]]] or "")
    if not clips:
        raise UserError(f"{csv_path}: lists no clips")
    return list(clips.values())


def _with_video_suffix(path: Path) -> Path:
    return path if path.suffix else path.with_suffix(".mp4")


def hdvila_window(length: int, frames: int, stride: int, rng: np.random.Generator) -> list[int] | None:
    """The original's frame choice: a random run of `frames` candidates every `stride` frames, or every
    `length // frames` frames when there are too few; None when the clip has fewer than `frames` frames."""
    candidates = list(range(0, length, stride))
    if len(candidates) < frames:
        if length < frames:
            return None
        candidates = list(range(0, length, length // frames))
    start = int(rng.integers(0, len(candidates) - frames + 1))
    return candidates[start : start + frames]


def segment_caption(captions: list[str], window: list[int]) -> str:
    """The caption of the 64-frame segment holding the window's centre (the last segment past the end)."""
    centre = (window[0] + window[-1]) / 2
    return captions[min(int(centre // SEGMENT_FRAMES), len(captions) - 1)]


def read_window(path: Path, indices: list[int]) -> list[Image.Image]:
    """The frames at `indices` (ascending) of a video file, decoding no further than the last; or of a frame folder."""
    if path.is_dir():
        files = list_images(path)
        return [load_image(files[i]) for i in indices]
    wanted, picked = set(indices), {}
    for index, frame in enumerate(iter_video_frames(path)):
        if index in wanted:
            picked[index] = Image.fromarray(frame)
        if index >= indices[-1]:
            break
    if len(picked) < len(indices):
        raise UserError(f"{path}: ended before frame {indices[-1]}")
    return [picked[i] for i in indices]


class HdVilaDataset(torch.utils.data.Dataset):
    """Map-style clips of an HD-VILA-layout CSV. Item: `pixel_values` f 3 S S in [-1, 1], `caption` str, `index`."""

    def __init__(self, csv_path: str | Path, root: str | Path, frames: int = 12, stride: int = 4, size: int = 512,
                 resize_mode: str = "crop", seed: int = 0) -> None:
        if frames < 1 or stride < 1 or size < 1:
            raise UserError(f"data: frames, stride and size must be >= 1 (got {frames}, {stride}, {size})")
        if resize_mode not in ("crop", "pad"):
            raise UserError(f"data.resize_mode: {resize_mode!r} is not 'crop' or 'pad'")
        self.clips = read_hdvila_csv(csv_path, root)
        self._check_some_clip_exists(Path(csv_path))
        self.frames, self.stride, self.size, self.resize_mode, self.seed = frames, stride, size, resize_mode, seed
        self._warned: set[Path] = set()

    def _check_some_clip_exists(self, csv_path: Path) -> None:
        """A root or CSV that names no existing clip among the first ones is a setup mistake, not missing clips."""
        first = self.clips[:MAX_SKIPS]
        if not any(clip.path.exists() for clip in first):
            raise UserError(f"{csv_path}: none of its first {len(first)} clips exists under the root "
                            f"(e.g. {first[0].path}; data.root is the folder holding part_<id>/video_clips/)")

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        return self.item(index, 0)

    def item(self, index: int, epoch: int) -> dict:
        """Clip `index`, or the next usable one (the original's skip rule), with the draws of (seed, epoch, index)."""
        rng = np.random.default_rng([self.seed, epoch, index])
        for skip in range(MAX_SKIPS):
            clip = self.clips[(index + skip) % len(self.clips)]
            try:
                found = self._load(clip, rng)
            except UserError as err:  # unreadable: media names the file and the reason
                found = str(err)
            if isinstance(found, dict):
                return {**found, "index": index}
            self._warn_skip(clip.path, found)
        raise UserError(f"{self.clips[index].path}: this clip and the next {MAX_SKIPS - 1} are unusable "
                        "(missing, unreadable or too short; see the warnings)")

    def _load(self, clip: HdVilaClip, rng: np.random.Generator) -> dict | str:
        """The clip's item, or why it cannot be used."""
        if not clip.path.exists():
            return f"{clip.path}: no such clip"
        length = count_frames(clip.path)
        window = hdvila_window(length, self.frames, self.stride, rng)
        if window is None:
            return f"{clip.path}: has {length} frames, fewer than the {self.frames} a training clip needs"
        images = read_window(clip.path, window)
        pixels = torch.stack([to_tensor(to_square(im, self.size, self.resize_mode), True) for im in images])
        return {"pixel_values": pixels, "caption": segment_caption(clip.captions, window)}

    def _warn_skip(self, path: Path, reason: str) -> None:
        if path not in self._warned:  # per process (each DataLoader worker warns for the clips it meets)
            self._warned.add(path)
            warnings.warn(f"skipped clip: {reason}", DatasetWarning, stacklevel=3)
