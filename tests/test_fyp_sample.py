"""`magicpose fyp-sample` end to end on the tiny config, and its skeleton checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from magicpose.cli import main
from magicpose.commands.fyp_sample import skeleton_indices
from magicpose.errors import UserError
from magicpose.media import count_frames, write_video

from .conftest import REPO, stick_pose

TINY = REPO / "configs/followyourpose/tiny.yaml"


@pytest.fixture(scope="module")
def skeleton_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("skeleton") / "dance.mp4"
    write_video(path, [np.asarray(stick_pose(seed, 48)) for seed in range(16)], fps=8)
    return path


def test_fyp_sample_writes_an_mp4_with_the_requested_frames(skeleton_video, tmp_path):
    out = tmp_path / "out"
    argv = ["fyp-sample", "-c", str(TINY), "--prompt", "a robot dancing", "--skeleton", str(skeleton_video),
            "--frames", "4", "--steps", "2", "--out", str(out), "--context-length", "3", "--context-overlap", "1"]
    assert main(argv) == 0
    assert count_frames(out / "video.mp4") == 4 and count_frames(out / "grid.mp4") == 4
    assert (out / "video.gif").is_file() and len(list((out / "frames").glob("*.png"))) == 4
    record = json.loads((out / "run.json").read_text())
    assert record["skeleton_frames"] == [0, 5, 10, 15]  # the original's stride 5
    assert record["config"]["inference"]["context_length"] == 3
    assert main(argv) == 1  # an existing result is not replaced without --overwrite


def test_fyp_sample_accepts_a_folder_of_pose_images(tmp_path):
    poses = tmp_path / "poses"
    poses.mkdir()
    for i in range(5):
        stick_pose(i, 40).save(poses / f"{i}.png")
    out = tmp_path / "out"
    argv = ["fyp-sample", "-c", str(TINY), "--prompt", "x", "--skeleton", str(poses), "--frames", "3", "--stride",
            "2", "--steps", "1", "--out", str(out), "inference.guidance_scale=1.0"]
    assert main(argv) == 0
    assert count_frames(out / "video.mp4") == 3
    assert json.loads((out / "run.json").read_text())["skeleton_frames"] == [0, 2, 4]


def test_too_short_skeleton_is_a_one_line_error_and_exit_1(skeleton_video, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["fyp-sample", "-c", str(TINY), "--prompt", "x", "--skeleton", str(skeleton_video), "--out", str(out)]
    assert main(argv) == 1  # 8 frames at stride 5 need 36 frames; the video has 16
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "has 16 frames" in err and "need 36" in err and "--frames 4" in err and "--stride 2" in err
    assert not out.exists() or not any(out.iterdir())


def test_skeleton_indices():
    assert skeleton_indices(156, 32, 5, 0, REPO) == list(range(0, 156, 5))
    with pytest.raises(UserError, match="has 137 frames"):
        skeleton_indices(137, 32, 5, 0, REPO)  # the bundled vis_ikun_pose1 case that crashed the original
    assert skeleton_indices(10, 3, 2, 5, REPO) == [5, 7, 9]


def test_released_weights_are_looked_for_in_every_place(monkeypatch, tmp_path):
    """No weights: one line naming the converted folder and the release's places (pretrained_weights/, then the
    original README's checkpoints/); scripts/txt2video.sh runs this config (its run: tests/test_migrating.py)."""
    from magicpose.config import FypConfig, load_config
    from magicpose.convert.cache import convert_sources

    monkeypatch.chdir(tmp_path)
    config = load_config([REPO / "configs/followyourpose/inference.yaml"], schema=FypConfig)
    with pytest.raises(UserError, match=r"model.pretrained: none of these exists: pretrained_weights/FollowYourPose, "
                                        r"pretrained_weights/followyourpose_checkpoint-1000, "
                                        r"checkpoints/followyourpose_checkpoint-1000"):
        convert_sources(config.model)


def test_several_prompts_one_video_each_named_after_the_prompt(tmp_path):
    from PIL import Image

    poses = tmp_path / "poses"
    poses.mkdir()
    for i in range(3):
        stick_pose(i, 32).save(poses / f"{i}.png")
    common = ["--skeleton", str(poses), "--frames", "3", "--stride", "1", "--steps", "1"]
    several, single = tmp_path / "several", tmp_path / "single"
    prompts = ["Iron man on the beach!", "a robot, dancing"]
    assert main(["fyp-sample", "-c", str(TINY), *common, "--out", str(several),
                 f"inference.prompts=[{prompts[0]!r},{prompts[1]!r}]"]) == 0  # from the config
    stems = ["00_iron_man_on_the_beach", "01_a_robot_dancing"]
    for stem in stems:
        assert count_frames(several / f"{stem}.mp4") == 3 and (several / f"{stem}.gif").is_file()
        assert len(list((several / "frames" / stem).glob("*.png"))) == 3
    assert count_frames(several / "grid.mp4") == 3 and not (several / "video.mp4").exists()
    record = json.loads((several / "run.json").read_text())
    assert record["prompts"] == prompts and record["videos"] == [f"{s}.mp4" for s in stems]
    # the second prompt's video is what a run for it alone makes (same seed), and the prompts differ in output
    assert main(["fyp-sample", "-c", str(TINY), *common, "--out", str(single), "--prompt", prompts[1]]) == 0
    alone = np.asarray(Image.open(single / "frames/0000.png"))
    assert np.array_equal(alone, np.asarray(Image.open(several / "frames" / stems[1] / "0000.png")))
    assert not np.array_equal(alone, np.asarray(Image.open(several / "frames" / stems[0] / "0000.png")))
    assert json.loads((single / "run.json").read_text())["prompt"] == prompts[1]


def test_prompts_to_sample_precedence():
    from magicpose.commands.fyp_sample import prompts_to_sample
    from magicpose.config import FypConfig, load_config

    config = load_config([TINY], ["inference.prompts=[a,b]", "inference.prompt=c"], schema=FypConfig)
    assert prompts_to_sample(["x", "y"], config) == ["x", "y"] and prompts_to_sample(["x"], config) == "x"
    assert prompts_to_sample(None, config) == ["a", "b"]
    config.inference.prompts = []
    assert prompts_to_sample(None, config) == "c"
    config.inference.prompt = ""
    with pytest.raises(UserError, match="no prompt: pass --prompt"):
        prompts_to_sample(None, config)
