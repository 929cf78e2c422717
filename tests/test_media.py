"""Tests for magicpose.media: every input image/video is built in code under tmp_path."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from magicpose.errors import UserError
from magicpose.media import (
    count_frames,
    hstack,
    list_images,
    load_image,
    natural_sort_key,
    read_frames,
    to_square,
    write_gif,
    write_video,
)


def _frames(count: int, height: int, width: int) -> list[np.ndarray]:
    """Distinct solid-ish frames (distinct so GIF writing does not merge them)."""
    rng = np.random.default_rng(0)
    frames = []
    for i in range(count):
        frame = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        frame[: height // 2] = (i * 40) % 256
        frames.append(frame)
    return frames


def _pixel(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    value = image.getpixel(xy)
    assert isinstance(value, tuple)
    return value


def _close(actual: tuple[int, ...], expected: tuple[int, ...], tol: int = 12) -> bool:
    return all(abs(a - e) <= tol for a, e in zip(actual, expected))


# --- natural sort ------------------------------------------------------------------------------------------


def test_natural_sort_orders_numbers_by_value():
    names = ["10.png", "2.png", "1.png", "frame_10.png", "frame_2.png", "Frame_3.png"]
    assert sorted(names, key=natural_sort_key) == [
        "1.png",
        "2.png",
        "10.png",
        "frame_2.png",
        "Frame_3.png",
        "frame_10.png",
    ]


def test_natural_sort_is_total_for_zero_padding():
    assert sorted(["1.png", "01.png"], key=natural_sort_key) == ["01.png", "1.png"]


# --- load_image --------------------------------------------------------------------------------------------


def test_exif_rotated_jpeg_comes_back_upright(tmp_path: Path):
    # 40x20 stored: red left half, blue right half. Orientation 6 = display rotated 90 deg clockwise,
    # so upright it is 20x40 with red on top.
    array = np.zeros((20, 40, 3), np.uint8)
    array[:, :20] = (255, 0, 0)
    array[:, 20:] = (0, 0, 255)
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=95)

    loaded = load_image(path)
    assert loaded.mode == "RGB"
    assert loaded.size == (20, 40)
    assert _close(_pixel(loaded, (10, 5)), (255, 0, 0), tol=40)
    assert _close(_pixel(loaded, (10, 35)), (0, 0, 255), tol=40)


@pytest.mark.parametrize("background", [(0, 0, 0), (255, 255, 255)])
def test_rgba_composited_over_background(tmp_path: Path, background):
    array = np.zeros((8, 8, 4), np.uint8)
    array[:, :4] = (255, 0, 0, 255)  # opaque red left half, transparent right half
    path = tmp_path / "rgba.png"
    Image.fromarray(array).save(path)

    loaded = load_image(path, background=background)
    assert loaded.mode == "RGB"
    assert _pixel(loaded, (1, 1)) == (255, 0, 0)
    assert _pixel(loaded, (6, 6)) == background


def test_half_transparent_la_blends(tmp_path: Path):
    path = tmp_path / "la.png"
    Image.new("LA", (4, 4), (200, 128)).save(path)
    value = _pixel(load_image(path, background=(0, 0, 0)), (0, 0))
    assert _close(value, (100, 100, 100), tol=2)


def test_palette_png_with_transparency(tmp_path: Path):
    image = Image.new("P", (6, 6), 0)
    image.putpalette([0, 255, 0] + [255, 0, 255] * 255)  # index 0 green, the rest magenta
    image.paste(1, (3, 0, 6, 6))
    path = tmp_path / "palette.png"
    image.save(path, transparency=1)  # magenta half is transparent

    loaded = load_image(path, background=(255, 255, 255))
    assert _pixel(loaded, (0, 0)) == (0, 255, 0)
    assert _pixel(loaded, (5, 5)) == (255, 255, 255)


def test_16bit_gray_png_scales_instead_of_clipping(tmp_path: Path):
    array = np.full((4, 4), 32896, np.uint16)  # 128 * 257: mid gray in 16 bits
    array[0, 0] = 65535
    path = tmp_path / "gray16.png"
    Image.fromarray(array).save(path)
    with Image.open(path) as stored:
        assert stored.mode.startswith("I")  # really 16-bit on disk, not already reduced to L

    loaded = load_image(path)
    assert _pixel(loaded, (2, 2)) == (128, 128, 128)
    assert _pixel(loaded, (0, 0)) == (255, 255, 255)


def test_grayscale_and_cmyk_become_rgb(tmp_path: Path):
    Image.new("L", (3, 3), 77).save(tmp_path / "gray.png")
    Image.new("CMYK", (3, 3), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)
    assert _pixel(load_image(tmp_path / "gray.png"), (1, 1)) == (77, 77, 77)
    assert _close(_pixel(load_image(tmp_path / "cmyk.jpg"), (1, 1)), (255, 0, 0), tol=20)


def test_load_image_errors_name_the_file(tmp_path: Path):
    missing = tmp_path / "missing.png"
    with pytest.raises(UserError, match=r"missing\.png: no such file"):
        load_image(missing)

    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"this is not a png")
    with pytest.raises(UserError, match=r"corrupt\.png: cannot read as an image \(.+\)") as info:
        load_image(corrupt)
    assert "\n" not in str(info.value)


def test_truncated_image_is_user_error(tmp_path: Path):
    path = tmp_path / "truncated.png"
    Image.fromarray(_frames(1, 64, 64)[0]).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(UserError, match=r"truncated\.png: cannot read as an image"):
        load_image(path)


# --- to_square / hstack ------------------------------------------------------------------------------------


def test_to_square_crop_takes_the_centre():
    array = np.zeros((10, 30, 3), np.uint8)
    array[:, 10:20] = (255, 0, 0)  # only the centre third is red
    result = to_square(Image.fromarray(array), 16, mode="crop")
    assert result.size == (16, 16)
    assert np.asarray(result)[..., 0].min() == 255


def test_to_square_pad_keeps_all_content():
    red = Image.new("RGB", (20, 10), (255, 0, 0))
    result = to_square(red, 40, mode="pad")
    assert result.size == (40, 40)
    pixels = np.asarray(result)
    assert (pixels[:8] == 0).all() and (pixels[-8:] == 0).all()  # black bands top and bottom
    assert (pixels[12:28] == (255, 0, 0)).all()  # full-width red band in the middle
    assert _pixel(to_square(red, 20, mode="pad", fill=(0, 0, 255)), (10, 0)) == (0, 0, 255)


def test_to_square_unknown_mode():
    with pytest.raises(ValueError, match="stretch"):
        to_square(Image.new("RGB", (4, 4)), 8, mode="stretch")


def test_hstack():
    a, b = Image.new("RGB", (3, 5), (255, 0, 0)), Image.new("RGB", (4, 5), (0, 255, 0))
    grid = hstack([a, b])
    assert grid.size == (7, 5)
    assert _pixel(grid, (2, 0)) == (255, 0, 0) and _pixel(grid, (3, 0)) == (0, 255, 0)
    with pytest.raises(ValueError):
        hstack([a, Image.new("RGB", (3, 6))])


# --- list_images -------------------------------------------------------------------------------------------


def test_list_images_sorted_with_sidecars_and_hidden_files_ignored(tmp_path: Path):
    for name in ["10.png", "2.PNG", "1.jpg"]:
        Image.new("RGB", (2, 2)).save(tmp_path / name, format="JPEG" if name.endswith("jpg") else "PNG")
    (tmp_path / "2.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("keypoints")
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "subfolder").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["1.jpg", "2.PNG", "10.png"]


def test_list_images_errors(tmp_path: Path):
    with pytest.raises(UserError, match=r"nowhere: no such folder"):
        list_images(tmp_path / "nowhere")

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "pose.json").write_text("{}")
    with pytest.raises(UserError, match=r"empty: no image files found"):
        list_images(empty)

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.new("RGB", (2, 2)).save(mixed / "0.png")
    (mixed / "notes.docx").write_bytes(b"PK")
    with pytest.raises(UserError, match=r"mixed: not an image file: notes\.docx \(supported: .*png"):
        list_images(mixed)


# --- videos ------------------------------------------------------------------------------------------------


def test_mp4_roundtrip_with_odd_size(tmp_path: Path, capfd):
    path = tmp_path / "out" / "odd.mp4"
    frames = _frames(7, 21, 33)
    write_video(path, [Image.fromarray(frames[0]), *frames[1:]], fps=12.5)
    assert "macro_block_size" not in capfd.readouterr().err
    assert count_frames(path) == 7

    decoded = read_frames(path)
    assert len(decoded) == 7
    assert decoded[0].size == (34, 22)  # padded to even, not resized
    top = np.asarray(decoded[0])[:10, :32].astype(int)
    assert np.abs(top - frames[0][:10, :32].astype(int)).mean() < 12


def test_mp4_is_h264_yuv420p(tmp_path: Path):
    import av

    path = tmp_path / "even.mp4"
    write_video(path, _frames(3, 16, 16), fps=24)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"


def test_write_video_rejects_bad_input(tmp_path: Path):
    with pytest.raises(ValueError):
        write_video(tmp_path / "empty.mp4", [], fps=10)
    with pytest.raises(ValueError):
        write_video(tmp_path / "mixed.mp4", [*_frames(1, 8, 8), *_frames(1, 8, 10)], fps=10)


def test_rotated_phone_video_comes_back_upright(tmp_path: Path):
    source = tmp_path / "landscape.mp4"
    write_video(source, _frames(2, 16, 32), fps=10)
    rotated = tmp_path / "portrait.mp4"
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    command = [ffmpeg, "-loglevel", "error", "-display_rotation", "90", "-i", str(source), "-c", "copy"]
    subprocess.run([*command, str(rotated)], check=True)
    assert read_frames(rotated)[0].size == (16, 32)


def test_gif_roundtrip(tmp_path: Path):
    path = tmp_path / "anim.gif"
    write_gif(path, _frames(5, 12, 9), fps=10)
    assert count_frames(path) == 5
    with Image.open(path) as gif:
        assert gif.info["loop"] == 0
        assert gif.info["duration"] == 100
    frames = read_frames(path)
    assert len(frames) == 5 and frames[0].size == (9, 12) and frames[0].mode == "RGB"


def test_read_frames_folder_in_natural_order(tmp_path: Path):
    for index in [10, 2, 1]:
        Image.new("RGB", (5, 4), (index * 20, 0, 0)).save(tmp_path / f"frame_{index}.png")
    frames = read_frames(tmp_path)
    assert [_pixel(f, (0, 0))[0] for f in frames] == [20, 40, 200]


def test_read_frames_errors(tmp_path: Path):
    with pytest.raises(UserError, match=r"clip\.mp4: no such file"):
        read_frames(tmp_path / "clip.mp4")

    unknown = tmp_path / "clip.xyz"
    unknown.write_bytes(b"x")
    with pytest.raises(UserError, match=r"clip\.xyz: not a video file \(supported: .*mp4"):
        read_frames(unknown)

    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(UserError, match=r"garbage\.mp4: cannot open as a video"):
        read_frames(garbage)
    with pytest.raises(UserError, match=r"garbage\.mp4"):
        count_frames(garbage)

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match=r"empty\.mp4"):
        read_frames(empty)


def test_audio_only_file_has_no_video_stream(tmp_path: Path):
    path = tmp_path / "audio.mp4"
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run([ffmpeg, "-loglevel", "error", "-f", "lavfi", "-i", "sine=d=0.2", str(path)], check=True)
    with pytest.raises(UserError, match=r"audio\.mp4: no video stream"):
        read_frames(path)
