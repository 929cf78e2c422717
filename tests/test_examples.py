"""The shipped example inputs: how they are made, that they still match their generator, and that both systems'
commands run on them as the README shows (tiny configs, random weights)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from PIL import Image

from magicpose.cli import main
from magicpose.commands.fyp_sample import skeleton_indices
from magicpose.media import count_frames, iter_video_frames
from magicpose.pose.examples import (
    EXAMPLE_SIZE,
    MOTIONS,
    POSE_SEQUENCES,
    SKELETON_VIDEOS,
    astronaut_image,
    dance_keypoints,
    pose_sequence_maps,
    skeleton_video_frames,
)

from .conftest import REPO, TINY_CONFIG

ASTRONAUT = REPO / "example_data/image/out-of-domain/astronaut.png"
SEQUENCES = REPO / "example_data/pose_sequence"
VIDEOS = REPO / "pose_example"
SHIPPED = [ASTRONAUT, SEQUENCES, VIDEOS]
FYP_TINY = REPO / "configs/followyourpose/tiny.yaml"


def _points(frame):
    person = frame.people[0]
    return np.concatenate([person.body, person.left_hand, person.right_hand, person.face])


@pytest.mark.parametrize("motion", sorted(MOTIONS))
def test_dances_stay_on_the_canvas_and_move_arms_and_legs(motion):
    frames = dance_keypoints(motion, 24, (512, 384), period=12)
    points = np.stack([_points(f) for f in frames])  # (T, N, 3)
    assert (points[..., 2] == 1).all() and len(frames[0].people) == 1
    assert (points[..., 0] >= 0).all() and (points[..., 0] < 512).all()
    assert (points[..., 1] >= 0).all() and (points[..., 1] < 384).all()
    body = np.stack([f.people[0].body[:, :2] for f in frames])
    travel = np.linalg.norm(body.max(0) - body.min(0), axis=-1)  # per joint, over the cycle
    assert travel[[4, 7]].max() > 0.2 * 384  # a wrist moves a lot
    assert travel[[10, 13]].max() > 0.05 * 384  # so does an ankle
    np.testing.assert_array_equal(points, np.stack([_points(f) for f in dance_keypoints(motion, 24, (512, 384),
                                                                                         period=12)]))


def test_dance_arguments_are_checked():
    with pytest.raises(ValueError, match="unknown motion"):
        dance_keypoints("moonwalk", 4)
    with pytest.raises(ValueError, match="frames >= 1"):
        dance_keypoints("wave_march", 0)
    bare = dance_keypoints("wave_march", 1, hands=False, face=False)[0].people[0]
    assert bare.left_hand is None and bare.face is None


def test_shipped_astronaut_is_the_scikit_image_photograph():
    image = Image.open(ASTRONAUT)
    assert image.size == (512, 512) and image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(image), astronaut_image())


@pytest.mark.parametrize("name", sorted(POSE_SEQUENCES))
def test_shipped_pose_sequences_match_their_generator(name):
    files = sorted((SEQUENCES / name).iterdir())
    expected = pose_sequence_maps(name)
    assert [f.name for f in files] == [f"{i:04d}.png" for i in range(1, len(expected) + 1)]
    assert len(files) >= 16
    for path, pose_map in zip(files, expected):
        image = np.asarray(Image.open(path))
        assert image.shape == (EXAMPLE_SIZE, EXAMPLE_SIZE, 3)
        np.testing.assert_array_equal(image, pose_map, err_msg=str(path))


@pytest.mark.parametrize("name", sorted(SKELETON_VIDEOS))
def test_shipped_skeleton_videos_match_their_generator(name):
    expected = skeleton_video_frames(name)
    decoded = list(iter_video_frames(VIDEOS / f"{name}.mp4"))
    assert len(decoded) == len(expected) >= 160
    for index in range(0, len(expected), 3):  # every third frame: enough to see drift, a third of the time
        frame, wanted = decoded[index], expected[index]
        # H.264 is lossy: near-equal pixels (the same frames shifted by 5 differ by >= 1.4 on average).
        assert np.abs(frame.astype(np.int16) - wanted).mean() < 1.0, index
        limbs = wanted.any(-1)
        assert (frame[limbs].max(-1) > 100).mean() > 0.85, index


def test_shipped_toy_examples_are_the_toy_worlds_held_out_dancers(tmp_path):
    """example_data/image/toy/ and pose_sequence/toy/: what scripts/tools/make_examples.py writes from the toy world."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_examples", REPO / "scripts/tools/make_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_toy_examples(tmp_path)
    for folder in ("example_data/image/toy", "example_data/pose_sequence/toy"):
        expected = sorted((tmp_path / folder).iterdir())
        assert [p.name for p in sorted((REPO / folder).iterdir())] == [p.name for p in expected]
        for path in expected:
            np.testing.assert_array_equal(np.asarray(Image.open(REPO / folder / path.name)), np.asarray(Image.open(path)))


def test_shipped_files_are_small_and_not_ignored():
    files = [ASTRONAUT, *SEQUENCES.rglob("*.png"), *VIDEOS.glob("*.mp4")]
    assert sum(f.stat().st_size for f in files) < 2_000_000
    ignored = subprocess.run(["git", "check-ignore", *map(str, files)], cwd=REPO, capture_output=True, text=True)
    assert ignored.stdout == ""  # nothing of it is excluded from commits


def test_fyp_default_sampling_fits_the_shipped_videos():
    from magicpose.config import FypConfig, load_config

    inference = load_config([str(REPO / "configs/followyourpose/inference.yaml")], schema=FypConfig).inference
    for name in SKELETON_VIDEOS:
        frames = SKELETON_VIDEOS[name][1]
        assert len(skeleton_indices(frames, inference.frames, inference.stride, inference.start, REPO)) == 32


def test_animate_runs_on_the_shipped_astronaut_and_pose_sequence(tmp_path):
    out = tmp_path / "out"
    argv = ["animate", "--config", str(TINY_CONFIG), "--reference", str(ASTRONAUT),
            "--poses", str(SEQUENCES / "001"), "--out", str(out), "--steps", "1"]
    assert main(argv) == 0
    assert count_frames(out / "animation.mp4") == 24 and len(list((out / "frames").glob("*.png"))) == 24
    assert json.loads((out / "run.json").read_text())["pose_files"][:2] == ["0001.png", "0002.png"]


def test_fyp_sample_runs_on_the_shipped_skeleton_video(tmp_path):
    out = tmp_path / "out"
    argv = ["fyp-sample", "-c", str(FYP_TINY), "--prompt", "an astronaut dancing", "--skeleton",
            str(VIDEOS / "dance_001.mp4"), "--out", str(out), "--steps", "1"]
    assert main(argv) == 0
    assert count_frames(out / "video.mp4") == 8 and count_frames(out / "grid.mp4") == 8
    assert json.loads((out / "run.json").read_text())["skeleton_frames"] == list(range(0, 40, 5))


def test_every_example_path_in_readme_scripts_and_help_exists():
    import re

    texts = [REPO / "README.md", REPO / "example_data/README.md", REPO / "pose_example/README.md",
             *(REPO / "scripts").rglob("*.sh"), *(REPO / "magicpose/commands").glob("*.py")]
    named = {match for path in texts
             for match in re.findall(r"(?:example_data|pose_example)/[\w./-]*[\w/]", path.read_text())}
    assert {"example_data/image/out-of-domain/astronaut.png", "pose_example/dance_001.mp4"} <= named
    missing = sorted(name for name in named if not (REPO / name).exists())
    assert not missing
