"""Per-image captions for Follow-Your-Pose stage 1 (pose-image pairs of a TikTok-format split).

The caption of the frame `ROOT/<split>/<video>/<frame>.png` is the first of:

1. a sidecar text file beside it, `ROOT/<split>/<video>/<frame>.txt` (UTF-8; surrounding whitespace dropped; an
   empty file counts as absent), the layout image-caption tools (BLIP, kohya-style datasets) write;
2. `data.image_captions`: a JSON file with one object mapping `"<video>/<frame>"` (the frame's file name, with or
   without its extension) or `"<video>"` (every frame of that video) to a caption, e.g.
   `{"dance01/0001": "a woman in a red dress raising her arms", "dance02": "a man dancing in a park"}`;
3. `data.prompt` (the same text for every pair).

A captions file none of whose keys names a video or frame of the split is an error (its keys are probably of another
split or another layout); keys that match nothing while others do are reported in one warning.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from magicpose.data.tiktok import DatasetWarning, TikTokPairDataset
from magicpose.errors import UserError
from magicpose.media import IMAGE_EXTENSIONS

SIDECAR_SUFFIX = ".txt"


def read_image_captions(path: str | Path) -> dict[str, str]:
    """The `{"video/frame" or "video": caption}` mapping of a captions file; keys lose an image extension."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such captions file (data.image_captions)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not a JSON file ({err})") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise UserError(f'{path}: expected one JSON object of "video/frame" or "video" keys to caption strings')
    return {_strip_image_extension(str(key).strip("/")): value for key, value in data.items()}


def _strip_image_extension(key: str) -> str:
    stem, dot, ext = key.rpartition(".")
    return stem if dot and "/" in key and ext.lower() in IMAGE_EXTENSIONS else key


class CaptionedPairs(torch.utils.data.Dataset):
    """A `TikTokPairDataset` whose items also carry `caption` (a str), looked up as the module docstring says."""

    def __init__(self, pairs: TikTokPairDataset, prompt: str = "", captions_file: str | Path | None = None) -> None:
        self.pairs, self.prompt = pairs, prompt
        self.mapping = read_image_captions(captions_file) if captions_file else {}
        if self.mapping:
            self._check_keys(Path(captions_file))

    def _check_keys(self, source: Path) -> None:
        """Refuse a file that names nothing of the split; warn once about the keys that match nothing."""
        known = set()
        for video in self.pairs.videos:
            known.add(video.video_id)
            known.update(f"{video.video_id}/{stem}" for stem in video.stems)
        unused = sorted(set(self.mapping) - known)
        split = self.pairs.root / self.pairs.split
        if len(unused) == len(self.mapping):
            raise UserError(f"{source}: none of its {len(unused)} keys names a video or frame of {split} "
                            f"(e.g. {unused[0]!r}; keys are 'video/frame' or 'video')")
        if unused:
            warnings.warn(f"{source}: {len(unused)} key(s) name no video or frame of {split} (e.g. {unused[0]!r})",
                          DatasetWarning, stacklevel=3)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.item(index, self.pairs.epoch)

    def item(self, index: int, epoch: int) -> dict[str, Any]:
        out = self.pairs.item(index, epoch)
        out["caption"] = self.caption(index)
        return out

    def caption(self, index: int) -> str:
        video_number, frame = self.pairs.locate(index)
        video = self.pairs.videos[video_number]
        path = video.frame_path(frame)
        sidecar = path.with_suffix(SIDECAR_SUFFIX)
        if sidecar.is_file():
            try:
                text = sidecar.read_text(encoding="utf-8").strip()
            except UnicodeDecodeError:
                raise UserError(f"{sidecar}: not UTF-8 text (a caption file)") from None
            if text:
                return text
        stem = path.name.rpartition(".")[0]
        for key in (f"{video.video_id}/{stem}", video.video_id):
            if key in self.mapping:
                return self.mapping[key]
        return self.prompt
