"""The flicker error (magicpose.eval.temporal) in closed form, in `magicpose evaluate` and in the toy metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from magicpose.cli import main
from magicpose.eval import temporal
from magicpose.eval.metrics import l1
from magicpose.eval.protocol import EvalOptions, evaluate
from magicpose.toy import metrics as toy


def _video(values: list[int], size: int = 4) -> np.ndarray:
    """T H W 3 uint8 frames, frame t filled with values[t]."""
    return np.stack([np.full((size, size, 3), v, np.uint8) for v in values])


def test_identical_videos_have_no_flicker():
    frames = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    terms = temporal.video_terms(frames, frames)
    assert terms[0] == 0.0 and terms[1] == terms[2] > 0.1  # random frames change a lot, the same on both sides


def test_alternating_prediction_against_a_slow_ground_truth():
    gt = _video([100, 110, 120, 130])  # d_gt = +10 every pair
    pred = _video([100, 150, 100, 150])  # d_pred = +50, -50, +50
    flicker, energy_pred, energy_gt = temporal.video_terms(pred, gt)
    assert flicker == pytest.approx((40 + 60 + 40) / 3 / 255)
    assert energy_pred == pytest.approx(50 / 255) and energy_gt == pytest.approx(10 / 255)
    assert temporal.pool_videos([temporal.video_terms(pred, gt)]).energy_ratio == pytest.approx(5.0)
    # against a static ground truth the flicker is the prediction's own change, and the ratio is undefined
    static = temporal.pool_videos([temporal.video_terms(pred, _video([100] * 4))])
    assert static.flicker == pytest.approx(50 / 255) and static.energy_ratio is None
    assert temporal.pool_videos([temporal.video_terms(_video([100] * 4), gt)]).energy_ratio == 0.0  # frozen


def test_a_constant_shift_does_not_flicker_but_has_l1():
    gt = np.random.default_rng(1).integers(0, 200, (4, 8, 8, 3), dtype=np.uint8)
    pred = gt + np.uint8(20)
    assert temporal.video_terms(pred, gt)[0] == pytest.approx(0.0, abs=1e-12)
    assert l1(pred[0], gt[0]) == pytest.approx(20 / 255)


def test_mask_split_figure_and_background():
    gt = _video([0, 0])
    gt[1, :, :2] = 60  # the person (columns 0-1) changes by 60, the background is static
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :, 0], masks[1, :, 1] = True, True  # it moves one column: the pair's figure is columns 0-1
    pred = gt.copy()
    pred[1, 0, 3] = 80  # one background pixel of 8 changes by 80 in every channel
    by_region = {r: temporal.video_terms(pred, gt, masks=masks, region=r) for r in temporal.REGIONS}
    assert by_region["figure"][0] == 0.0 and by_region["figure"][2] == pytest.approx(60 / 255)
    assert by_region["background"][0] == pytest.approx(80 / 255 / 8) and by_region["background"][2] == 0.0
    assert by_region["frame"][0] == pytest.approx(80 / 255 / 16)
    # a pair whose region is empty is left out: a person filling the frame leaves no background
    assert temporal.video_terms(pred, gt, masks=np.ones_like(masks), region="background") is None
    with pytest.raises(ValueError, match="masks"):
        temporal.video_terms(pred, gt, region="figure")


def test_pooling_is_a_mean_over_videos_not_pairs():
    short = temporal.video_terms(_video([0, 51]), _video([0, 0]))  # 1 pair, flicker 0.2
    long = temporal.video_terms(_video([0] * 4), _video([0] * 4))  # 3 pairs, flicker 0
    pooled = temporal.pool_videos([short, long, temporal.video_terms(_video([7]), _video([7]))])  # 1 frame: no pair
    assert pooled.flicker == pytest.approx(0.1) and pooled.videos == 2
    assert np.isnan(temporal.pool_videos([None]).flicker)


def _write(root, video: str, frames: np.ndarray, stems: list[str]) -> None:
    (root / video).mkdir(parents=True)
    for frame, stem in zip(frames, stems):
        Image.fromarray(frame).save(root / video / f"{stem}.png")


def test_evaluate_reports_flicker_under_both_protocols(tmp_path, capsys):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    _write(pred, "a", _video([100, 150, 100], 8), ["0000", "0001", "0002"])
    _write(gt, "a", _video([100, 110, 120], 8), ["0000", "0001", "0002"])
    # video b misses frame 1: the gap breaks the pair (0, 2), so b has one pair, (2, 3)
    _write(pred, "b", _video([0, 99, 51], 8), ["0000", "0002", "0003"])
    _write(gt, "b", _video([0, 0, 0], 8), ["0000", "0002", "0003"])
    record = evaluate(pred, gt, EvalOptions(metrics=("l1", "flicker"), size=8, progress=False))
    video_a = (40 + 60) / 2 / 255
    video_b = 48 / 255
    for protocol in ("disco", "fixed"):
        values = record["metrics"][protocol]
        assert list(values) == ["l1", "flicker", "flicker_energy_pred", "flicker_energy_gt", "flicker_energy_ratio"]
        assert values["flicker"] == pytest.approx((video_a + video_b) / 2)
        assert values["flicker_energy_gt"] == pytest.approx((10 / 255 + 0) / 2)
        assert values["flicker_energy_ratio"] == pytest.approx(values["flicker_energy_pred"] / values["flicker_energy_gt"])
    assert record["counts"]["frame_pairs"] == 3 and record["skipped"] == {}
    assert "ours, not DisCo's" in record["settings"]["flicker"]
    # the command: on by default (no weights needed), a table row, the JSON
    out = tmp_path / "m.json"
    code = main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--out", str(out), "--size", "8", "--no-progress",
                 "--weights-dir", str(tmp_path / "none"), "--metrics", "psnr", "flicker"])  # fmt: skip
    assert code == 0 and "flicker_energy_ratio" in capsys.readouterr().out
    assert json.loads(out.read_text())["metrics"]["fixed"]["flicker"] == pytest.approx((video_a + video_b) / 2)


def test_evaluate_default_includes_flicker_and_skips_it_without_pairs(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    _write(pred, "a", _video([0, 9], 8), ["0000", "0005"])  # no two consecutive frame numbers
    _write(gt, "a", _video([0, 9], 8), ["0000", "0005"])
    options = EvalOptions(size=8, progress=False, weights_dir=tmp_path / "none")
    record = evaluate(pred, gt, options)
    assert "flicker" in record["options"]["metrics"] and record["counts"]["frame_pairs"] == 0
    assert "two consecutive frames" in record["skipped"]["flicker"]
    assert "flicker" not in record["metrics"]["fixed"]
    unrequested = evaluate(pred, gt, EvalOptions(metrics=("l1",), size=8, progress=False))
    assert "frame_pairs" not in unrequested["counts"] and unrequested["settings"]["flicker"].startswith("not computed")


def test_toy_flicker_for_every_method():
    target = np.zeros((3, 8, 8, 3), np.uint8)  # SSIM needs 7x7
    masks = np.zeros((3, 8, 8), bool)
    for t in range(3):
        masks[t, :, t : t + 2] = True  # a figure moving one column a frame over a static background
    target[masks] = (200, 30, 30)
    wrong = target.copy()
    wrong[1, ~masks[1]] = 51  # the background flashes in the middle frame
    video = {"target": target, "target_mask": masks, "reference": target[0], "reference_mask": masks[0],
             "background": np.zeros((8, 8, 3), np.uint8), "generated": target, "wrong_generated": wrong,
             "wrong_background": np.zeros((8, 8, 3), np.uint8)}  # fmt: skip
    result = toy.evaluate_toy([video])
    flicker = result["flicker"]
    assert set(flicker) == {"generated", "copy_reference", "wrong_reference"}
    assert all(flicker["generated"][r]["flicker"] == 0.0 for r in ("frame", "figure", "background"))
    static = flicker["copy_reference"]["figure"]
    assert static["energy_pred"] == 0.0 and static["energy_gt"] > 0
    assert static["flicker"] == pytest.approx(static["energy_gt"])
    assert static["energy_ratio"] == 0.0 and flicker["copy_reference"]["background"]["energy_ratio"] is None
    # wrong: background flashes 0 -> 51 -> 0 on the 5 columns that are background in both frames of each pair
    assert flicker["wrong_reference"]["background"]["flicker"] == pytest.approx(0.2)
    assert flicker["wrong_reference"]["figure"]["flicker"] == pytest.approx(0.2 / 3)  # 1 flashing column of 3
    assert result["generated"]["l1"] == 0.0 and tuple(result["generated"]) == toy.METRICS  # the rest unchanged
