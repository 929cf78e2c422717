"""The mmpose-style (Follow-Your-Pose) skeleton renderer against hand-computed pixels."""

from __future__ import annotations

import numpy as np
import pytest

from magicpose.pose.mmpose import (
    COCO17_KEYPOINTS,
    coco18_to_coco17,
    default_line_width,
    render_coco17,
    render_mmpose,
)
from magicpose.pose.openpose import BODY_KEYPOINTS, PersonKeypoints, PoseFrame

ORANGE, GREEN, BLUE, BLACK = (255, 153, 51), (0, 255, 0), (0, 128, 255), (0, 0, 0)
INDEX = {name: i for i, name in enumerate(COCO17_KEYPOINTS)}

# The documented palette, written out link by link (mmpose's COCO skeleton; "left" = the person's left).
EXPECTED_COLOURS = {
    ("left_ankle", "left_knee"): GREEN, ("left_knee", "left_hip"): GREEN,
    ("right_ankle", "right_knee"): BLUE, ("right_knee", "right_hip"): BLUE,
    ("left_hip", "right_hip"): ORANGE, ("left_shoulder", "left_hip"): ORANGE,
    ("right_shoulder", "right_hip"): ORANGE, ("left_shoulder", "right_shoulder"): ORANGE,
    ("left_shoulder", "left_elbow"): GREEN, ("left_elbow", "left_wrist"): GREEN,
    ("right_shoulder", "right_elbow"): BLUE, ("right_elbow", "right_wrist"): BLUE,
    ("left_eye", "right_eye"): ORANGE, ("nose", "left_eye"): ORANGE, ("nose", "right_eye"): ORANGE,
    ("left_eye", "left_ear"): ORANGE, ("right_eye", "right_ear"): ORANGE,
    ("left_ear", "left_shoulder"): ORANGE, ("right_ear", "right_shoulder"): ORANGE,
}  # fmt: skip


def two_points(a: str, b: str, start: tuple[float, float], end: tuple[float, float],
               conf: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """COCO-17 keypoints with only `a` at `start` and `b` at `end` detected."""
    points = np.zeros((17, 3))
    points[INDEX[a]] = (*start, conf[0])
    points[INDEX[b]] = (*end, conf[1])
    return points


def colours(image: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(int(v) for v in c) for c in np.unique(image.reshape(-1, 3), axis=0)}


def test_one_pixel_limb_on_100px_canvas():
    assert default_line_width(100, 100) == 1
    image = render_coco17([two_points("left_shoulder", "left_elbow", (20, 50), (80, 50))], 100, 100)
    assert image.shape == (100, 100, 3) and image.dtype == np.uint8
    for x in (20, 21, 50, 79, 80):  # the whole centre line, ends included
        assert tuple(image[50, x]) == GREEN, x
    for y, x in ((50, 19), (50, 81), (49, 50), (51, 50), (10, 10), (90, 90)):
        assert tuple(image[y, x]) == BLACK, (y, x)
    assert int(image.any(-1).sum()) == 61  # exactly the 61 pixels of the segment, no joint dots
    assert colours(image) == {BLACK, GREEN}


def test_five_pixel_limb_width_and_round_ends():
    assert default_line_width(512, 512) == 5 and default_line_width(500, 300) == 3
    image = render_coco17([two_points("right_knee", "right_ankle", (250, 100), (250, 300))], 500, 500)
    assert default_line_width(500, 500) == 5
    painted = np.flatnonzero(image[200].any(-1))
    assert painted.tolist() == [248, 249, 250, 251, 252]  # 5 px across: centres within 2.5 px of x = 250
    assert (image[200, 248:253] == BLUE).all()
    # Round end: (250, 98) is 2 px beyond the end (painted), (250, 97) 3 px (not), (252, 98) 2.83 px (not).
    assert tuple(image[98, 250]) == BLUE and tuple(image[97, 250]) == BLACK and tuple(image[98, 252]) == BLACK
    assert int(image.any(-1).sum()) == 5 * 201 + 2 * 8  # the band plus two 8-pixel caps (|d| <= 2.5)


def test_thin_line_between_pixel_rows_has_no_gaps():
    image = render_coco17([two_points("left_hip", "right_hip", (20.0, 50.5), (80.0, 50.5))], 100, 100)
    assert (image[50, 20:81] == ORANGE).all() and (image[51, 20:81] == ORANGE).all()
    assert not image[49].any() and not image[52].any()


def test_explicit_width_and_points_off_the_canvas():
    image = render_coco17([two_points("nose", "left_eye", (10, 10), (10, 40))], 64, 64, line_width=3)
    assert np.flatnonzero(image[25].any(-1)).tolist() == [9, 10, 11]
    off = render_coco17([two_points("nose", "left_eye", (10, 10), (10, 64))], 64, 64)
    assert not off.any()  # mmpose skips a link whose point lies off the image
    with pytest.raises(ValueError, match="at least 1 px"):
        render_coco17([two_points("nose", "left_eye", (10, 10), (10, 40))], 64, 64, line_width=0)


def test_low_confidence_limbs_are_skipped():
    def render(conf, **kwargs):
        return render_coco17([two_points("left_hip", "right_hip", (20, 50), (80, 50), conf)], 100, 100, **kwargs)

    assert not render((1.0, 0.3)).any()  # default threshold 0.3: a point must score above it
    assert tuple(render((1.0, 0.31))[50, 50]) == ORANGE
    assert not render((0.9, 0.6), threshold=0.6).any()
    assert tuple(render((0.0, 0.0), threshold=-1.0)[50, 50]) == ORANGE
    nan = two_points("left_hip", "right_hip", (20, 50), (float("nan"), 50))
    assert not render_coco17([nan], 100, 100).any()


@pytest.mark.parametrize(("link", "colour"), sorted(EXPECTED_COLOURS.items()))
def test_palette_per_limb(link, colour):
    image = render_coco17([two_points(*link, (30, 40), (70, 60))], 100, 100)
    assert colours(image) == {BLACK, colour}
    assert tuple(image[50, 50]) == colour  # the segment's midpoint


def test_later_links_paint_over_earlier_ones():
    # mmpose's order: legs, then torso. The hip-hip link (orange) and the left thigh (green) share the left hip.
    points = two_points("left_knee", "left_hip", (50, 20), (50, 80))
    points[INDEX["right_hip"]] = (20, 50, 1.0)
    image = render_coco17([points], 100, 100, line_width=5)
    assert tuple(image[50, 50]) == GREEN  # on the thigh only
    assert tuple(image[80, 50]) == ORANGE  # the shared end point: the torso link is painted last


def test_a_dancer_facing_the_camera_has_green_on_the_image_right():
    from magicpose.pose.examples import dance_keypoints

    image = render_mmpose(dance_keypoints("jumping_jacks", 4, 256, period=8)[2])
    assert colours(image) == {BLACK, GREEN, BLUE, ORANGE}
    xs = {c: np.nonzero((image == c).all(-1))[1].mean() for c in (GREEN, BLUE, ORANGE)}
    assert xs[BLUE] < xs[ORANGE] < xs[GREEN]  # the person's right (blue) on the image left


def test_coco18_to_coco17_matches_names():
    body = np.zeros((18, 3), np.float32)
    body[:, 0] = np.arange(18)
    body[:, 2] = 1.0
    coco17 = coco18_to_coco17(body)
    for k, name in enumerate(COCO17_KEYPOINTS):
        openpose_name = name.replace("left_", "l_").replace("right_", "r_")
        assert coco17[k, 0] == BODY_KEYPOINTS.index(openpose_name), name
    assert 1 not in coco17[:, 0]  # the neck has no COCO-17 twin
    with pytest.raises(ValueError, match=r"\(18, 3\)"):
        coco18_to_coco17(np.zeros((17, 3)))


def test_render_mmpose_from_openpose_keypoints():
    body = np.zeros((18, 3), np.float32)
    body[BODY_KEYPOINTS.index("r_shoulder")] = (10, 10, 1.0)  # the person's right: image left
    body[BODY_KEYPOINTS.index("r_elbow")] = (10, 40, 1.0)
    body[BODY_KEYPOINTS.index("l_shoulder")] = (40, 10, 1.0)
    body[BODY_KEYPOINTS.index("l_elbow")] = (40, 40, 0.1)  # below the threshold: no left upper arm
    body[BODY_KEYPOINTS.index("neck")] = (25, 10, 1.0)  # COCO-17 has no neck: never drawn
    frame = PoseFrame([PersonKeypoints(body)], 50, 50)
    small = render_mmpose(frame)
    assert tuple(small[25, 10]) == BLUE and tuple(small[10, 25]) == ORANGE and not small[25, 40].any()
    large = render_mmpose(frame, size=(100, 100))
    assert tuple(large[50, 20]) == BLUE and tuple(large[20, 50]) == ORANGE and not large[50, 80].any()
    np.testing.assert_array_equal(large, render_mmpose(frame.resized(100, 100)))
    assert colours(render_mmpose(PoseFrame([], 50, 50))) == {BLACK}
