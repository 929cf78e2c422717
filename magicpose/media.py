"""Image and video IO shared by the CLI and the datasets.

Everything a user hands us (reference images, pose folders, driving videos) goes through here, so every
problem with those files becomes a one-line `UserError` naming the file. Programming mistakes (an empty
frame list, frames of different sizes) stay `ValueError`.

Images come back as 8-bit RGB `PIL.Image.Image`s; videos are decoded with imageio v3 (PyAV plugin) and
written as H.264 / yuv420p mp4 so that browsers and phones play them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeAlias

import av
import imageio.v3 as iio
import numpy as np
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from magicpose.errors import UserError

IMAGE_EXTENSIONS: frozenset[str] = frozenset({"png", "jpg", "jpeg", "bmp", "webp", "tif", "tiff"})
VIDEO_EXTENSIONS: frozenset[str] = frozenset({"mp4", "mov", "avi", "mkv", "webm", "gif"})

# Files that may sit beside pose maps (OpenPose keypoints, captions) and are not frames.
SIDECAR_EXTENSIONS: frozenset[str] = frozenset({"json", "txt"})
# OS clutter that is hidden on its own OS but does not start with a dot.
_OS_JUNK: frozenset[str] = frozenset({"thumbs.db", "desktop.ini"})

# Containers that hold H.264; anything else would silently get a different codec or fail inside ffmpeg.
_H264_CONTAINERS: frozenset[str] = frozenset({"mp4", "mov", "mkv"})

RGB: TypeAlias = tuple[int, int, int]
Frame: TypeAlias = "np.ndarray | Image.Image"


def _ext(path: Path) -> str:
    """Lower-case extension without the dot ('' when there is none)."""
    return path.suffix.lower().lstrip(".")


def _supported(extensions: frozenset[str]) -> str:
    return ", ".join(sorted(extensions))


def natural_sort_key(name: str) -> tuple[list[int | str], str]:
    """Sort key that orders digit runs by value: `2.png` < `10.png`, `frame_2` < `frame_10`.

    The split always alternates text, number, text, ... so ints are only ever compared with ints.
    The raw name breaks ties (`01.png` vs `1.png`) so the order is total and deterministic.
    """
    parts = re.split(r"(\d+)", name, flags=re.ASCII)
    return [int(p) if p.isdigit() else p.lower() for p in parts], name


# ----------------------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------------------


def _short_reason(exc: BaseException) -> str:
    """One-line reason for a failed image read, without repeating the (possibly long) path."""
    if isinstance(exc, UnidentifiedImageError):
        return "unrecognised format or corrupt data"
    # OSError and PyAV's FFmpegError both carry a path-free strerror ("Invalid data found ...").
    strerror = getattr(exc, "strerror", None)
    if isinstance(strerror, str) and strerror:
        return strerror
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text


def _high_bit_depth_to_rgb(image: Image.Image) -> Image.Image:
    """Map 16/32-bit integer and float grayscale to 8-bit RGB by scaling, not clipping.

    Pillow's own `convert("L")` clips I;16 values at 255, which turns any 16-bit photo white.
    Integer data is taken as 16-bit (0-65535, what PNG/TIFF store); float data as 0-1 when it fits.
    """
    values = np.asarray(image).astype(np.float64)
    if image.mode != "F":
        scale = 255.0 / 65535.0
    elif values.size and values.max() <= 1.0:
        scale = 255.0
    else:
        scale = 1.0
    gray = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in {"RGBA", "LA", "PA", "RGBa", "La"} or "transparency" in image.info


def _to_rgb(image: Image.Image, background: RGB) -> Image.Image:
    """Convert any Pillow mode to RGB; transparent pixels show `background` instead of garbage."""
    if image.mode.startswith("I") or image.mode == "F":
        return _high_bit_depth_to_rgb(image)
    if _has_alpha(image):
        # convert("RGBA") also resolves palette / colour-key transparency into a real alpha channel.
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(path: str | Path, background: RGB = (0, 0, 0)) -> Image.Image:
    """Load an image as 8-bit RGB, upright (EXIF orientation applied), transparency over `background`."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not an image file")
    try:
        with Image.open(path) as image:
            # load() inside the try: Pillow decodes lazily, so truncated data only fails here.
            image.load()
            upright = ImageOps.exif_transpose(image)
            return _to_rgb(upright, background)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        # SyntaxError is what some Pillow decoders (e.g. broken EXIF/TIFF headers) raise.
        raise UserError(f"{path}: cannot read as an image ({_short_reason(exc)})") from exc


def to_square(image: Image.Image, size: int, mode: str = "crop", fill: RGB = (0, 0, 0)) -> Image.Image:
    """Make `image` a `size`x`size` RGB square.

    `crop`: centre square of side min(w, h), then bilinear resize (MagicDance's centre crop + resize).
    `pad`: centre the whole image on a `fill` square of side max(w, h), then bilinear resize.
    """
    if mode not in ("crop", "pad"):
        raise ValueError(f"to_square: unknown mode {mode!r} (use 'crop' or 'pad')")
    if size < 1:
        raise ValueError(f"to_square: size must be positive, got {size}")
    # Callers pass load_image output; converting keeps the output mode predictable for `fill`.
    image = image if image.mode == "RGB" else image.convert("RGB")
    return square_region(image, mode, fill).resize((size, size), Image.Resampling.BILINEAR)


def square_region(image: Image.Image, mode: str = "crop", fill: RGB = (0, 0, 0)) -> Image.Image:
    """The centre square of side min(w, h) (`crop`), or the image centred on a `fill` square of side max(w, h)
    (`pad`), at the image's own resolution."""
    width, height = image.size
    if mode == "crop":
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        return image.crop((left, top, left + side, top + side))
    side = max(width, height)
    square = Image.new("RGB", (side, side), fill)
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


def hstack(images: Sequence[Image.Image]) -> Image.Image:
    """Concatenate equal-height images left to right (reference | pose | result grids)."""
    if not images:
        raise ValueError("hstack: no images given")
    height = images[0].height
    if any(image.height != height for image in images):
        raise ValueError(f"hstack: heights differ: {[image.height for image in images]}")
    canvas = Image.new("RGB", (sum(image.width for image in images), height))
    x = 0
    for image in images:
        canvas.paste(image.convert("RGB"), (x, 0))
        x += image.width
    return canvas


def list_images(folder: str | Path) -> list[Path]:
    """Image files in `folder`, naturally sorted; hidden files, sidecars and subfolders are skipped.

    Any other file is an error rather than silently skipped: a stray file in a frame folder usually
    means the user pointed at the wrong folder.
    """
    folder = Path(folder)
    if not folder.exists():
        raise UserError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder")
    images, others = [], []
    for entry in folder.iterdir():
        name = entry.name
        if name.startswith(".") or name.lower() in _OS_JUNK or entry.is_dir():
            continue
        extension = _ext(entry)
        if extension in IMAGE_EXTENSIONS:
            images.append(entry)
        elif extension not in SIDECAR_EXTENSIONS:
            others.append(name)
    if others:
        others.sort(key=natural_sort_key)
        more = f" and {len(others) - 1} more" if len(others) > 1 else ""
        raise UserError(
            f"{folder}: not an image file: {others[0]}{more} (supported: {_supported(IMAGE_EXTENSIONS)})"
        )
    if not images:
        raise UserError(f"{folder}: no image files found")
    return sorted(images, key=lambda p: natural_sort_key(p.name))


# ----------------------------------------------------------------------------------------------------------
# Videos: reading
# ----------------------------------------------------------------------------------------------------------


def _check_video_path(path: Path) -> None:
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if _ext(path) not in VIDEO_EXTENSIONS:
        raise UserError(f"{path}: not a video file (supported: {_supported(VIDEO_EXTENSIONS)})")


def _probe_rotation(path: Path) -> int:
    """Display rotation (degrees counter-clockwise, 0/90/180/270) of the first frame.

    Phone videos store portrait footage as landscape frames plus a display matrix. The ffmpeg CLI
    applies it, but PyAV (and so imageio's pyav plugin) returns the raw frames, which would make
    every portrait dance video sideways. Opening the container here also turns PyAV's errors into
    clear messages before imageio wraps them in vague ones ("pyav can not handle the given uri").
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UserError(f"{path}: no video stream")
            first = next(container.decode(video=0), None)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot open as a video ({_short_reason(exc)})") from exc
    if first is None:
        raise UserError(f"{path}: video has no frames")
    return int(round(first.rotation / 90.0)) % 4 * 90


def _iter_video(path: Path) -> Iterator[np.ndarray]:
    """Yield upright RGB uint8 frames of a video file (GIFs via Pillow, which handles frame disposal)."""
    if _ext(path) == "gif":
        # Pillow directly rather than imageio's pillow plugin, which replaces Pillow's error with
        # "`pillow` can not handle the given uri".
        with Image.open(path) as gif:
            for frame in ImageSequence.Iterator(gif):
                yield np.asarray(frame.convert("RGB"))
        return
    quarter_turns = _probe_rotation(path) // 90
    for frame in iio.imiter(path, plugin="pyav", format="rgb24"):
        # np.rot90 turns counter-clockwise, the same sense as PyAV's frame.rotation.
        yield np.ascontiguousarray(np.rot90(frame, quarter_turns)) if quarter_turns else frame


def _decode_error(path: Path, exc: BaseException) -> UserError:
    return UserError(f"{path}: cannot decode video ({_short_reason(exc)})")


def read_frames(path: str | Path) -> list[Image.Image]:
    """All frames of a folder of images, a video file, or a single image (one frame), as RGB images.

    Everything is held in memory: fine for the clip lengths MagicPose animates.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    if path.is_dir():
        return [load_image(p) for p in list_images(path)]
    if _ext(path) in IMAGE_EXTENSIONS:
        return [load_image(path)]
    frames = [Image.fromarray(frame) for frame in iter_video_frames(path)]
    if not frames:
        raise UserError(f"{path}: video has no frames")
    return frames


def iter_video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Stream the upright RGB uint8 frames of a video file, one at a time (long videos, bounded memory)."""
    path = Path(path)
    _check_video_path(path)
    try:
        yield from _iter_video(path)
    except UserError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise _decode_error(path, exc) from exc


def count_frames(path: str | Path) -> int:
    """Number of decodable frames in a video file (or images in a folder).

    Decodes instead of trusting container metadata: `stream.frames` is 0 for mkv/webm and can be
    wrong after a bad cut.
    """
    path = Path(path)
    if path.is_dir():
        return len(list_images(path))
    _check_video_path(path)
    try:
        if _ext(path) == "gif":
            with Image.open(path) as gif:
                return int(getattr(gif, "n_frames", 1))
        _probe_rotation(path)  # clear errors for missing stream / unreadable container
        with av.open(str(path)) as container:
            return sum(1 for _ in container.decode(video=0))
    except UserError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise _decode_error(path, exc) from exc


# ----------------------------------------------------------------------------------------------------------
# Videos: writing
# ----------------------------------------------------------------------------------------------------------


def _as_uint8_frames(frames: Sequence[Frame]) -> list[np.ndarray]:
    """Frames as HxWx3 uint8 arrays of one size; ValueError for anything else (a caller bug)."""
    if len(frames) == 0:
        raise ValueError("no frames to write")
    arrays = [np.asarray(f.convert("RGB")) if isinstance(f, Image.Image) else np.asarray(f) for f in frames]
    first = arrays[0]
    if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
        raise ValueError(f"frames must be HxWx3 uint8, got shape {first.shape} dtype {first.dtype}")
    for index, array in enumerate(arrays):
        if array.shape != first.shape or array.dtype != np.uint8:
            raise ValueError(f"frame {index} is {array.shape} {array.dtype}, frame 0 is {first.shape} uint8")
    return arrays


def _pad_to_even(frame: np.ndarray) -> np.ndarray:
    """Pad bottom/right with one black row/column where odd: yuv420p needs even sides, and padding
    keeps every pixel where it was (a resize would blur pose maps and shift keypoints)."""
    height, width = frame.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return frame
    return np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)))


def _check_fps(fps: float) -> None:
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")


def write_video(path: str | Path, frames: Sequence[Frame], fps: float) -> None:
    """Write frames (HxWx3 uint8 arrays or PIL images, one size) as H.264 yuv420p video.

    Uses imageio's pyav plugin (libx264 is bundled in the PyAV wheel) rather than the imageio-ffmpeg
    subprocess, which resizes to multiples of 16 and warns about macro_block_size.
    """
    path = Path(path)
    if _ext(path) not in _H264_CONTAINERS:
        raise UserError(f"{path}: cannot write H.264 video to this extension (use .mp4, .mov or .mkv)")
    _check_fps(fps)
    arrays = [_pad_to_even(a) for a in _as_uint8_frames(frames)]
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, arrays, plugin="pyav", codec="libx264", fps=float(fps), out_pixel_format="yuv420p")


def write_gif(path: str | Path, frames: Sequence[Frame], fps: float) -> None:
    """Write a looping GIF with 1000/fps ms per frame.

    GIF stores delays in 1/100 s and browsers slow delays under 20 ms to 100 ms, so keep fps <= 50.
    Pillow merges identical consecutive frames into one longer frame (timing is kept, count is not).
    """
    path = Path(path)
    _check_fps(fps)
    images = [Image.fromarray(a) for a in _as_uint8_frames(frames)]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(
        path, format="GIF", save_all=True, append_images=images[1:], duration=round(1000.0 / fps), loop=0
    )
