"""`extract-pose --style mmpose`: the same keypoints drawn as Follow-Your-Pose's mmpose-style maps."""

from __future__ import annotations

import numpy as np
from PIL import Image

from magicpose.cli import build_parser
from magicpose.pose.extract import write_pose
from magicpose.pose.mmpose import render_mmpose
from magicpose.pose.openpose import PersonKeypoints, PoseFrame

PALETTE = {(0, 0, 0), (255, 153, 51), (0, 255, 0), (0, 128, 255)}


def colours(image: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(int(v) for v in c) for c in np.unique(image.reshape(-1, 3), axis=0)}


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
