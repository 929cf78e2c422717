"""`extract-pose --style mmpose` and `fyp-sample --video`: raw video -> mmpose-style skeleton -> video.

The real path needs `.venv-pose` (mediapipe): without it the test skips locally and FAILS under CI, like the
backend tests of test_pose_extract.py. The missing-environment error is tested everywhere.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from magicpose.cli import build_parser, main
from magicpose.media import count_frames, write_video
from magicpose.pose.extract import write_pose
from magicpose.pose.mmpose import render_mmpose
from magicpose.pose.openpose import PersonKeypoints, PoseFrame, read_keypoints_json

from .conftest import REPO, require_pose_env

TINY = REPO / "configs/followyourpose/tiny.yaml"
PALETTE = {(0, 0, 0), (255, 153, 51), (0, 255, 0), (0, 128, 255)}


def colours(image: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(int(v) for v in c) for c in np.unique(image.reshape(-1, 3), axis=0)}


@pytest.fixture(scope="module")
def astronaut_video(tmp_path_factory):
    """Six 256 px frames of the astronaut photograph drifting sideways: mediapipe finds her in each."""
    from skimage import data

    photo = np.asarray(Image.fromarray(data.astronaut()).resize((256, 256), Image.BILINEAR))
    path = tmp_path_factory.mktemp("raw") / "astronaut.mp4"
    write_video(path, [np.roll(photo, 3 * i, axis=1) for i in range(6)], fps=8)
    return path


def _sample(video, out, *extra):
    return main(["fyp-sample", "-c", str(TINY), "--prompt", "an astronaut dancing", "--video", str(video),
                 "--out", str(out), "--frames", "3", "--stride", "2", "--steps", "1", *extra])


def test_write_pose_style_mmpose_draws_the_same_keypoints(tmp_path):
    body = np.zeros((18, 3), np.float32)
    body[[2, 3, 5, 6]] = [(10, 10, 1), (10, 40, 1), (40, 10, 1), (40, 40, 1)]  # both upper arms
    pose = PoseFrame([PersonKeypoints(body)], 50, 50)
    write_pose("a", pose, tmp_path / "k", tmp_path / "open")
    write_pose("a", pose, tmp_path / "k", tmp_path / "mm", "mmpose")
    mm = np.asarray(Image.open(tmp_path / "mm" / "a.png"))
    np.testing.assert_array_equal(mm, render_mmpose(pose))
    assert colours(mm) == PALETTE  # orange shoulders, green left arm, blue right arm
    assert not colours(np.asarray(Image.open(tmp_path / "open" / "a.png"))) <= PALETTE  # OpenPose colours
    args = build_parser().parse_args(["extract-pose", "--input", "v.mp4", "--out", "o"])
    assert args.style == "openpose"  # the default keeps the old behaviour


def test_video_and_skeleton_exclude_each_other(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fyp-sample", "-c", str(TINY), "--prompt", "x", "--video", "a.mp4", "--skeleton", "b", "--out", "o"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_missing_pose_env_is_one_line_naming_setup_and_skeleton(astronaut_video, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MAGICPOSE_POSE_VENV", str(tmp_path / "no-venv"))
    assert _sample(astronaut_video, tmp_path / "out") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("magicpose fyp-sample: error:")
    assert f"{tmp_path}/no-venv/bin/python" in err
    assert "bash scripts/setup_pose.sh" in err and "--skeleton" in err
    assert not (tmp_path / "out" / "run.json").exists()


@pytest.fixture(scope="module")
def pose_env():
    return require_pose_env("fyp-sample --video")


def test_fyp_sample_video_extracts_mmpose_skeleton_then_samples(pose_env, astronaut_video, tmp_path, capsys):
    out = tmp_path / "out"
    assert _sample(astronaut_video, out) == 0, capsys.readouterr().err
    assert "kept 6 of 6 frames" in capsys.readouterr().out
    skeleton = out / "skeleton"
    report = json.loads((skeleton / "report.json").read_text())
    assert report["style"] == "mmpose" and report["input"] == str(astronaut_video.resolve())
    pose_map = np.asarray(Image.open(skeleton / "pose_maps" / "0001.png"))
    keypoints = read_keypoints_json(skeleton / "keypoints" / "0001.json")
    np.testing.assert_array_equal(pose_map, render_mmpose(keypoints))  # maps drawn from the written keypoints
    # mmpose colours only: orange head and torso, and her right upper arm in blue on the image's left (her
    # left arm is out of the photograph, so no green).
    assert {(0, 0, 0), (255, 153, 51), (0, 128, 255)} <= colours(pose_map) <= PALETTE
    assert np.nonzero((pose_map == (0, 128, 255)).all(-1))[1].max() < 128
    assert count_frames(out / "video.mp4") == 3 and count_frames(out / "grid.mp4") == 3
    record = json.loads((out / "run.json").read_text())
    assert record["skeleton_frames"] == [0, 2, 4] and record["skeleton"] == str(skeleton / "pose_maps")
    # A second run reuses the extraction instead of running mediapipe again (and, asking for more frames than
    # the video has, names the skeleton folder in its one-line error, before any model is built).
    stamp = (skeleton / "report.json").stat().st_mtime_ns
    assert _sample(astronaut_video, out, "--overwrite", "--frames", "4") == 1
    captured = capsys.readouterr()
    assert "reusing the poses" in captured.out and (skeleton / "report.json").stat().st_mtime_ns == stamp
    assert f"{skeleton / 'pose_maps'}: has 6 frames" in captured.err and "--frames 3" in captured.err
