"""The toy dataset writer: every video's seeds, identity and dance, written in the TikTok layout.

`generate_toy_dataset` writes the trees described in `magicpose.toy` plus `toy_world.json` (version, seed,
arguments, every video's identity and seeds); `check_request` and `check_root` refuse bad arguments and
folders before anything is written.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from magicpose.errors import UserError
from magicpose.toy.render import render_person
from magicpose.toy.world import Identity, dance_motion, motion_keypoints, sample_identity

# Bump whenever the same arguments would write different files.
TOY_WORLD_VERSION = 2  # 2: per-identity body proportions (Identity.body)
WORLD_FILE = "toy_world.json"
SPLITS: tuple[str, ...] = ("train", "test")
TREES: tuple[str, ...] = ("{split}_set", "pose_map_{split}_set", "keypoints_{split}_set", "mask_{split}_set")
MIN_SIZE, MAX_SIZE = 32, 1024


@dataclass(frozen=True)
class _Video:
    split: str
    name: str
    identity_seed: int
    motion_seed: int


def _videos(seed: int, videos: int, test_videos: int) -> list[_Video]:
    """Per-video seeds from (seed, split, index): train and test never share an identity or a dance.

    Names are numbered across both splits (test videos follow the train ones), so a name is one dancer.
    """
    out = []
    for split_index, (split, count) in enumerate(zip(SPLITS, (videos, test_videos))):
        offset = 0 if split_index == 0 else videos
        for i in range(count):
            state = np.random.SeedSequence([seed, split_index, i]).generate_state(2, np.uint64)
            out.append(_Video(split, f"video_{offset + i:04d}", int(state[0]), int(state[1])))
    return out


def check_request(root: Path, videos: int, test_videos: int, frames: int, size: int, seed: int) -> None:
    for name, value, low in (("videos", videos, 1), ("test_videos", test_videos, 0), ("frames", frames, 1),
                             ("seed", seed, 0)):  # fmt: skip
        if int(value) != value or value < low:
            raise UserError(f"{name}={value!r}: must be an integer >= {low}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise UserError(f"size={size}: must be between {MIN_SIZE} and {MAX_SIZE} pixels")
    if root.exists() and not root.is_dir():
        raise UserError(f"{root}: exists and is not a folder")


def _owned(root: Path) -> list[Path]:
    return [root / WORLD_FILE] + [root / tree.format(split=s) for s in SPLITS for tree in TREES]


def check_root(root: Path, overwrite: bool) -> None:
    """Refuse a non-empty `root`, unless `overwrite` and it holds an earlier toy dataset."""
    if not (root.is_dir() and any(root.iterdir())):
        return
    if not overwrite:
        raise UserError(f"{root}: folder is not empty; pass --overwrite to replace the toy dataset in it")
    if not (root / WORLD_FILE).is_file():
        raise UserError(f"{root}: not empty and has no {WORLD_FILE} (not a toy dataset); "
                        "--overwrite only replaces toy datasets, so choose an empty folder")  # fmt: skip


def _prepare_root(root: Path, overwrite: bool) -> None:
    """Create `root`, or remove an earlier toy dataset from it; other files in it are left alone."""
    check_root(root, overwrite)
    for path in _owned(root):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    root.mkdir(parents=True, exist_ok=True)


def _write_png(path: Path, pixels: np.ndarray) -> None:
    import cv2

    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), pixels, [cv2.IMWRITE_PNG_COMPRESSION, 3]):
        raise OSError(f"could not write {path}")


def _world_record(arguments: dict, plan: list[_Video], identities: list[Identity]) -> dict:
    """toy_world.json: enough to regenerate or audit the dataset; no paths or times, so it is reproducible."""
    entries = {split: [] for split in SPLITS}
    for video, identity in zip(plan, identities):
        entries[video.split].append({
            "video": video.name, "identity_seed": video.identity_seed, "motion_seed": video.motion_seed,
            "identity": identity.to_json(),
        })  # fmt: skip
    return {
        # The generator's name since version 1 (when this code was `magicpose/data/toy.py`); kept, so the same
        # arguments still give byte-identical files.
        "generator": "magicpose.data.toy",
        "version": TOY_WORLD_VERSION,
        "seed": arguments["seed"],
        "arguments": arguments,
        "regenerate": "identity = sample_identity(default_rng(identity_seed)); "
        "motion = dance_motion(default_rng(motion_seed), frames, identity.body); "
        "keypoints = motion_keypoints(motion, size, identity.body)",
        "splits": entries,
    }


def _write_video(root: Path, video: _Video, identity: Identity, frames: int, size: int,
                 progress: Callable[[int], object] | None) -> None:  # fmt: skip
    from magicpose.pose.openpose import PoseFrame, render_pose, write_keypoints_json

    folders = [root / tree.format(split=video.split) / video.name for tree in TREES]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    frame_dir, pose_dir, keypoint_dir, mask_dir = folders
    motion = dance_motion(np.random.default_rng(video.motion_seed), frames, identity.body)
    for t, keypoints in enumerate(motion_keypoints(motion, size, identity.body)):
        image, mask = render_person(identity, keypoints, size)
        pose = PoseFrame([keypoints], size, size)
        stem = f"{t:04d}"
        _write_png(frame_dir / f"{stem}.png", image)
        _write_png(pose_dir / f"{stem}.png", render_pose(pose))
        write_keypoints_json(keypoint_dir / f"{stem}.json", pose)
        _write_png(mask_dir / f"{stem}.png", mask.astype(np.uint8) * 255)
        if progress is not None:
            progress(1)


def generate_toy_dataset(
    root: str | Path,
    videos: int = 40,
    test_videos: int = 8,
    frames: int = 48,
    size: int = 128,
    seed: int = 0,
    overwrite: bool = False,
    progress: Callable[[int], object] | None = None,
) -> dict:
    """Write a toy dance dataset to `root` (layout in `magicpose.toy`) and return a summary.

    `videos` train and `test_videos` test videos of `frames` frames each, `size` x `size` pixels. A
    non-empty `root` is refused unless `overwrite` (and then only an earlier toy dataset is replaced).
    `progress(n)` is called after every frame. The summary holds the counts, seconds and frames/s.
    """
    root = Path(root)
    check_request(root, videos, test_videos, frames, size, seed)
    _prepare_root(root, overwrite)
    start = time.perf_counter()
    arguments = {"videos": videos, "test_videos": test_videos, "frames": frames, "size": size, "seed": seed}
    plan = _videos(seed, videos, test_videos)
    identities = [sample_identity(np.random.default_rng(v.identity_seed)) for v in plan]
    record = _world_record(arguments, plan, identities)
    (root / WORLD_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    for video, identity in zip(plan, identities):
        _write_video(root, video, identity, frames, size, progress)
    seconds = time.perf_counter() - start
    total = len(plan) * frames
    return {
        "root": str(root), **arguments, "frames_written": total,
        "seconds": seconds, "frames_per_second": total / max(seconds, 1e-9),
    }  # fmt: skip
