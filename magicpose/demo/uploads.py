"""What a person uploads to the web demo, checked before any model runs (no gradio here: tests call it directly).

Every problem is a one-line `UserError` that starts with the field ("Reference image: ...", "Poses: ...") and names
the uploaded file by its own name, never by the server's temporary path: an empty file, a file that is not an image
or video, a video without frames, a zip without pose maps, more frames than the demo takes. Gradio keeps an upload's
original name as the last part of its temporary path, so `upload_name` is that name.

Poses come as a video of pose maps, a zip of pose-map images, or the images themselves (all files of a folder);
`pose_source` turns any of these into what the command-line tools read: a video file or a folder of images.
A raw video of a person is turned into pose maps by `magicpose extract-pose` in the pose environment (`.venv-pose`,
mediapipe), through `magicpose.commands.pose_env`, as `fyp-sample --video` does.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from magicpose.errors import UserError
from magicpose.media import (
    IMAGE_EXTENSIONS,
    SIDECAR_EXTENSIONS,
    VIDEO_EXTENSIONS,
    list_images,
    load_image,
    natural_sort_key,
)

ZIP_EXTENSIONS = frozenset({"zip"})
# a zip's pose maps may unpack to at most this much (a zip bomb is refused before anything is written)
MAX_UNZIPPED_BYTES = 2 * 1024**3
POSE_ENV_HINT = ("run `bash scripts/setup_pose.sh` to create it and restart the demo, or upload pose maps instead "
                 "(a video, a zip or the images)")


def upload_name(path: str | Path) -> str:
    """The name the person's file had (Gradio keeps it as the last part of the temporary path)."""
    return Path(path).name


def _ext(path: Path) -> str:
    return path.suffix.lower().lstrip(".")


def _named(err: UserError, path: Path, field: str) -> UserError:
    """`err` with the temporary path replaced by the upload's name and the field in front: one line."""
    text = str(err).replace(str(path.resolve()), path.name).replace(str(path), path.name)
    return UserError(f"{field}: {text.splitlines()[0] if text else 'unreadable'}")


def check_upload(path: str | Path | None, field: str) -> Path:
    """An uploaded file that exists and is not empty."""
    if path is None or str(path) == "":
        raise UserError(f"{field}: nothing uploaded")
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{field}: {path.name}: the upload is missing on the server; upload it again")
    if path.stat().st_size == 0:
        raise UserError(f"{field}: {path.name} is empty (0 bytes)")
    return path


def load_reference(path: str | Path | None, field: str = "Reference image") -> Image.Image:
    """The reference image of an upload, as 8-bit RGB (any mode, EXIF-rotated; see `magicpose.media.load_image`)."""
    path = check_upload(path, field)
    try:
        return load_image(path)
    except UserError as err:
        raise _named(err, path, field) from None


def count_video_frames(path: Path, limit: int, field: str) -> int:
    """The frames of a video, decoding at most `limit + 1` of them: more than `limit` is an error, so is none.

    PyAV directly (imageio's reader runs a full garbage collection on closing, 0.2 s in a process holding torch)."""
    import av

    count = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UserError(f"{field}: {path.name}: no video stream")
            for _ in container.decode(video=0):
                count += 1
                if count > limit:
                    raise UserError(f"{field}: {path.name} has more than {limit} frames; the demo takes at most "
                                    f"{limit} (--max-frames): cut the video shorter")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{field}: {path.name}: cannot open as a video ({reason})") from None
    if count == 0:
        raise UserError(f"{field}: {path.name}: video has no frames")
    return count


def _check_count(count: int, limit: int, what: str, field: str) -> None:
    if count > limit:
        raise UserError(f"{field}: {what} has {count} frames; the demo takes at most {limit} (--max-frames)")


def _unzip_pose_maps(archive: Path, folder: Path, limit: int, field: str) -> Path:
    """The images of a zip (any folder inside it; hidden files, macOS metadata and sidecars skipped), in natural
    order of their paths, as `folder/000000.png`, ... (names that keep that order)."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            entries = [info for info in zipped.infolist() if not info.is_dir()]
            images, others = [], []
            for info in entries:
                parts = Path(info.filename).parts
                if any(part.startswith(".") or part == "__MACOSX" for part in parts):
                    continue
                extension = _ext(Path(info.filename))
                if extension in IMAGE_EXTENSIONS:
                    images.append(info)
                elif extension not in SIDECAR_EXTENSIONS:
                    others.append(Path(info.filename).name)
            if others:
                raise UserError(f"{field}: {archive.name} holds files that are not pose-map images ({others[0]}"
                                f"{f' and {len(others) - 1} more' if len(others) > 1 else ''})")
            if not images:
                raise UserError(f"{field}: {archive.name} holds no images "
                                f"(supported: {', '.join(sorted(IMAGE_EXTENSIONS))})")
            _check_count(len(images), limit, archive.name, field)
            if sum(info.file_size for info in images) > MAX_UNZIPPED_BYTES:
                raise UserError(f"{field}: {archive.name} unpacks to more than {MAX_UNZIPPED_BYTES >> 30} GiB")
            images.sort(key=lambda info: natural_sort_key(info.filename))
            folder.mkdir(parents=True, exist_ok=True)
            for index, info in enumerate(images):
                target = folder / f"{index:06d}.{_ext(Path(info.filename))}"
                with zipped.open(info) as source, target.open("wb") as sink:  # never its own path: no zip-slip
                    shutil.copyfileobj(source, sink)
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
        raise UserError(f"{field}: {archive.name}: cannot read as a zip ({str(exc).splitlines()[0]})") from None
    return folder


def pose_source(paths: str | Path | Sequence[str | Path] | None, workdir: Path, limit: int,
                field: str = "Poses") -> tuple[Path, int, str]:
    """An upload of pose maps as a video file or an image folder, its frame count and a description for the run
    record. `paths`: one video, one zip, or one or more images (copied into `workdir/poses/`); or a folder of
    pose maps on the server."""
    if paths is None or isinstance(paths, (str, Path)):
        paths = [] if paths in (None, "") else [paths]
    if len(paths) == 1 and Path(paths[0]).is_dir():  # a folder on the server (the Python API, not the page)
        folder = Path(paths[0])
        count = len(list_images(folder))
        _check_count(count, limit, folder.name, field)
        return folder, count, str(folder)
    files = [check_upload(p, field) for p in paths]
    if not files:
        raise UserError(f"{field}: nothing uploaded (a video of pose maps, a zip of them, or the images)")
    kinds = {_kind(path) for path in files}
    if len(files) == 1 and kinds == {"video"}:
        return files[0], count_video_frames(files[0], limit, field), files[0].name
    if len(files) == 1 and kinds == {"zip"}:
        folder = _unzip_pose_maps(files[0], workdir / "poses", limit, field)
        count = len(list_images(folder))
        return folder, count, f"{files[0].name} ({count} pose maps)"
    if kinds == {"image"}:
        _check_count(len(files), limit, f"the upload of {len(files)} images", field)
        folder = workdir / "poses"
        folder.mkdir(parents=True, exist_ok=True)
        for path in files:
            target = folder / path.name
            if target.exists():
                raise UserError(f"{field}: two uploaded images are both named {path.name}")
            shutil.copyfile(path, target)
        for image in list_images(folder):  # each must read as an image: a clear error now, not mid-generation
            try:
                load_image(image)
            except UserError as err:
                raise _named(err, image, field) from None
        names = sorted((p.name for p in files), key=natural_sort_key)
        return folder, len(files), f"{len(files)} pose maps ({names[0]} ... {names[-1]})"
    wrong = next((p for p in files if _kind(p) not in ("video", "zip", "image")), None)
    if wrong is not None:
        raise UserError(f"{field}: {wrong.name} is not a video, a zip or an image "
                        f"(videos: {', '.join(sorted(VIDEO_EXTENSIONS))}; "
                        f"images: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    raise UserError(f"{field}: upload one video, one zip, or pose-map images, not a mix of {len(files)} files")


def _kind(path: Path) -> str:
    extension = _ext(path)
    if extension in VIDEO_EXTENSIONS:
        return "video"
    if extension in ZIP_EXTENSIONS:
        return "zip"
    if extension in IMAGE_EXTENSIONS:
        return "image"
    return "other"


def raw_video(paths: str | Path | Sequence[str | Path] | None, limit: int, field: str = "Raw video") -> Path:
    """A raw video of a person (one file, a video, at most `limit` frames), for pose extraction."""
    if paths is None or isinstance(paths, (str, Path)):
        paths = [] if paths in (None, "") else [paths]
    files = [check_upload(p, field) for p in paths]
    if len(files) != 1:
        not_this = f", not {len(files)} files" if files else ""
        raise UserError(f"{field}: upload exactly one video of a person{not_this}")
    if _kind(files[0]) != "video":
        raise UserError(f"{field}: {files[0].name} is not a video (supported: {', '.join(sorted(VIDEO_EXTENSIONS))})")
    count_video_frames(files[0], limit, field)
    return files[0]


def extract_poses(video: Path, workdir: Path, style: str, field: str = "Raw video") -> Path:
    """Pose maps of a raw video in `style` (`openpose` for MagicPose, `mmpose` for Follow-Your-Pose), extracted in
    the pose environment into `workdir/skeleton/pose_maps`; without that environment, a message that says how to
    get it."""
    from magicpose.commands.pose_env import extract_skeleton

    try:
        return extract_skeleton(video, workdir, style=style, hint=POSE_ENV_HINT, source="pose extraction")
    except UserError as err:
        raise _named(err, video, field) from None
