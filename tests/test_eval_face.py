"""Face-Cos: the iResNet (random weights, real layout), strict loading, alignment from keypoints, the metric."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from magicpose.cli import main
from magicpose.errors import UserError
from magicpose.eval.face import ARCFACE_DST, align_face, face_matrix, pick_face, square_fractions
from magicpose.eval.networks import informative_init_
from magicpose.eval.networks.arcface import DEPTHS, IResNet, infer_depth, load_arcface, save_random_arcface
from magicpose.eval.networks.weights import sha256_of
from magicpose.eval.protocol import EvalOptions, evaluate
from magicpose.pose.openpose import PersonKeypoints, PoseFrame, read_keypoints_json, write_keypoints_json


@pytest.fixture(scope="module")
def face_model(tmp_path_factory):
    """A random r18 in the arcface_torch layout, saved in half precision (the loader casts to float32)."""
    return save_random_arcface(tmp_path_factory.mktemp("arcface") / "arcface_r100.pth")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Two toy test videos (two identities) of 2 frames at 128 px, with OpenPose keypoints (face landmarks)."""
    from magicpose.toy import generate_toy_dataset

    root = tmp_path_factory.mktemp("face_toy")
    generate_toy_dataset(root, videos=1, test_videos=2, frames=2, size=128, seed=0)
    return root


def test_iresnet_runs_at_112_and_depends_on_the_input():
    net = informative_init_(IResNet(18))
    x = torch.rand((2, 3, 112, 112), generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        y = net(x)
        assert y.shape == (2, 512) and torch.isfinite(y).all()
        assert not torch.allclose(y, net(x.flip(-1)))
        assert not torch.allclose(y[0], y[1])
    for depth in (18, 50, 100):  # the depth is read back from the keys of each published layout
        with torch.device("meta"):
            state = IResNet(depth).state_dict()
        assert infer_depth(state, "x.pth") == depth
        assert "layer1.0.downsample.0.weight" in state and "features.running_var" in state
    with torch.device("meta"):
        assert sum(p.numel() for p in IResNet(100).parameters()) == 65_156_160  # r100 backbone.pth: ~261 MB fp32


def test_face_file_loads_and_a_renamed_key_fails_naming_file_and_key(face_model, tmp_path):
    net = load_arcface(face_model)
    assert net.depth == 18 and net.conv1.weight.dtype == torch.float32
    raw = torch.load(face_model, map_location="cpu", weights_only=True)
    assert raw["fc.weight"].dtype == torch.float16 and tuple(raw["fc.weight"].shape) == (512, 512 * 7 * 7)
    raw["layer2.1.prelu.alpha"] = raw.pop("layer2.1.prelu.weight")
    bad = tmp_path / "renamed.pth"
    torch.save(raw, bad)
    with pytest.raises(UserError) as info:
        load_arcface(bad)
    message = str(info.value)
    assert str(bad) in message and "missing keys layer2.1.prelu.weight" in message
    assert "unexpected keys layer2.1.prelu.alpha" in message and "\n" not in message
    shallow = {k: v for k, v in raw.items() if not k.startswith("layer3.1.")}  # r18 with a stage cut short
    torch.save(shallow, bad)
    with pytest.raises(UserError, match=r"blocks per stage \[2, 2, 1, 2\] match no"):
        load_arcface(bad)
    assert set(DEPTHS) == {18, 34, 50, 100, 200}


def _landmarks(points5: np.ndarray) -> np.ndarray:
    """70 face points whose eye centres, nose tip and mouth corners are `points5` (others undetected)."""
    face = np.zeros((70, 3), np.float32)
    for index, centre in ((range(36, 42), points5[0]), (range(42, 48), points5[1])):
        offsets = np.array([[-3, 0], [-1, -1], [1, -1], [3, 0], [1, 1], [-1, 1]], np.float32)  # mean 0
        face[list(index), :2] = centre + offsets
        face[list(index), 2] = 1
    for row, point in zip((30, 48, 54), points5[2:]):
        face[row] = (*point, 1)
    return face


def test_alignment_from_a_hand_made_keypoints_file(tmp_path):
    # Landscape 300x224 source, centre-cropped (left 38) to a 224 square: evaluated pixel = source - (38, 0).
    target = 2 * ARCFACE_DST + (10, 5)  # where the face is in the 224-px evaluated frame
    body = np.zeros((18, 3), np.float32)
    write_keypoints_json(tmp_path / "v" / "0.json", PoseFrame([PersonKeypoints(body, face=_landmarks(target + (38, 0)))], 300, 224))
    pose = read_keypoints_json(tmp_path / "v" / "0.json")
    fractions = square_fractions(pick_face(pose.people), pose.width, pose.height, "crop")
    matrix = face_matrix(fractions, 224, 224)
    np.testing.assert_allclose(matrix, [[0.5, 0, -5], [0, 0.5, -2.5]], atol=1e-4)  # keypoints are float32
    # The crop really holds that region: a bright square at the image-left eye lands on ArcFace's left eye.
    frame = np.zeros((224, 224, 3), np.uint8)
    x, y = np.round(target[0]).astype(int)
    frame[y - 4 : y + 5, x - 4 : x + 5] = 255
    crop = align_face(frame, matrix)
    assert crop.shape == (112, 112, 3)
    ys, xs = np.nonzero(crop[..., 0] > 128)
    assert abs(xs.mean() - ARCFACE_DST[0, 0]) < 1 and abs(ys.mean() - ARCFACE_DST[0, 1]) < 1
    # Half the evaluated size (112 px): the box scales with the frame.
    np.testing.assert_allclose(face_matrix(fractions, 112, 112)[:, :2], np.eye(2), atol=1e-6)
    # Portrait 150x224 padded to a 224 square (left offset 37), body points only (eyes + nose: 3 points).
    body[[14, 15, 0]] = np.c_[target[:3] - (37, 0), np.ones(3)]
    points = pick_face([PersonKeypoints(body)])
    matrix = face_matrix(square_fractions(points, 150, 224, "pad"), 224, 224)
    np.testing.assert_allclose(matrix, [[0.5, 0, -5], [0, 0.5, -2.5]], atol=1e-4)  # keypoints are float32
    body[15, 2] = 0  # one eye undetected: no face
    assert pick_face([PersonKeypoints(body)]) is None


def _options(**kwargs) -> EvalOptions:
    return EvalOptions(size=0, progress=False, **kwargs)


def test_face_cos_is_one_for_identical_frames_and_lower_for_another_face(toy, face_model, tmp_path):
    frames, keypoints = toy / "test_set", toy / "keypoints_test_set"
    options = _options(metrics=("face_cos",), face_model=face_model, keypoints=keypoints)
    same = evaluate(frames, frames, options)
    assert same["skipped"] == {} and same["face"]["frames"] == {"scored": 4, "no_keypoints": 0, "no_face": 0}
    assert abs(same["metrics"]["fixed"]["face_cos"] - 1.0) < 1e-6
    assert same["metrics"]["disco"]["face_cos"] == same["metrics"]["fixed"]["face_cos"]
    assert same["weights"]["arcface"]["sha256"] == sha256_of(face_model) and same["weights"]["arcface"]["depth"] == 18
    # Another dancer (the other video's frames under this video's names): another face, lower similarity.
    swapped = tmp_path / "swapped"
    shutil.copytree(frames / "video_0001", swapped / "video_0002")
    shutil.copytree(frames / "video_0002", swapped / "video_0001")
    other = evaluate(swapped, frames, options)["metrics"]["fixed"]["face_cos"]
    assert other < 1.0 - 1e-3


def test_frames_without_a_face_are_counted_and_infer_json_finds_the_keypoints(toy, face_model, tmp_path):
    # An infer-tiktok-like output: pred/ and gt/ beside an infer.json naming the dataset, with its keypoints
    # copied so that two frames can lose their face.
    data = tmp_path / "data"
    shutil.copytree(toy / "test_set", data / "test_set")
    shutil.copytree(toy / "keypoints_test_set", data / "keypoints_test_set")
    (data / "keypoints_test_set" / "video_0001" / "0000.json").unlink()  # no keypoints file
    (data / "keypoints_test_set" / "video_0002" / "0001.json").write_text('{"people": [], "canvas_width": 128, "canvas_height": 128}')
    out = tmp_path / "out"
    shutil.copytree(toy / "test_set", out / "pred")
    shutil.copytree(toy / "test_set", out / "gt")
    settings = {"data": str(data), "split": "test_set", "inference": {"resize_mode": "crop"}}
    (out / "infer.json").write_text(json.dumps({"settings": settings}))
    record = evaluate(out / "pred", out / "gt", _options(metrics=("l1", "face_cos"), face_model=face_model))
    assert record["face"]["frames"] == {"scored": 2, "no_keypoints": 1, "no_face": 1}
    assert record["face"]["keypoints"] == str(data / "keypoints_test_set")
    assert record["face"]["found_by"] == str(out / "infer.json") and record["face"]["resize_mode"] == "crop"
    assert abs(record["metrics"]["fixed"]["face_cos"] - 1.0) < 1e-6


def test_missing_face_model_skips_face_cos_naming_the_file(toy, tmp_path, capsys):
    frames, missing = toy / "test_set", tmp_path / "nowhere" / "arcface_r100.pth"
    out = tmp_path / "m.json"
    code = main(["evaluate", "--pred", str(frames), "--gt", str(frames), "--out", str(out), "--size", "0",
                 "--metrics", "l1", "ssim", "face-cos", "--face-model", str(missing),
                 "--keypoints", str(toy / "keypoints_test_set"), "--no-progress"])  # fmt: skip
    assert code == 0
    record = json.loads(out.read_text())
    assert set(record["skipped"]) == {"face_cos"} and str(missing) in record["skipped"]["face_cos"]
    assert record["metrics"]["fixed"] == {"l1": 0.0, "ssim": pytest.approx(1.0)}
    assert f"skipped face_cos: {missing}" in capsys.readouterr().err
    # Default metrics and no face file in --weights-dir: Face-Cos is not asked for, and the JSON says why.
    empty = tmp_path / "empty_weights"
    empty.mkdir()
    record = evaluate(frames, frames, _options(weights_dir=empty))
    assert "face_cos" not in record["skipped"] and "face" not in record
    assert record["settings"]["face_cos"].startswith("not computed") and str(empty) in record["settings"]["face_cos"]
