"""`animate --retarget` (inline retargeting, the ratios in run.json) and a reference IMAGE posed in `.venv-pose`.

Kept apart from test_retarget.py (fast geometry) because they build the tiny pipeline or start mediapipe. The image
test skips without the pose environment, and fails under CI, like test_fyp_video.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from magicpose.cli import main
from magicpose.pose.openpose import read_keypoints_json, render_pose, write_keypoints_json
from magicpose.pose.retarget import retarget_frames

from .conftest import TINY_CONFIG, require_pose_env
from .test_retarget import A, B, write_inputs


@pytest.fixture
def files(tmp_path):
    return write_inputs(tmp_path)

# ----------------------------------------------------------------------------------------------------------
# animate --retarget
# ----------------------------------------------------------------------------------------------------------


def _animate(reference, poses, out, *extra):
    return main(["animate", "--config", str(TINY_CONFIG), "--reference", str(reference), "--poses", str(poses),
                 "--out", str(out), "--steps", "1", *extra])


def _one_animate_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("magicpose animate: error:"), err
    return err


def test_animate_retargets_extract_pose_output_inline_and_records_the_ratios(files, tmp_path, capsys):
    reference_json, poses = files
    extracted = tmp_path / "extracted"  # extract-pose's layout: pose_maps/ + keypoints/
    for path in sorted(poses.glob("*.json"))[:3]:
        frame = read_keypoints_json(path)
        write_keypoints_json(extracted / "keypoints" / path.name, frame)
        (extracted / "pose_maps").mkdir(exist_ok=True)
        Image.fromarray(render_pose(frame)).save(extracted / "pose_maps" / f"{path.stem}.png")
    Image.new("RGB", (64, 64), (90, 60, 30)).save(tmp_path / "me.png")  # the keypoints' 512 px canvas, smaller
    out = tmp_path / "out"
    assert _animate(tmp_path / "me.png", extracted / "pose_maps", out, "--retarget",
                    "--reference-keypoints", str(reference_json)) == 0, capsys.readouterr().err
    record = json.loads((out / "run.json").read_text())
    assert record["num_frames"] == 3 and record["pose_files"] == ["0001.json", "0002.json", "0003.json"]
    ratios = record["retarget"]
    assert ratios["reference_keypoints"] == str(reference_json) and ratios["frames"] == 3
    # The reference's keypoints were rescaled to the 64 px image: her bones are 1/8 as long in its pixels.
    assert ratios["height_ratio"] == pytest.approx(A.height() / B.height() / 8, rel=1e-4)
    assert ratios["bones"]["r_elbow-r_wrist"]["reference_px"] == pytest.approx(A.forearm / 8, rel=1e-4)


def test_animate_retarget_errors_are_one_line_before_any_model_loads(files, tmp_path, capsys):
    reference_json, _ = files
    maps = tmp_path / "maps"
    maps.mkdir()
    Image.new("RGB", (64, 64)).save(maps / "0001.png")
    Image.new("RGB", (64, 64)).save(tmp_path / "me.png")
    assert _animate(tmp_path / "me.png", maps, tmp_path / "o1", "--retarget", "--reference-keypoints",
                    str(reference_json)) == 1
    err = _one_animate_error(capsys)
    assert "--retarget needs the poses' OpenPose keypoints" in err and "0001.png: no keypoints JSON" in err
    assert _animate(tmp_path / "me.png", maps, tmp_path / "o2", "--reference-keypoints", str(reference_json)) == 1
    assert "only used with --retarget" in _one_animate_error(capsys)
    Image.new("RGB", (48, 80)).save(tmp_path / "tall.png")  # another shape than the keypoints' canvas
    assert _animate(tmp_path / "tall.png", files[1], tmp_path / "o3", "--retarget", "--reference-keypoints",
                    str(reference_json)) == 1
    assert "other aspect ratio" in _one_animate_error(capsys)
    assert not any((tmp_path / name).exists() for name in ("o1", "o2", "o3"))


def test_retargeted_maps_are_the_retargeted_keypoints_drawn_for_the_square(files, tmp_path):
    from magicpose.commands.retarget_pose import retargeted_maps
    from magicpose.media import to_square

    reference_json, poses = files
    Image.new("RGB", (128, 192)).save(tmp_path / "me.png")  # portrait: crop keeps the middle 128 px
    reference = read_keypoints_json(reference_json)
    write_keypoints_json(tmp_path / "me.json", reference.resized(256, 384))
    maps, names, record = retargeted_maps(tmp_path / "me.png", (128, 192), poses, tmp_path / "me.json", 64)
    driving = [read_keypoints_json(path) for path in names]
    expected = retarget_frames(read_keypoints_json(tmp_path / "me.json").resized(128, 192), driving).frames
    assert len(maps) == len(driving) == 6 and maps[0].size == (64, 96)  # drawn at the short side's 64 px
    for got, frame in zip(maps, expected):
        np.testing.assert_array_equal(np.asarray(got), render_pose(frame, size=(64, 96)))
    assert to_square(maps[0], 64).size == (64, 64) and record["reference_keypoints"] == str(tmp_path / "me.json")


@pytest.fixture(scope="module")
def pose_env():
    return require_pose_env("posing a reference image")


def test_a_reference_image_is_posed_in_the_pose_environment(pose_env, files, tmp_path, capsys):
    """The astronaut photograph (upper body): her shoulders and upper arm set those bones, the rest follows."""
    from skimage import data

    _, poses = files
    Image.fromarray(data.astronaut()).resize((256, 256), Image.BILINEAR).save(tmp_path / "astronaut.png")
    out = tmp_path / "out"
    assert main(["retarget-pose", "--reference", str(tmp_path / "astronaut.png"), "--poses", str(poses),
                 "--out", str(out)]) == 0, capsys.readouterr().err
    assert "posing the reference" in capsys.readouterr().out
    reference = read_keypoints_json(out / "reference.json")
    assert (reference.width, reference.height) == (256, 256) and len(reference.people) == 1
    record = json.loads((out / "retarget.json").read_text())
    shoulders = record["bones"]["neck-r_shoulder"]
    assert shoulders["source"] == "measured" and shoulders["reference_px"] > 30
    assert "neck-r_hip" not in record["height_bones"]  # no hips in the photograph: the overall scale
    first = read_keypoints_json(out / "keypoints" / "0001.json").people[0].body
    np.testing.assert_allclose(first[1, :2], reference.people[0].body[1, :2], atol=1e-3)  # her neck
