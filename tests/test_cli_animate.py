"""`magicpose animate` end to end on the tiny config, and one clear line for every bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

from magicpose.cli import main
from magicpose.media import count_frames

from .conftest import REPO, TINY_CONFIG, random_image, stick_pose


@pytest.fixture
def inputs(tmp_path):
    random_image(0, (48, 80)).save(tmp_path / "ref.png")  # portrait: centre-cropped to a square
    poses = tmp_path / "poses"
    poses.mkdir()
    for i in (10, 2, 1):
        stick_pose(i).save(poses / f"{i}.png")
    (poses / "1.json").write_text("{}")  # keypoint sidecars are ignored
    return tmp_path / "ref.png", poses


def _animate(ref, poses, out, *extra):
    argv = ["animate", "--config", str(TINY_CONFIG), "--reference", str(ref), "--poses", str(poses)]
    return main([*argv, "--out", str(out), "--steps", "2", *extra])


def test_animate_writes_frames_videos_and_run_record(inputs, tmp_path, capsys):
    ref, poses = inputs
    out = tmp_path / "out"
    assert _animate(ref, poses, out, "--seed", "7") == 0
    frames = sorted((out / "frames").iterdir())
    assert [f.name for f in frames] == ["0000.png", "0001.png", "0002.png"]
    assert Image.open(frames[0]).size == (64, 64)
    assert count_frames(out / "animation.mp4") == 3
    assert count_frames(out / "grid.mp4") == 3
    assert count_frames(out / "animation.gif") >= 1
    record = json.loads((out / "run.json").read_text())
    assert record["pose_files"] == ["1.png", "2.png", "10.png"]  # natural order
    assert record["seed"] == 7 and record["config"]["inference"]["steps"] == 2
    assert {"torch", "diffusers", "transformers"} <= record["versions"].keys()
    assert "wrote 3 frames" in capsys.readouterr().out


def test_second_run_refuses_without_overwrite_and_writes_nothing(inputs, tmp_path, capsys):
    ref, poses = inputs
    out = tmp_path / "out"
    assert _animate(ref, poses, out) == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    capsys.readouterr()
    assert _animate(ref, poses, out) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--overwrite" in err and "Traceback" not in err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    assert _animate(ref, poses, out, "--overwrite", "--pad") == 0
    assert json.loads((out / "run.json").read_text())["config"]["inference"]["resize_mode"] == "pad"
    assert not list(out.glob(".partial-*"))


def test_animate_reads_poses_from_a_video(inputs, tmp_path):
    from magicpose.media import write_video

    ref, _ = inputs
    video = tmp_path / "poses.mp4"
    write_video(video, [stick_pose(i) for i in range(5)], fps=10)
    assert _animate(ref, video, tmp_path / "out") == 0
    assert count_frames(tmp_path / "out" / "animation.mp4") == 5


def test_context_windows_without_a_motion_module_give_the_frames_of_frame_batches(inputs, tmp_path):
    import numpy as np

    ref, poses = inputs
    assert _animate(ref, poses, tmp_path / "plain") == 0
    assert _animate(ref, poses, tmp_path / "windows", "--context-length", "2", "--context-overlap", "1") == 0
    record = json.loads((tmp_path / "windows" / "run.json").read_text())
    assert record["config"]["inference"]["context_length"] == 2
    assert record["config"]["inference"]["context_overlap"] == 1
    for name in ("0000.png", "0001.png", "0002.png"):
        plain, windowed = (np.asarray(Image.open(tmp_path / run / "frames" / name), dtype=int)
                           for run in ("plain", "windows"))
        assert np.abs(plain - windowed).max() <= 1  # other pass sizes round differently (~1e-6), nothing more


def _bad_inputs(tmp_path, inputs):
    ref, poses = inputs
    empty = tmp_path / "empty"
    empty.mkdir()
    junk = tmp_path / "junk"
    junk.mkdir()
    stick_pose(0).save(junk / "0.png")
    (junk / "notes.docx").write_text("x")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    return {
        "missing reference": ([str(tmp_path / "nope.png"), str(poses)], "nope.png"),
        "empty pose folder": ([str(ref), str(empty)], "no image files"),
        "non-image in poses": ([str(ref), str(junk)], "notes.docx"),
        "unreadable image": ([str(broken), str(poses)], "broken.png"),
        "unknown config key": ([str(ref), str(poses), "inference.stepz=3"], "did you mean 'inference.steps'"),
        "bad size": ([str(ref), str(poses), "--size", "50"], "inference.size"),
        "overlap as long as the window": ([str(ref), str(poses), "--context-length", "2", "--context-overlap", "2"],
                                          "inference.context_length"),
    }


def test_bad_input_gets_one_clear_line(inputs, tmp_path, capsys):
    for label, (args, needle) in _bad_inputs(tmp_path, inputs).items():
        ref, poses, *extra = args
        code = main(["animate", "-c", str(TINY_CONFIG), "--reference", ref, "--poses", poses,
                     "--out", str(tmp_path / "o"), *extra])
        err = capsys.readouterr().err.strip()
        assert code == 1, label
        assert len(err.splitlines()) == 1 and err.startswith("magicpose animate: error:"), (label, err)
        assert needle in err, (label, err)
        assert not (tmp_path / "o" / "run.json").exists()


def test_entry_point_help_and_error_without_traceback(tmp_path):
    help_out = subprocess.run([sys.executable, "-m", "magicpose", "animate", "--help"],
                              capture_output=True, text=True, check=True).stdout
    assert "--reference" in help_out and "--overwrite" in help_out
    assert "--context-length" in help_out and "windows are frame batches" in " ".join(help_out.split())
    res = subprocess.run(
        [sys.executable, "-m", "magicpose", "animate", "-c", str(TINY_CONFIG), "--reference", "missing.png",
         "--poses", str(tmp_path), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, cwd=REPO,
    )
    assert res.returncode == 1
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
