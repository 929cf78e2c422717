"""`magicpose check-data`: list every problem of a TikTok-format dataset before training trips on it.

Every image is actually decoded (Pillow `load()`), because a truncated PNG opens fine and only fails
when a DataLoader worker reaches it hours into training. Problems have a kind, a path and whether
they block training: blocking problems crash the loader or feed it wrong pairs; the others are
skipped by the loader (with a warning) and only cost data.

`--quarantine DIR` moves the offending frames, together with their pose maps, keypoints and masks,
to DIR under the same relative layout (ROOT/train_set/v1/0003.png -> DIR/train_set/v1/0003.png),
so they can be inspected and moved back. Nothing is ever deleted or overwritten.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from magicpose.errors import UserError

if TYPE_CHECKING:
    from magicpose.data.tiktok import SplitDirs

# magicpose.data.tiktok (torch) and Pillow are imported inside functions: building the CLI parser
# must stay fast.

# kind -> (blocks training, what it means)
KINDS: dict[str, tuple[bool, str]] = {
    "missing_folder": (True, "split or pose-map folder missing"),
    "no_videos": (True, "split without a single usable video"),
    "unreadable_image": (True, "image does not decode (truncated or corrupt); the loader would crash"),
    "size_mismatch": (True, "frame and pose map differ in size; the pose would not line up"),
    "bad_keypoints": (True, "keypoints JSON does not parse; landmark dropout would crash"),
    "missing_pose_map": (False, "frame without pose map (the loader skips it)"),
    "orphan_pose_map": (False, "pose map without frame (the loader skips it)"),
    "duplicate_stem": (False, "two files share a stem, e.g. 0001.png and 0001.jpg (the loader skips both)"),
    "empty_video": (False, "video folder without images (the loader skips it)"),
    "too_few_frames": (False, "video with fewer usable frames than --min-frames (the loader skips it)"),
    "stray_file": (False, "not an image (the loader ignores it)"),
}
_DEFAULT_SPLITS = ("train_set", "val_set", "test_set", "disco_test_set")


@dataclass(frozen=True)
class Problem:
    """One problem: `path` is the offending file or folder, `detail` says what is wrong with it."""

    kind: str
    path: Path
    detail: str
    blocking: bool
    quarantined: bool = False


@dataclass
class Report:
    """What `check_dataset` found (and moved)."""

    root: Path
    splits: list[str]
    problems: list[Problem] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)  # videos, frames, pose maps, keypoints
    moved: list[tuple[Path, Path]] = field(default_factory=list)
    quarantine: Path | None = None

    @property
    def blocks_training(self) -> bool:
        """True when a problem that breaks training is left (quarantined files no longer count)."""
        return any(p.blocking and not p.quarantined for p in self.problems)

    def kind_counts(self) -> Counter[str]:
        return Counter(p.kind for p in self.problems)

    def format(self, limit: int = 10) -> str:
        """Summary table (kind -> count), then the first `limit` problems of each kind."""
        lines = [self._headline()]
        counts = self.kind_counts()
        if counts:
            lines += ["", f"{'problem':<18} {'count':>7}  blocks training"]
            for kind in _ordered(counts):
                lines.append(f"{kind:<18} {counts[kind]:>7}  {'yes' if KINDS[kind][0] else 'no'}")
        for kind in _ordered(counts):
            lines += ["", f"{kind}: {KINDS[kind][1]}"]
            of_kind = [p for p in self.problems if p.kind == kind]
            for p in of_kind[:limit]:
                lines.append(f"  {p.path}: {p.detail}" + (" [quarantined]" if p.quarantined else ""))
            if len(of_kind) > limit:
                lines.append(f"  ... and {len(of_kind) - limit} more")
        if self.quarantine is not None:
            moved = f"moved {len(self.moved)} file(s) to {self.quarantine} (same layout as under {self.root})"
            lines += ["", moved]
        lines += ["", self._verdict()]
        return "\n".join(lines)

    def _headline(self) -> str:
        c = self.counts
        return (
            f"checked {self.root}: {len(self.splits)} split(s) ({', '.join(self.splits) or 'none'}), "
            f"{c['videos']} video(s), {c['frames']} frame(s), {c['pose_maps']} pose map(s), "
            f"{c['keypoints']} keypoints file(s)"
        )

    def _verdict(self) -> str:
        if not self.problems:
            return "OK: no problems found"
        blocking = sum(p.blocking and not p.quarantined for p in self.problems)
        if blocking:
            return f"FAIL: {blocking} problem(s) block training (fix them or use --quarantine DIR)"
        return f"OK: {len(self.problems)} problem(s), none blocks training"


def _ordered(counts: Counter[str]) -> list[str]:
    """Kinds in KINDS order: blocking ones first."""
    return [kind for kind in KINDS if counts[kind]]


# ----------------------------------------------------------------------------------------------------------
# Listing
# ----------------------------------------------------------------------------------------------------------


@dataclass
class _Folder:
    """One listing of one video folder: files by stem (the wanted extensions) and everything else."""

    path: Path
    exists: bool
    by_stem: dict[str, list[Path]] = field(default_factory=dict)
    strays: list[Path] = field(default_factory=list)

    @property
    def unique(self) -> dict[str, Path]:
        return {stem: paths[0] for stem, paths in self.by_stem.items() if len(paths) == 1}


def _list_folder(path: Path | None, extensions: Iterable[str]) -> _Folder:
    """One `os.scandir` of a video folder; a missing folder lists as empty with `exists=False`."""
    from magicpose.data.tiktok import is_hidden

    if path is None or not path.is_dir():
        return _Folder(path or Path(), exists=False)
    wanted = frozenset(extensions)
    folder = _Folder(path, exists=True)
    with os.scandir(path) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if is_hidden(entry.name):
                continue
            stem, dot, ext = entry.name.rpartition(".")
            if entry.is_file() and dot and ext.lower() in wanted:
                folder.by_stem.setdefault(stem, []).append(Path(entry.path))
            else:
                folder.strays.append(Path(entry.path))
    return folder


@dataclass
class _Video:
    """A video's four folders (frames, pose maps, keypoints, masks)."""

    video_id: str
    frames: _Folder
    poses: _Folder
    keypoints: _Folder
    masks: _Folder

    def group(self, stem: str) -> list[Path]:
        """Every file of frame `stem` across the trees: what quarantine moves together."""
        folders = (self.frames, self.poses, self.keypoints, self.masks)
        return [path for folder in folders for path in folder.by_stem.get(stem, [])]

    def images(self) -> list[Path]:
        return [p for folder in (self.frames, self.poses) for paths in folder.by_stem.values() for p in paths]


def _top_level_strays(folder: Path | None) -> list[Path]:
    """Files sitting directly in a split tree instead of in a video folder."""
    from magicpose.data.tiktok import is_hidden

    if folder is None or not folder.is_dir():
        return []
    with os.scandir(folder) as entries:
        return sorted(Path(e.path) for e in entries if not is_hidden(e.name) and not e.is_dir())


# ----------------------------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------------------------


def probe_image(path: Path) -> tuple[tuple[int, int] | None, str | None]:
    """((width, height) as displayed, None), or (None, reason) when the file does not fully decode."""
    from PIL import Image

    from magicpose.media import _short_reason

    try:
        with Image.open(path) as image:
            image.load()  # Pillow decodes lazily: truncated data only fails here
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return None, f"cannot decode ({_short_reason(exc)})"
    # EXIF orientations 5-8 rotate by 90 degrees: load_image would swap the sides.
    return ((height, width) if orientation in (5, 6, 7, 8) else (width, height)), None


def _keypoints_error(path: Path, frame_size: tuple[int, int] | None) -> str | None:
    """None when `path` reads as an OpenPose keypoints file, else why not.

    Raw OpenPose files have no canvas size; the loader then uses the frame's, and so does this check.
    """
    from magicpose.pose.openpose import read_keypoints_json

    width, height = frame_size or (None, None)
    try:
        read_keypoints_json(path, width=width, height=height)
    except UserError as exc:
        return str(exc).removeprefix(f"{path}: ")
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        # json.JSONDecodeError is a ValueError; the others are structure errors in valid JSON.
        return f"cannot parse ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    return None


# ----------------------------------------------------------------------------------------------------------
# Checking
# ----------------------------------------------------------------------------------------------------------


class _Checker:
    """Walks one dataset; collects problems and the frame groups that quarantine would move."""

    def __init__(self, root: Path, min_frames: int, workers: int, verbose: bool) -> None:
        self.root, self.min_frames, self.workers, self.verbose = root, min_frames, workers, verbose
        self.problems: list[Problem] = []
        self.counts: Counter[str] = Counter()
        self.to_move: dict[Path, None] = {}  # ordered set

    def add(self, kind: str, path: Path, detail: str, move: Iterable[Path] = ()) -> None:
        self.problems.append(Problem(kind, path, detail, KINDS[kind][0]))
        self.to_move.update(dict.fromkeys(move))

    def check_split(self, split: str) -> None:
        from magicpose.data.tiktok import (
            NO_VIDEO_FOLDERS,
            list_video_dirs,
            no_videos_reason,
            split_dirs,
            split_problem,
        )
        from magicpose.media import IMAGE_EXTENSIONS

        problem = split_problem(self.root, split)
        if problem is not None:
            self.add("missing_folder", *problem)
            return
        dirs = split_dirs(self.root, split)
        trees = (dirs.frames, dirs.poses, dirs.keypoints, dirs.masks)
        for stray in (p for tree in trees for p in _top_level_strays(tree)):
            self.add("stray_file", stray, "file outside any video folder", move=[stray])
        names = sorted(set(list_video_dirs(dirs.frames)) | set(list_video_dirs(dirs.poses)))
        if not names:
            self.add("no_videos", dirs.frames, NO_VIDEO_FOLDERS)
            return
        videos = [self._list_video(dirs, name, IMAGE_EXTENSIONS) for name in names]
        images = [path for video in videos for path in video.images()]
        if self.verbose:  # decoding a full TikTok split takes minutes: say what is going on
            print(f"{split}: decoding {len(images)} images of {len(videos)} videos ...", file=sys.stderr)
        decoded = self._decode(images)
        usable = [self._check_video(video, decoded) for video in videos]
        if not any(count >= self.min_frames for count in usable):
            self.add("no_videos", dirs.frames, no_videos_reason(self.min_frames))

    def _list_video(self, dirs: SplitDirs, name: str, image_exts: Iterable[str]) -> _Video:
        video = _Video(
            name,
            _list_folder(dirs.frames / name, image_exts),
            _list_folder(dirs.poses / name, image_exts),
            _list_folder(dirs.keypoints / name if dirs.keypoints else None, ("json",)),
            _list_folder(dirs.masks / name if dirs.masks else None, image_exts),
        )
        self.counts["videos"] += video.frames.exists
        self.counts["frames"] += sum(map(len, video.frames.by_stem.values()))
        self.counts["pose_maps"] += sum(map(len, video.poses.by_stem.values()))
        self.counts["keypoints"] += sum(map(len, video.keypoints.by_stem.values()))
        return video

    def _decode(self, paths: list[Path]) -> dict[Path, tuple[tuple[int, int] | None, str | None]]:
        """Decode every image; threads, because Pillow releases the GIL while decoding."""
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return dict(zip(paths, pool.map(probe_image, paths)))

    def _check_video(self, video: _Video, decoded: dict) -> int:
        """Add the video's problems; return how many frames the loader can use."""
        for folder in (video.frames, video.poses, video.keypoints, video.masks):
            for stray in folder.strays:
                expected = "a keypoints JSON" if folder is video.keypoints else "an image"
                self.add("stray_file", stray, f"not {expected}", move=[stray] if stray.is_file() else [])
        for folder in (video.frames, video.poses):
            if folder.exists and not folder.by_stem:
                self.add("empty_video", folder.path, "no image files")
        duplicates = self._duplicates(video)
        bad = duplicates | self._unreadable(video, decoded) | self._keypoints(video, decoded)
        frames, poses = video.frames.unique, video.poses.unique
        # A duplicated stem is reported once, as such, not also as a missing or orphan pose map.
        for stem in sorted(frames.keys() - poses.keys() - duplicates):
            bad.add(stem)
            self.add("missing_pose_map", frames[stem], f"no pose map {video.poses.path / stem}.*",
                     move=video.group(stem))
        for stem in sorted(poses.keys() - frames.keys() - duplicates):
            bad.add(stem)
            self.add("orphan_pose_map", poses[stem], f"no frame {video.frames.path / stem}.*",
                     move=video.group(stem))
        bad |= self._size_mismatches(video, decoded, bad)
        usable = len(frames.keys() & poses.keys() - bad)
        if video.frames.by_stem and usable < self.min_frames:
            self.add("too_few_frames", video.frames.path,
                     f"{usable} usable frame(s), fewer than {self.min_frames}")
        return usable

    def _duplicates(self, video: _Video) -> set[str]:
        stems = set()
        for folder in (video.frames, video.poses):
            for stem, paths in folder.by_stem.items():
                if len(paths) > 1:
                    stems.add(stem)
                    others = ", ".join(p.name for p in paths[1:])
                    self.add("duplicate_stem", paths[0], f"same stem as {others}", move=video.group(stem))
        return stems

    def _unreadable(self, video: _Video, decoded: dict) -> set[str]:
        stems = set()
        for path in video.images():
            error = decoded[path][1]
            if error is not None:
                stems.add(path.stem)
                self.add("unreadable_image", path, error, move=video.group(path.stem))
        return stems

    def _keypoints(self, video: _Video, decoded: dict) -> set[str]:
        stems, frames = set(), video.frames.unique
        for stem, paths in video.keypoints.by_stem.items():
            frame = frames.get(stem)
            for path in paths:
                error = _keypoints_error(path, decoded[frame][0] if frame else None)
                if error is not None:
                    stems.add(stem)
                    self.add("bad_keypoints", path, error, move=video.group(stem))
        return stems

    def _size_mismatches(self, video: _Video, decoded: dict, skip: set[str]) -> set[str]:
        stems = set()
        frames, poses = video.frames.unique, video.poses.unique
        for stem in sorted(frames.keys() & poses.keys() - skip):
            frame_size, pose_size = decoded[frames[stem]][0], decoded[poses[stem]][0]
            if frame_size != pose_size:
                stems.add(stem)
                detail = f"pose map is {_wxh(pose_size)}, frame {frames[stem].name} is {_wxh(frame_size)}"
                self.add("size_mismatch", poses[stem], detail, move=video.group(stem))
        return stems


def _wxh(size: tuple[int, int] | None) -> str:
    return "?" if size is None else f"{size[0]}x{size[1]}"


def discover_splits(root: Path) -> list[str]:
    """Splits of `root`: folders X with a `pose_map_X` beside them (or vice versa), and the usual names."""
    from magicpose.data.tiktok import KEYPOINTS_PREFIX, MASK_PREFIX, POSE_PREFIX, list_video_dirs

    folders = set(list_video_dirs(root))
    found = {name.removeprefix(POSE_PREFIX) for name in folders if name.startswith(POSE_PREFIX)}
    found |= {name for name in folders if f"{POSE_PREFIX}{name}" in folders}
    found |= {name for name in _DEFAULT_SPLITS if name in folders}
    found -= {name for name in found if name.startswith((KEYPOINTS_PREFIX, MASK_PREFIX))}
    return sorted(found)


# ----------------------------------------------------------------------------------------------------------
# Quarantine
# ----------------------------------------------------------------------------------------------------------


def _split_trees(root: Path, split: str) -> list[Path]:
    from magicpose.data.tiktok import KEYPOINTS_PREFIX, MASK_PREFIX, POSE_PREFIX

    return [root / f"{prefix}{split}" for prefix in ("", POSE_PREFIX, KEYPOINTS_PREFIX, MASK_PREFIX)]


def _check_quarantine_target(root: Path, splits: list[str], quarantine: Path) -> None:
    """Refuse a quarantine folder that is the root or inside a split tree: files would be found again."""
    target = quarantine.resolve()
    if target == root.resolve():
        raise UserError(f"{quarantine}: the quarantine folder must not be the dataset root")
    for tree in (t.resolve() for split in splits for t in _split_trees(root, split)):
        if target == tree or target.is_relative_to(tree):
            raise UserError(f"{quarantine}: the quarantine folder must not be inside {tree}")


def _move_all(root: Path, paths: Iterable[Path], quarantine: Path) -> list[tuple[Path, Path]]:
    """Move `paths` to `quarantine` under their path relative to `root`; refuse to overwrite anything."""
    moves = [(path, quarantine / path.relative_to(root)) for path in paths]
    clash = next((dest for _, dest in moves if dest.exists() or dest.is_symlink()), None)
    if clash is not None:
        # Checked before moving anything, so a refused quarantine leaves the dataset untouched.
        raise UserError(f"{clash}: already exists in the quarantine folder; nothing was moved")
    for source, dest in moves:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, dest)
    return moves


def check_dataset(
    root: str | Path,
    splits: list[str] | None = None,
    quarantine: Path | None = None,
    min_frames: int = 2,
    workers: int | None = None,
    verbose: bool = False,
) -> Report:
    """Walk `root` (all splits, or `splits`), decode every image, and list every problem with its path.

    With `quarantine`, offending frames (with their pose maps, keypoints and masks) and stray files
    are moved there; their problems are marked `quarantined` and no longer block training.
    `workers` decoding threads (default min(8, CPUs)); `verbose` prints progress to stderr.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such dataset folder")
    if min_frames < 1:
        raise UserError(f"--min-frames must be at least 1, got {min_frames}")
    splits = list(splits) if splits else discover_splits(root)
    if quarantine is not None:
        _check_quarantine_target(root, splits, Path(quarantine))
    checker = _Checker(root, min_frames, workers or min(8, os.cpu_count() or 1), verbose)
    for split in splits:
        checker.check_split(split)
    if not splits:
        checker.add("no_videos", root, "no split folders (expected ROOT/<split> and ROOT/pose_map_<split>)")
    report = Report(root, splits, checker.problems, checker.counts)
    if quarantine is not None:
        report.quarantine = Path(quarantine)
        report.moved = _move_all(root, checker.to_move, Path(quarantine))
        moved = {source for source, _ in report.moved}
        report.problems = [replace(p, quarantined=p.path in moved) for p in report.problems]
    return report
