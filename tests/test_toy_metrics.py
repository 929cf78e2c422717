"""Toy-world metrics (magicpose.toy.metrics): identities, a closed-form PSNR, and the figure-mask extractor."""

import math

import numpy as np
import pytest

from magicpose.toy import metrics


def _frame(seed: int = 0, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_identical_frames():
    a = _frame()
    assert metrics.l1(a, a) == 0.0
    assert metrics.psnr(a, a) == metrics.PSNR_CAP
    assert metrics.ssim(a, a) == pytest.approx(1.0, abs=1e-5)
    assert metrics.colour_histogram_distance(a, a) == 0.0
    mask = a[..., 0] > 127
    assert metrics.mask_iou(mask, mask) == 1.0


def test_known_perturbation():
    a = np.full((16, 16, 3), 100, np.uint8)
    b = a + np.uint8(10)  # every pixel off by 10/255
    assert metrics.l1(a, b) == pytest.approx(10 / 255)
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(1 / (10 / 255) ** 2))
    assert metrics.ssim(a, b) < 1.0


def test_mask_iou_and_histograms():
    a = np.zeros((4, 4), bool)
    b = a.copy()
    a[:2], b[1:3] = True, True  # 8 and 8 pixels sharing 4
    assert metrics.mask_iou(a, b) == pytest.approx(4 / 12)
    assert metrics.mask_iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0
    red, blue = np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.uint8)
    red[..., 0], blue[..., 2] = 255, 255
    assert metrics.colour_histogram_distance(red, blue) == 1.0


def test_colour_distance_is_a_per_channel_wasserstein_distance():
    a = _frame(1)
    assert metrics.colour_distance(a, a) == 0.0
    assert metrics.colour_distance(a, a[::-1, ::-1]) == pytest.approx(0.0, abs=1e-12)  # positions do not matter
    grey = np.full((8, 8, 3), 100, np.uint8)
    assert metrics.colour_distance(grey, grey + np.uint8(5)) == pytest.approx(5 / 255)  # small shift, small distance
    half = grey.copy()
    half[:4] = 200  # half the pixels moved by 100 levels
    assert metrics.colour_distance(grey, half) == pytest.approx(50 / 255)
    red, blue = np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.uint8)
    red[..., 0], blue[..., 2] = 255, 255
    assert metrics.colour_distance(red, blue) == pytest.approx(2 / 3)
    assert metrics.colour_distance(red, blue, np.zeros((4, 4), bool), np.ones((4, 4), bool)) == 1.0


def test_otsu_threshold_splits_two_modes_and_the_band_keeps_ground_truth_exact():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(20, 5, 700), rng.normal(120, 10, 300)])
    assert 40 < metrics.otsu_threshold(values) < 95
    background = np.full((16, 16, 3), 100, np.uint8)
    frame = background.copy()
    frame[4:12, 6:10] = (160, 100, 100)  # a figure exactly 60 away: inside the band, still figure
    frame[0, :] = (130, 100, 100)  # background 30 off (a generated frame's colour error): still background
    mask = metrics.figure_mask(frame, background)
    assert mask[4:12, 6:10].all() and mask.sum() == 32
    assert metrics.figure_mask(frame, background, threshold=20.0)[0].all()  # a fixed low threshold calls it figure


def test_figure_mask_on_ground_truth(tmp_path):
    from magicpose.toy import generate_toy_dataset

    generate_toy_dataset(tmp_path, videos=1, test_videos=2, frames=3, size=32, seed=0)
    from PIL import Image

    identities = metrics.toy_identities(tmp_path, "test")
    ious = []
    for video, identity in identities.items():
        background = metrics.toy_background(identity, 32)
        for stem in ("0000", "0002"):
            frame = np.asarray(Image.open(tmp_path / "test_set" / video / f"{stem}.png").convert("RGB"))
            true = (
                np.asarray(Image.open(tmp_path / "mask_test_set" / video / f"{stem}.png").convert("L")) > 127
            )
            ious.append(metrics.mask_iou(metrics.figure_mask(frame, background), true))
            # the background outside the mask is exact: the extractor never calls it figure
            assert not metrics.figure_mask(frame, background)[~true].any()
    assert min(ious) > 0.9


def test_evaluate_toy_perfect_generation_beats_baselines(tmp_path):
    size, t = 8, 3
    target = np.zeros((t, size, size, 3), np.uint8)
    masks = np.zeros((t, size, size), bool)
    for i in range(t):
        masks[i, :, i * 2 : i * 2 + 3] = True
    target[masks] = (200, 30, 30)
    background = np.zeros((size, size, 3), np.uint8)
    wrong = target.copy()
    wrong[~masks] = (0, 0, 255)
    video = {
        "target": target,
        "target_mask": masks,
        "reference": target[0],
        "reference_mask": masks[0],
        "background": background,
        "generated": target,
        "wrong_generated": wrong,
        "wrong_background": np.broadcast_to(np.uint8([0, 0, 255]), background.shape),
    }
    result = metrics.evaluate_toy([video])
    assert result["generated"]["mask_iou"] == 1.0 and result["generated"]["l1"] == 0.0
    assert result["copy_reference"]["mask_iou"] < 1.0
    assert result["wrong_reference"]["colour_hist"] > result["generated"]["colour_hist"]
    assert result["wrong_reference"]["colour_distance"] > result["generated"]["colour_distance"] == 0.0
    assert result["mask_extractor_iou"] == 1.0 and result["frames"] == t
    gain = result["mask_iou_gain"]
    assert gain["mean"] == pytest.approx(1.0 - result["copy_reference"]["mask_iou"]) and 0 < gain["wins"] <= 1
