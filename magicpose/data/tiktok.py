"""TikTok-format datasets: (reference, target, target pose) pairs and (reference, clip, clip poses) clips for
training, whole videos for evaluation.

Layout (any split name works; `train_set`, `val_set`, `test_set` and the released TikTok-v4's `disco_test_set` are the
usual ones)::

    ROOT/<split>/<video>/<frame>.{png,jpg}        frames
    ROOT/pose_map_<split>/<video>/<frame>.png     pose maps, paired with frames by file-name STEM
    ROOT/keypoints_<split>/<video>/<frame>.json   optional OpenPose keypoints (enable landmark dropout)
    ROOT/mask_<split>/<video>/<frame>.png         optional person masks (toy-world ground truth; unused here)

Fixes for the original loader (reference report §2.4, §2.5, §9):

* pairs are matched by file name, never by sorted index, so a frame whose pose map the detector
  skipped is dropped (with one warning per video) instead of shifting every later pair;
* map-style datasets with one item per (video, target frame): `DistributedSampler` shards them, so
  DDP ranks see different data (the original fed every rank identical samples);
* all randomness comes from a generator seeded by (seed, epoch, index): reproducible, different
  every epoch, different across ranks (they get different indices) and independent of global RNG state;
* target and pose map share one geometric transform; the reference gets its own;
* `max_frame_distance` limits how far the reference may be from the target (the original's
  documented-but-ignored `img_bin_limit`);
* face/hand landmark dropout (the paper's augmentation the original code lacks).

`TikTokClipDataset` gives clips of `num_frames` frames at a `frame_stride` for a temporal motion module
(stage 3), with the same pairing, randomness and augmentations: one window for the clip, its pose maps and
its reference, and one dropout draw for all its pose maps.

`magicpose check-data ROOT` lists every problem in a dataset; these classes only skip what they can
skip safely and raise a one-line `UserError` for a root they cannot use.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from magicpose.data.transforms import SquareCrop, check_size_and_mode, to_tensor, transform_image
from magicpose.errors import UserError
from magicpose.media import IMAGE_EXTENSIONS, load_image, natural_sort_key

POSE_PREFIX = "pose_map_"
KEYPOINTS_PREFIX = "keypoints_"
MASK_PREFIX = "mask_"
NO_VIDEO_FOLDERS = "no video folders (expected <split>/<video>/<frame>.png)"
_SHOW = 5  # names listed in one warning
_OS_JUNK = frozenset({"thumbs.db", "desktop.ini"})


class DatasetWarning(UserWarning):
    """A data problem the loader works around by skipping files; `magicpose check-data` lists them all."""


# ----------------------------------------------------------------------------------------------------------
# Index
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitDirs:
    """The folders of one split; `keypoints` / `masks` are None where the optional tree is absent."""

    frames: Path
    poses: Path
    keypoints: Path | None
    masks: Path | None


@dataclass(frozen=True, eq=False)
class VideoIndex:
    """The usable frames of one video: frame, pose map and (optional) keypoints JSON share a stem.

    Frames are in natural file-name order; `frame_index` / `ref_frame_index` in items index them.
    File names live in numpy string arrays rather than lists of `Path`s: DataLoader workers fork
    from the main process, and touching millions of Python objects (refcounts) would copy the
    pages holding them into every worker.
    """

    video_id: str
    frame_dir: Path
    pose_dir: Path
    keypoints_dir: Path | None
    frame_names: np.ndarray  # str, e.g. "0001.png"
    pose_names: np.ndarray  # str, same stems as frame_names
    keypoints_names: np.ndarray  # str, "" where the frame has no keypoints JSON

    def __len__(self) -> int:
        return len(self.frame_names)

    def frame_path(self, index: int) -> Path:
        return self.frame_dir / str(self.frame_names[index])

    def pose_path(self, index: int) -> Path:
        return self.pose_dir / str(self.pose_names[index])

    def keypoints_path(self, index: int) -> Path | None:
        name = str(self.keypoints_names[index])
        return self.keypoints_dir / name if name and self.keypoints_dir is not None else None

    @property
    def frames(self) -> list[Path]:
        return [self.frame_path(i) for i in range(len(self))]

    @property
    def poses(self) -> list[Path]:
        return [self.pose_path(i) for i in range(len(self))]

    @property
    def keypoints(self) -> list[Path | None]:
        return [self.keypoints_path(i) for i in range(len(self))]

    @property
    def stems(self) -> list[str]:
        return [name.rpartition(".")[0] for name in self.frame_names.tolist()]


def split_problem(root: str | Path, split: str) -> tuple[Path, str] | None:
    """(missing folder, reason) when `split` cannot be used at all, else None.

    The datasets raise it as a `UserError` and `magicpose check-data` reports it, so both agree.
    """
    root = Path(root)
    frames, poses = root / split, root / f"{POSE_PREFIX}{split}"
    if not frames.is_dir():
        return frames, f"no such split folder (expected {root}/{split}/<video>/<frame>.png)"
    if not poses.is_dir():
        return poses, f"no such pose-map folder (expected {poses}/<video>/<frame>.png for every frame)"
    return None


def no_videos_reason(min_frames: int) -> str:
    """Why a split without a single usable video cannot be trained on (shared with check-data)."""
    return f"no video has {min_frames} or more frames with pose maps"


AUTO_SPLIT = "auto"
# The released TikTok-v4's test split is DisCo's `disco_test_set`; `test_set` is the name the README suggests for
# custom data (and the one the toy world writes).
TEST_SPLITS = ("disco_test_set", "test_set")


def test_split(root: str | Path, split: str | None) -> tuple[str, str | None]:
    """(the split to use, a line saying how it was found or None). `auto` (or None): the first of `TEST_SPLITS`
    that `root` has; any other name is used as given (its folders are checked where it is read)."""
    if split not in (None, AUTO_SPLIT):
        return split, None
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such dataset folder")
    for name in TEST_SPLITS:
        if (root / name).is_dir():
            return name, f"test split: {name} (the first of {', '.join(TEST_SPLITS)} that {root} has)"
    raise UserError(f"{root}: no test split ({' or '.join(f'{n}/' for n in TEST_SPLITS)}); name one with --split "
                    "or data.val_split")


def split_dirs(root: str | Path, split: str) -> SplitDirs:
    """The folders of `split` under `root`; a one-line `UserError` naming the missing folder otherwise."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such dataset folder")
    problem = split_problem(root, split)
    if problem is not None:
        raise UserError(f"{problem[0]}: {problem[1]}")
    keypoints = root / f"{KEYPOINTS_PREFIX}{split}"
    masks = root / f"{MASK_PREFIX}{split}"
    return SplitDirs(
        root / split,
        root / f"{POSE_PREFIX}{split}",
        keypoints if keypoints.is_dir() else None,
        masks if masks.is_dir() else None,
    )


def is_hidden(name: str) -> bool:
    """Dot files and OS clutter (Thumbs.db): never data, never reported."""
    return name.startswith(".") or name.lower() in _OS_JUNK


def list_video_dirs(folder: Path) -> list[str]:
    """Names of the (non-hidden) subfolders of `folder`, naturally sorted; [] when it does not exist."""
    if not folder.is_dir():
        return []
    with os.scandir(folder) as entries:
        names = [e.name for e in entries if not is_hidden(e.name) and e.is_dir()]
    return sorted(names, key=natural_sort_key)


def list_stems(folder: Path | None, extensions: Iterable[str]) -> tuple[dict[str, Path], list[str]]:
    """One listing of `folder`: {stem: path} for files with those extensions, and stems seen twice.

    A stem seen twice (`0001.png` and `0001.jpg`) is ambiguous, so it is left out of the mapping.
    A missing folder lists as empty: a missing pose folder means every frame lacks its pose map.
    """
    if folder is None or not folder.is_dir():
        return {}, []
    wanted = frozenset(extensions)
    found: dict[str, Path] = {}
    duplicates: set[str] = set()
    with os.scandir(folder) as entries:
        for entry in entries:
            stem, dot, ext = entry.name.rpartition(".")
            if is_hidden(entry.name) or not dot or ext.lower() not in wanted or not entry.is_file():
                continue
            if stem in found:
                duplicates.add(stem)
            found[stem] = Path(entry.path)
    for stem in duplicates:
        del found[stem]
    return found, sorted(duplicates, key=natural_sort_key)


def _preview(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOW])
    return f"{shown}, ..." if len(names) > _SHOW else shown


def _warn_unpaired(folder: Path, no_pose: list[str], no_frame: list[str], duplicates: list[str]) -> None:
    """One warning per video with everything skipped in it, so a big dataset does not drown the log."""
    parts = []
    if no_pose:
        parts.append(f"{len(no_pose)} frame(s) without pose map ({_preview(no_pose)})")
    if no_frame:
        parts.append(f"{len(no_frame)} pose map(s) without frame ({_preview(no_frame)})")
    if duplicates:
        parts.append(f"{len(duplicates)} ambiguous stem(s) with two files ({_preview(duplicates)})")
    if parts:
        message = f"{folder}: skipped " + "; ".join(parts) + " (frames pair with pose maps by file name)"
        warnings.warn(message, DatasetWarning, stacklevel=3)


def _index_video(dirs: SplitDirs, video_id: str) -> VideoIndex:
    """Pair one video's frames, pose maps and keypoints by stem: one directory listing per folder."""
    frames, dup_frames = list_stems(dirs.frames / video_id, IMAGE_EXTENSIONS)
    poses, dup_poses = list_stems(dirs.poses / video_id, IMAGE_EXTENSIONS)
    keypoints, _ = list_stems(dirs.keypoints / video_id if dirs.keypoints else None, ("json",))
    duplicates = sorted(set(dup_frames) | set(dup_poses), key=natural_sort_key)
    for stem in duplicates:
        frames.pop(stem, None)
        poses.pop(stem, None)
    paired = sorted(frames.keys() & poses.keys(), key=lambda s: natural_sort_key(frames[s].name))
    no_pose = sorted(frames.keys() - poses.keys(), key=natural_sort_key)
    no_frame = sorted(poses.keys() - frames.keys(), key=natural_sort_key)
    _warn_unpaired(dirs.frames / video_id, no_pose, no_frame, duplicates)
    return VideoIndex(
        video_id=video_id,
        frame_dir=dirs.frames / video_id,
        pose_dir=dirs.poses / video_id,
        keypoints_dir=dirs.keypoints / video_id if dirs.keypoints else None,
        frame_names=_names([frames[s].name for s in paired]),
        pose_names=_names([poses[s].name for s in paired]),
        keypoints_names=_names([keypoints[s].name if s in keypoints else "" for s in paired]),
    )


def _names(names: list[str]) -> np.ndarray:
    # dtype=str sizes the fixed-width unicode type to the longest name (an empty list still works).
    return np.array(names, dtype=str)


def scan_split(root: str | Path, split: str) -> list[VideoIndex]:
    """Index every video of `split` once (one listing per folder, nothing per item).

    Videos come in natural order; a video whose frames all lack pose maps comes back empty (callers
    drop short videos). Broken roots raise a one-line `UserError` naming the path.
    """
    dirs = split_dirs(root, split)
    video_ids = list_video_dirs(dirs.frames)
    if not video_ids:
        raise UserError(f"{dirs.frames}: {NO_VIDEO_FOLDERS}")
    pose_only = sorted(set(list_video_dirs(dirs.poses)) - set(video_ids), key=natural_sort_key)
    if pose_only:
        warnings.warn(
            f"{dirs.poses}: skipped {len(pose_only)} pose-map folder(s) without frame folder "
            f"({_preview(pose_only)})",
            DatasetWarning,
            stacklevel=2,
        )
    return [_index_video(dirs, video_id) for video_id in video_ids]


def _usable_videos(
    root: str | Path, split: str, min_frames: int, too_short: Callable[[int], str] | None = None
) -> list[VideoIndex]:
    """Videos with at least `min_frames` paired frames; one warning for all the ones dropped.

    When none is left: a `UserError` whose reason is `too_short(longest video's length)`, or by default
    `no_videos_reason` (the reason `check-data` gives).
    """
    videos = scan_split(root, split)
    usable = [video for video in videos if len(video) >= min_frames]
    short = [f"{video.video_id} ({len(video)})" for video in videos if len(video) < min_frames]
    if short:
        warnings.warn(
            f"{Path(root) / split}: skipped {len(short)} video(s) with fewer than {min_frames} paired "
            f"frame(s): {_preview(short)}",
            DatasetWarning,
            stacklevel=3,
        )
    if not usable:
        longest = max((len(video) for video in videos), default=0)
        reason = no_videos_reason(min_frames) if too_short is None else too_short(longest)
        raise UserError(f"{Path(root) / split}: {reason} (run `magicpose check-data {root}`)")
    return usable


# ----------------------------------------------------------------------------------------------------------
# Training items: what pairs and clips share
# ----------------------------------------------------------------------------------------------------------


class _TrainingItems(torch.utils.data.Dataset):
    """What the training datasets share: the usable videos of `ROOT/<split>`, items numbered video after video,
    the epoch in shared memory, one generator per (seed, epoch, index), the geometric transform and the pose map
    (stored, or re-rendered from keypoints without face / hands).

    Subclasses call `_index(videos, items_per_video)` and define `item(index, epoch)`; `EpochIndexed` and
    `training_loader` (magicpose.training.data) need only `__len__` and `item`.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        size: int,
        resize_mode: str,
        max_frame_distance: int | None,
        random_resized_crop: tuple[float, float] | None,
        face_dropout: float,
        hand_dropout: float,
        seed: int,
    ) -> None:
        check_size_and_mode(size, resize_mode)
        self._check_args(max_frame_distance, random_resized_crop, face_dropout, hand_dropout, seed)
        self.root, self.split = Path(root), split
        self.size, self.resize_mode = size, resize_mode
        self.max_frame_distance = max_frame_distance
        self.random_resized_crop = tuple(random_resized_crop) if random_resized_crop else None
        self.face_dropout, self.hand_dropout = face_dropout, hand_dropout
        self.seed = seed
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def _index(self, videos: list[VideoIndex], items_per_video: Callable[[VideoIndex], int]) -> None:
        self.videos = videos
        # starts[v] = index of video v's first item; a searchsorted maps an item to its video.
        self._starts = np.cumsum([0] + [items_per_video(video) for video in videos])

    @staticmethod
    def _check_args(
        max_frame_distance: int | None,
        random_resized_crop: tuple[float, float] | None,
        face_dropout: float,
        hand_dropout: float,
        seed: int,
    ) -> None:
        if max_frame_distance is not None and max_frame_distance < 1:
            raise ValueError(f"max_frame_distance must be >= 1 or None, got {max_frame_distance}")
        if random_resized_crop is not None:
            lo, hi = random_resized_crop
            if not 0.0 < lo <= hi <= 1.0:
                raise ValueError(
                    f"random_resized_crop must satisfy 0 < lo <= hi <= 1, got {random_resized_crop}"
                )
        for name, p in (("face_dropout", face_dropout), ("hand_dropout", hand_dropout)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's random draws; call it at the start of every epoch (like the sampler's)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._epoch.fill_(epoch)

    def locate(self, index: int) -> tuple[int, int]:
        """(video number, the item's first frame index) of item `index`."""
        if not 0 <= index < len(self):
            raise IndexError(f"item {index} out of range for {len(self)} items")
        video = int(np.searchsorted(self._starts, index, side="right")) - 1
        return video, index - int(self._starts[video])

    def generator(self, index: int, epoch: int | None = None) -> np.random.Generator:
        """The item's own generator: SeedSequence mixes (seed, epoch, index) into independent streams."""
        return np.random.default_rng([self.seed, self.epoch if epoch is None else epoch, index])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str | int]:
        return self.item(index, self.epoch)

    def item(self, index: int, epoch: int) -> dict[str, torch.Tensor | str | int]:
        raise NotImplementedError

    def _transform(self, image: Image.Image, crop: SquareCrop) -> Image.Image:
        return transform_image(image, self.size, self.resize_mode, crop)

    def _pose_image(
        self, video: VideoIndex, frame: int, frame_size: tuple[int, int], drop_face: bool, drop_hands: bool
    ) -> Image.Image:
        """The stored pose map, or a re-render from keypoints without the dropped parts.

        The re-render uses `render_pose` (the ControlNet v1.1 annotator's style, the style of the TikTok
        pose maps); marker sizes follow the frame's resolution.
        """
        keypoints = video.keypoints_path(frame)
        if not (drop_face or drop_hands) or keypoints is None:
            return load_image(video.pose_path(frame))
        from magicpose.pose.openpose import read_keypoints_json, render_pose

        dropped = {"face"} if drop_face else set()
        dropped |= {"hands"} if drop_hands else set()
        parts = tuple(part for part in ("body", "hands", "face") if part not in dropped)
        # Raw OpenPose files carry no canvas size: their keypoints are in the frame's pixels.
        pose_frame = read_keypoints_json(keypoints, width=frame_size[0], height=frame_size[1])
        # Rendering at the frame's size scales keypoints from the file's canvas if it has another one.
        return Image.fromarray(render_pose(pose_frame, parts=parts, size=frame_size))


# ----------------------------------------------------------------------------------------------------------
# Training pairs
# ----------------------------------------------------------------------------------------------------------


class TikTokPairDataset(_TrainingItems):
    """Map-style training pairs: one item per (video, target frame) of `ROOT/<split>`.

    Item (a dict; the default collate stacks tensors, turns ints into tensors and strs into lists):

    * `pixel_values`: (3, S, S) float in [-1, 1], the target frame;
    * `ref_pixel_values`: (3, S, S) float in [-1, 1], another frame of the same video, uniform over
      the video or over the frames at most `max_frame_distance` away, never the target itself;
    * `pose_pixel_values`: (3, S, S) float in [0, 1], the target's pose map;
    * `video_id`: str, the video folder name;
    * `frame_index`, `ref_frame_index`: int, indices into the video's naturally sorted list of paired
      frames (`dataset.videos[v].frames`).

    Geometry: each image is made square (`resize_mode="crop"`: centre square, MagicDance's choice;
    `"pad"`: black borders, keeps heads and feet), then optionally a random square window with area
    fraction in `random_resized_crop=(lo, hi)` is taken, then resized to `size`. The target and its
    pose map share one window; the reference draws its own. Windows are fractions of the square, so
    a pose map stored at another size with the same aspect ratio still lines up (`check-data` flags
    any size mismatch).

    Landmark dropout: with probability `face_dropout` / `hand_dropout` the target pose map is
    re-rendered from `ROOT/keypoints_<split>/<video>/<frame>.json` without the face / hands. Frames
    without a keypoints file keep their stored pose map (a pose map image cannot be edited reliably).

    Randomness: every item draws from its own generator seeded by (seed, epoch, index), so an item is
    reproducible, changes with `set_epoch`, and differs across DDP ranks because `DistributedSampler`
    hands them different indices; global RNG state is neither used nor touched. The epoch lives in
    shared memory, so `set_epoch` also reaches persistent workers for batches not yet prefetched.
    """
    def __init__(
        self,
        root: str | Path,
        split: str = "train_set",
        size: int = 512,
        resize_mode: str = "crop",
        max_frame_distance: int | None = None,
        random_resized_crop: tuple[float, float] | None = None,
        face_dropout: float = 0.0,
        hand_dropout: float = 0.0,
        seed: int = 0,
        min_frames: int = 2,
    ) -> None:
        super().__init__(
            root, split, size, resize_mode, max_frame_distance, random_resized_crop, face_dropout, hand_dropout, seed
        )
        if min_frames < 2:
            raise ValueError(f"min_frames must be >= 2 (the reference is another frame), got {min_frames}")
        self._index(_usable_videos(root, split, min_frames), len)

    def item(self, index: int, epoch: int) -> dict[str, torch.Tensor | str | int]:
        """Item `index` with the random draws of `epoch` (samplers that know the epoch call this directly)."""
        video_number, frame = self.locate(index)
        video = self.videos[video_number]
        rng = self.generator(index, epoch)
        # Fixed draw order: the reference, the dropout coins, then the two windows.
        ref = self._pick_reference(rng, frame, len(video))
        drop_face = bool(rng.random() < self.face_dropout)
        drop_hands = bool(rng.random() < self.hand_dropout)
        target_crop = SquareCrop.random(rng, self.random_resized_crop)
        ref_crop = SquareCrop.random(rng, self.random_resized_crop)
        target = load_image(video.frame_path(frame))
        pose = self._pose_image(video, frame, target.size, drop_face, drop_hands)
        reference = load_image(video.frame_path(ref))
        return {
            "pixel_values": to_tensor(self._transform(target, target_crop), signed=True),
            "ref_pixel_values": to_tensor(self._transform(reference, ref_crop), signed=True),
            "pose_pixel_values": to_tensor(self._transform(pose, target_crop), signed=False),
            "video_id": video.video_id,
            "frame_index": frame,
            "ref_frame_index": ref,
        }

    def _pick_reference(self, rng: np.random.Generator, target: int, count: int) -> int:
        """Uniform over the other frames within `max_frame_distance` (all of them when None)."""
        distance = count if self.max_frame_distance is None else self.max_frame_distance
        lo, hi = max(0, target - distance), min(count - 1, target + distance)
        # hi - lo candidates once the target is left out; shift the upper ones past it.
        ref = int(rng.integers(lo, hi))
        return ref + 1 if ref >= target else ref


# ----------------------------------------------------------------------------------------------------------
# Training clips
# ----------------------------------------------------------------------------------------------------------


class TikTokClipDataset(_TrainingItems):
    """Map-style training clips (stage 3, a temporal motion module): one item per (video, first frame) of
    `ROOT/<split>`.

    A clip is `num_frames` (F) frames every `frame_stride` (S) frames: paired frames i, i+S, ..., i+(F-1)S of
    the video's naturally sorted list of frames that have a pose map (paired by file-name stem, as in
    `TikTokPairDataset`, so a frame without a pose map is left out of the list, not paired with its
    neighbour's). Every start i with i+(F-1)S inside the video is an item; videos with fewer than (F-1)S+1
    paired frames are skipped (one warning), and a split where none is long enough is a one-line `UserError`
    naming the split folder, F, S and the longest video's length.

    Item (a dict; the default collate stacks it into `b f 3 H W` and `b 3 H W` batches):

    * `pixel_values`: (F, 3, S, S) float in [-1, 1], the clip's frames in order;
    * `ref_pixel_values`: (3, S, S) float in [-1, 1], the reference: one frame of the same video;
    * `pose_pixel_values`: (F, 3, S, S) float in [0, 1], the clip frames' pose maps;
    * `video_id`: str, the video folder name;
    * `frame_index`: int, the clip's first frame (as `TikTokPairDataset`'s target frame);
    * `frame_indices`: (F,) int64, the clip's frames; `ref_frame_index`: int, the reference's. Indices are
      into the video's list of paired frames (`dataset.videos[v].frames`, `.stems` for the names).

    Reference: uniform over ALL frames of the video (or over those at most `max_frame_distance` before the
    clip's first or after its last frame), so it may be one of the clip's frames. MagicAnimate and
    AnimateAnyone draw it anywhere in the video the same way; at inference the reference is usually a frame of
    the animated video too (the first), and leaving the clip out would make every video need more frames than
    a clip and push long clips' references to the video's ends. Unlike in pairs, F = 1 is allowed.

    Geometry: ONE window per item (the same square crop or pad, `random_resized_crop` window and resize) for
    every frame of the clip, their pose maps and the reference, as AnimateAnyone's training does: a motion
    module must not see the camera jump between frames, and the reference shows the person at the clip's scale.

    Landmark dropout: one face coin and one hand coin per item; when they drop something, every frame's pose
    map is re-rendered from its keypoints JSON without those parts, so the same landmarks are missing on every
    frame. A clip with a frame without a keypoints file keeps all its stored pose maps (no flicker between
    re-rendered and stored frames).

    Randomness as `TikTokPairDataset`: a generator per (seed, epoch, index), `set_epoch`, `item(index, epoch)`,
    so `magicpose.training.data.training_loader` shards ranks and resumes exactly.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train_set",
        num_frames: int = 16,
        frame_stride: int = 1,
        size: int = 512,
        resize_mode: str = "crop",
        max_frame_distance: int | None = None,
        random_resized_crop: tuple[float, float] | None = None,
        face_dropout: float = 0.0,
        hand_dropout: float = 0.0,
        seed: int = 0,
    ) -> None:
        for name, value in (("num_frames", num_frames), ("frame_stride", frame_stride)):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise UserError(f"{name}={value!r} (data.{name}): must be an integer >= 1")
        super().__init__(
            root, split, size, resize_mode, max_frame_distance, random_resized_crop, face_dropout, hand_dropout, seed
        )
        self.num_frames, self.frame_stride = int(num_frames), int(frame_stride)
        self.span = (self.num_frames - 1) * self.frame_stride + 1  # paired frames one clip covers

        def too_short(longest: int) -> str:
            return (f"no video is long enough for clips of {self.num_frames} frames at stride {self.frame_stride} "
                    f"({self.span} paired frames needed, the longest video has {longest})")

        videos = _usable_videos(root, split, self.span, too_short)
        self._index(videos, lambda video: len(video) - self.span + 1)

    def clip_frames(self, start: int) -> list[int]:
        """The frame indices of the clip starting at `start`."""
        return list(range(start, start + self.span, self.frame_stride))

    def item(self, index: int, epoch: int) -> dict[str, torch.Tensor | str | int]:
        """Item `index` with the random draws of `epoch` (samplers that know the epoch call this directly)."""
        video_number, start = self.locate(index)
        video = self.videos[video_number]
        frames = self.clip_frames(start)
        rng = self.generator(index, epoch)
        # Fixed draw order: the reference, the dropout coins, then the one window.
        ref = self._pick_reference(rng, frames[0], frames[-1], len(video))
        drop_face = bool(rng.random() < self.face_dropout)
        drop_hands = bool(rng.random() < self.hand_dropout)
        crop = SquareCrop.random(rng, self.random_resized_crop)
        if not all(video.keypoints_path(frame) is not None for frame in frames):
            drop_face = drop_hands = False  # all stored maps rather than a mix of stored and re-rendered ones
        images = {frame: load_image(video.frame_path(frame)) for frame in frames}
        poses = [self._pose_image(video, frame, images[frame].size, drop_face, drop_hands) for frame in frames]
        reference = images[ref] if ref in images else load_image(video.frame_path(ref))
        return {
            "pixel_values": self._stack([images[frame] for frame in frames], crop, signed=True),
            "ref_pixel_values": to_tensor(self._transform(reference, crop), signed=True),
            "pose_pixel_values": self._stack(poses, crop, signed=False),
            "video_id": video.video_id,
            "frame_index": start,
            "frame_indices": torch.tensor(frames, dtype=torch.int64),
            "ref_frame_index": ref,
        }

    def _stack(self, images: list[Image.Image], crop: SquareCrop, signed: bool) -> torch.Tensor:
        return torch.stack([to_tensor(self._transform(image, crop), signed) for image in images])

    def _pick_reference(self, rng: np.random.Generator, first: int, last: int, count: int) -> int:
        """Uniform over the video's frames, or those within `max_frame_distance` of the clip; clip frames included."""
        distance = count if self.max_frame_distance is None else self.max_frame_distance
        return int(rng.integers(max(0, first - distance), min(count - 1, last + distance) + 1))


# ----------------------------------------------------------------------------------------------------------
# Evaluation videos
# ----------------------------------------------------------------------------------------------------------


class TikTokVideoDataset(torch.utils.data.Dataset):
    """Evaluation: one item per video of `ROOT/<split>`, frames in natural order (DisCo protocol).

    Item (use `batch_size=1` or `batch_size=None`: videos differ in length):

    * `ref_pixel_values`: (3, S, S) in [-1, 1], the first frame, the reference for the whole video;
    * `pixel_values`: (F, 3, S, S) in [-1, 1], every frame including the first (the ground truth);
    * `pose_pixel_values`: (F, 3, S, S) in [0, 1], their pose maps;
    * `video_id`: str; `frame_names`: list of the F frame file stems (name the outputs after them).

    Frames without a pose map are skipped (one warning per video), so `frame_names` can have gaps.
    Everything is deterministic (centre crop or pad, no augmentation). A video of F frames at S=512
    takes 6 MB per frame; `max_frames` keeps only the first frames.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "test_set",
        size: int = 512,
        resize_mode: str = "crop",
        max_frames: int | None = None,
    ) -> None:
        check_size_and_mode(size, resize_mode)
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
        self.root, self.split = Path(root), split
        self.size, self.resize_mode, self.max_frames = size, resize_mode, max_frames
        self.videos = _usable_videos(root, split, min_frames=1)

    def __len__(self) -> int:
        return len(self.videos)

    def _load(self, path: Path, signed: bool) -> torch.Tensor:
        image = transform_image(load_image(path), self.size, self.resize_mode, SquareCrop())
        return to_tensor(image, signed)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str | list[str]]:
        video = self.videos[index]
        count = len(video) if self.max_frames is None else min(len(video), self.max_frames)
        frames = torch.stack([self._load(path, signed=True) for path in video.frames[:count]])
        poses = torch.stack([self._load(path, signed=False) for path in video.poses[:count]])
        return {
            "ref_pixel_values": frames[0].clone(),
            "pixel_values": frames,
            "pose_pixel_values": poses,
            "video_id": video.video_id,
            "frame_names": video.stems[:count],
        }
