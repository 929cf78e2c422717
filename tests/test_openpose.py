"""OpenPose keypoints: ControlNet v1.1 annotator look of the rendered maps, part dropout, JSON round trips."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from magicpose.errors import UserError
from magicpose.pose.openpose import (
    BODY_KEYPOINTS,
    BODY_LIMBS,
    PARTS,
    MarkerSizes,
    PersonKeypoints,
    PoseFrame,
    marker_sizes,
    read_keypoints_json,
    render_pose,
    write_keypoints_json,
)

BLACK = (0, 0, 0)
J = {name: i for i, name in enumerate(BODY_KEYPOINTS)}


def body_with(points: dict[str, tuple[float, float]], confidence: float = 1.0) -> np.ndarray:
    """An (18, 3) body with only the named joints detected."""
    body = np.zeros((18, 3), np.float32)
    for name, (x, y) in points.items():
        body[J[name]] = (x, y, confidence)
    return body


def standing_person(rng: np.random.Generator | None = None) -> PersonKeypoints:
    """A full skeleton on a 256 x 256 canvas, hands at the wrists, a face around the nose."""
    joints = {
        "nose": (128, 50), "neck": (128, 75), "r_shoulder": (105, 75), "r_elbow": (95, 105),
        "r_wrist": (90, 135), "l_shoulder": (151, 75), "l_elbow": (161, 105), "l_wrist": (166, 135),
        "r_hip": (112, 140), "r_knee": (110, 180), "r_ankle": (109, 220), "l_hip": (144, 140),
        "l_knee": (146, 180), "l_ankle": (147, 220), "r_eye": (123, 45), "l_eye": (133, 45),
        "r_ear": (118, 47), "l_ear": (138, 47),
    }  # fmt: skip
    rng = rng or np.random.default_rng(0)

    def cloud(center: tuple[float, float], n: int, spread: float) -> np.ndarray:
        xy = np.asarray(center) + rng.uniform(-spread, spread, (n, 2))
        return np.concatenate([xy, rng.uniform(0.3, 1.0, (n, 1))], axis=1).astype(np.float32)

    return PersonKeypoints(
        body_with(joints), cloud((166, 150), 21, 10), cloud((90, 150), 21, 10), cloud((128, 48), 70, 9)
    )


def colours(image: np.ndarray) -> set[tuple[int, int, int]]:
    """The distinct RGB colours of an image (packed into one int each: np.unique over rows is slow)."""
    packed = np.unique(
        (image[..., 0].astype(np.int64) << 16) | (image[..., 1].astype(np.int64) << 8) | image[..., 2]
    )
    return {(int(v) >> 16, (int(v) >> 8) & 255, int(v) & 255) for v in packed}


def px(image: np.ndarray, x: int, y: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in image[y, x])


# ----------------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------------


def test_constants_match_the_annotator_tables() -> None:
    assert len(BODY_KEYPOINTS) == 18 and BODY_KEYPOINTS[:3] == ("nose", "neck", "r_shoulder")
    assert len(BODY_LIMBS) == 17 and BODY_LIMBS[0] == (1, 2) and BODY_LIMBS[-1] == (15, 17)
    assert PARTS == ("body", "hands", "face")
    assert marker_sizes(512, 768) == MarkerSizes(4, 4, 2, 4, 3)  # the annotator's sizes at its 512 reference
    assert marker_sizes(64, 64) == MarkerSizes(1, 1, 1, 1, 1)  # never below 1 px
    assert marker_sizes(1024, 1024) == MarkerSizes(8, 8, 4, 8, 6)
    assert marker_sizes(64, 64, thickness_scale=1.0) == MarkerSizes(4, 4, 2, 4, 3)


def test_golden_body_limb_and_joint_colours() -> None:
    # Neck at (64, 40) and the right shoulder 30 px to its left (image left): limb 0, colour 0 dimmed to 60 %.
    frame = PoseFrame([PersonKeypoints(body_with({"neck": (64, 40), "r_shoulder": (34, 40)}))], 128, 96)
    image = render_pose(frame, thickness_scale=1.0)
    assert image.shape == (96, 128, 3) and image.dtype == np.uint8
    # Middle of the limb: (255, 0, 0) * 0.6, truncated to uint8 like the annotator.
    assert px(image, 49, 40) == (153, 0, 0)
    assert px(image, 49, 43) == (153, 0, 0) and px(image, 49, 37) == (153, 0, 0)  # stick semi-axis 4
    assert px(image, 49, 46) == BLACK and px(image, 49, 34) == BLACK
    assert px(image, 64, 40) == (255, 85, 0)  # neck joint, full brightness, RGB order (red channel first)
    assert px(image, 34, 40) == (255, 170, 0)  # right-shoulder joint
    assert px(image, 64, 44) == (255, 85, 0) and px(image, 64, 46) == BLACK  # joint radius 4
    assert px(image, 120, 90) == BLACK and px(image, 5, 5) == BLACK
    assert colours(image) == {BLACK, (153, 0, 0), (255, 85, 0), (255, 170, 0)}


def test_golden_hand_and_face_colours() -> None:
    hand = np.zeros((21, 3), np.float32)
    hand[1], hand[2] = (20, 30, 1), (60, 30, 1)  # edge 1 (1 -> 2): hue 1/20
    face = np.zeros((70, 3), np.float32)
    face[5] = (100, 70, 0.9)
    person = PersonKeypoints(np.zeros((18, 3), np.float32), left_hand=hand, face=face)
    image = render_pose(PoseFrame([person], 128, 96), thickness_scale=1.0)
    assert px(image, 40, 30) == (255, 77, 0)  # HSV(0.05, 1, 1) * 255, rounded as cv2 rounds it
    assert px(image, 40, 31) == (255, 77, 0) and px(image, 40, 33) == BLACK  # thickness 2
    assert px(image, 20, 30) == (0, 0, 255) and px(image, 60, 34) == (0, 0, 255)  # blue keypoints, radius 4
    assert px(image, 60, 35) == BLACK
    assert px(image, 100, 70) == (255, 255, 255) and px(image, 103, 70) == (255, 255, 255)  # white, radius 3
    assert px(image, 104, 70) == BLACK
    assert colours(image) == {BLACK, (255, 77, 0), (0, 0, 255), (255, 255, 255)}


def test_tiny_canvas_still_shows_limbs() -> None:
    frame = PoseFrame([PersonKeypoints(body_with({"neck": (384, 256), "r_shoulder": (128, 256)}))], 512, 512)
    image = render_pose(frame, size=(64, 64))
    assert px(image, 32, 32) == (153, 0, 0)  # limb middle at 1/8 scale
    assert px(image, 32, 33) == (153, 0, 0) and px(image, 32, 34) == BLACK  # 1 px semi-axis -> 3 px wide
    assert px(image, 48, 32) == (255, 85, 0) and px(image, 16, 32) == (255, 170, 0)


def test_dropping_parts_removes_exactly_their_pixels() -> None:
    frame = PoseFrame([standing_person()], 256, 256)
    full = render_pose(frame)
    body, hands, face = (render_pose(frame, parts=(part,)) for part in PARTS)
    hand_px, face_px = hands.any(axis=2, keepdims=True), face.any(axis=2, keepdims=True)
    assert hand_px.sum() > 100 and face_px.sum() > 100 and body.any()
    # Drawing order body -> hands -> faces: each later layer overwrites the earlier ones where it has pixels.
    np.testing.assert_array_equal(full, np.where(face_px, face, np.where(hand_px, hands, body)))
    np.testing.assert_array_equal(render_pose(frame, parts=("body", "face")), np.where(face_px, face, body))
    np.testing.assert_array_equal(render_pose(frame, parts=("body", "hands")), np.where(hand_px, hands, body))
    np.testing.assert_array_equal(render_pose(frame, parts="body"), body)
    assert not render_pose(frame, parts=()).any()
    with pytest.raises(ValueError, match="unknown pose parts"):
        render_pose(frame, parts=("body", "feet"))


def test_missing_keypoints_draw_no_limb() -> None:
    person = standing_person()
    person.left_hand = person.right_hand = person.face = None
    full = render_pose(PoseFrame([person], 256, 256))
    person.body[J["r_elbow"], 2] = 0.0  # shoulder->elbow (limb 2) and elbow->wrist (limb 3) must vanish
    missing = render_pose(PoseFrame([person], 256, 256))
    limb2, limb3, elbow = (153, 102, 0), (153, 153, 0), (255, 255, 0)
    assert {limb2, limb3, elbow} <= colours(full)
    assert not {limb2, limb3, elbow} & colours(missing)
    assert colours(full) - colours(missing) == {limb2, limb3, elbow}
    # A low but positive confidence is drawn; the threshold is a strict "greater than".
    person.body[J["r_elbow"], 2] = 0.05
    assert elbow in colours(render_pose(PoseFrame([person], 256, 256)))
    assert elbow not in colours(render_pose(PoseFrame([person], 256, 256), threshold=0.05))


def test_render_size_scales_positions() -> None:
    frame = PoseFrame([PersonKeypoints(body_with({"nose": (25, 10), "r_eye": (75, 40)}))], 100, 50)
    image = render_pose(frame, size=(200, 100))
    assert image.shape == (100, 200, 3)
    assert px(image, 50, 20) == (255, 0, 0)  # nose, scaled x2
    assert px(image, 150, 80) == (170, 0, 255)  # right eye (joint 14)
    assert px(image, 25, 10) == BLACK
    np.testing.assert_array_equal(image, render_pose(frame.resized(200, 100)))


def test_several_people_and_speed() -> None:
    rng = np.random.default_rng(1)
    one = standing_person(rng)
    two = one.transformed((1.0, 1.0), (60.0, 10.0))
    frame = PoseFrame([one, two], 256, 256).resized(512, 512)
    image = render_pose(frame, parts=("body",))  # (the face would cover the nose)
    alone = render_pose(PoseFrame([one], 256, 256).resized(512, 512), parts=("body",))
    assert px(image, 376, 120) == (255, 0, 0) and px(alone, 376, 120) == BLACK  # the second person's nose
    assert np.count_nonzero(image) > np.count_nonzero(alone)
    single = PoseFrame([standing_person()], 256, 256).resized(512, 512)
    render_pose(single)
    start = time.perf_counter()
    for _ in range(20):
        render_pose(single)
    # ~1 ms on a laptop core; the bound only catches an accidental per-pixel Python loop.
    assert (time.perf_counter() - start) / 20 < 0.05


def test_keypoint_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="body keypoints"):
        PersonKeypoints(np.zeros((17, 3)))
    with pytest.raises(ValueError, match="face keypoints"):
        PersonKeypoints(np.zeros((18, 3)), face=np.zeros((69, 3)))
    assert PersonKeypoints(np.zeros((18, 3)), face=np.zeros((68, 3))).face.shape == (68, 3)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="frame size"):
        PoseFrame([], 0, 10)


# ----------------------------------------------------------------------------------------------------------
# JSON
# ----------------------------------------------------------------------------------------------------------


def test_json_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    first = standing_person(rng)
    second = PersonKeypoints(
        np.concatenate([rng.uniform(0, 300, (18, 2)), rng.uniform(0, 1, (18, 1))], axis=1),
        face=np.concatenate([rng.uniform(0, 300, (68, 2)), np.ones((68, 1))], axis=1),  # 68-point face
    )
    frame = PoseFrame([first, second], 604, 1080)
    path = tmp_path / "sub" / "000001_keypoints.json"
    write_keypoints_json(path, frame)

    raw = json.loads(path.read_text())
    assert raw["version"] == 1.3 and (raw["canvas_width"], raw["canvas_height"]) == (604, 1080)
    people = raw["people"]
    assert len(people[0]["pose_keypoints_2d"]) == 54 and len(people[0]["face_keypoints_2d"]) == 210
    assert people[1]["hand_left_keypoints_2d"] == [] == people[1]["hand_right_keypoints_2d"]

    back = read_keypoints_json(path)
    assert (back.width, back.height, len(back.people)) == (604, 1080, 2)
    for got, want in zip(back.people, frame.people):
        for part in ("body", "left_hand", "right_hand", "face"):
            a, b = getattr(got, part), getattr(want, part)
            assert (a is None) == (b is None)
            if a is not None:
                assert a.dtype == np.float32
                np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(render_pose(back), render_pose(frame))


def test_json_without_canvas_and_body25(tmp_path: Path) -> None:
    body25 = np.zeros((25, 3))
    body25[8] = (50, 60, 1)  # MidHip: not a COCO-18 joint
    body25[9] = (40, 60, 0.8)  # RHip -> COCO index 8
    path = tmp_path / "openpose.json"
    path.write_text(json.dumps({"version": 1.3, "people": [{"pose_keypoints_2d": body25.ravel().tolist()}]}))
    with pytest.raises(UserError, match="canvas_width"):
        read_keypoints_json(path)
    frame = read_keypoints_json(path, width=320, height=240)
    assert (frame.width, frame.height) == (320, 240)
    person = frame.people[0]
    assert person.left_hand is None and person.face is None
    np.testing.assert_allclose(person.body[J["r_hip"]], (40, 60, 0.8))
    assert np.count_nonzero(person.body[:, 2]) == 1


CANVAS = '"canvas_width": 8, "canvas_height": 8'


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('{"people": {}}', "'people' list"),
        ("[1, 2]", "'people' list"),
        ('{"people": [3], ' + CANVAS + "}", "not a JSON object"),
        ('{"people": [{"pose_keypoints_2d": [1, 2, 3]}], ' + CANVAS + "}", "has 3 values"),
        ('{"people": [{"face_keypoints_2d": ["a", 2, 3]}], ' + CANVAS + "}", "numbers"),
        ('{"people": [{"hand_left_keypoints_2d": [NaN' + ", 1" * 62 + "]}], " + CANVAS + "}", "NaN"),
        ('{"people": [], "canvas_width": -4, "canvas_height": 8}', "positive integer"),
    ],
)
def test_malformed_json_is_a_user_error(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UserError, match=problem) as info:
        read_keypoints_json(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_missing_json_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read"):
        read_keypoints_json(tmp_path / "nope.json")
