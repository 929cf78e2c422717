"""The toy retargeting proof (`magicpose.toy.retarget_proof`): its inputs, its metrics and a fast smoke run."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from magicpose.toy import generate_toy_dataset
from magicpose.toy.quickstart import FAST
from magicpose.toy.retarget_proof import (
    PAIR_METRICS,
    extent_error,
    frame_rows,
    pair_inputs,
    retarget_proof,
    retarget_table,
)

REPO = Path(__file__).resolve().parents[1]
SIZE = 32


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy") / "data"
    generate_toy_dataset(root, videos=1, test_videos=3, frames=12, size=SIZE, seed=0)
    return root


def test_extent_error():
    a = np.zeros((8, 8), bool)
    a[2:5, 3:6] = True
    b = np.zeros((8, 8), bool)
    b[3:6, 3:6] = True
    assert extent_error(a, a) == 0.0
    assert extent_error(a, b) == pytest.approx(0.5)  # top and bottom 1 px off
    assert extent_error(np.zeros((8, 8), bool), b) == 8.0


def test_pair_inputs_match_the_dataset_and_the_ground_truth(data):
    from PIL import Image

    pair = pair_inputs(data, "video_0001", "video_0002", frames=3, stride=3)
    reference = np.asarray(Image.open(data / "test_set" / "video_0001" / "0000.png").convert("RGB"))
    np.testing.assert_array_equal(pair["reference"], reference)
    # the raw input is B's pose maps, as the dataset drew them
    for t, index in enumerate((3, 6, 9)):
        path = data / "pose_map_test_set" / "video_0002" / f"{index:04d}.png"
        stored = np.asarray(Image.open(path).convert("RGB"))
        np.testing.assert_array_equal(pair["raw_pose"][t], stored)
    assert pair["target"].shape == (3, SIZE, SIZE, 3) and pair["target_mask"].any(axis=(1, 2)).all()
    # the retargeted keypoints are much nearer the truth of A doing B than B's raw ones
    rows = {kind: frame_rows(pair, kind, pair["target"]) for kind in ("raw", "retargeted")}
    raw = np.mean([r["keypoint_error"] for r in rows["raw"]])
    moved = np.mean([r["keypoint_error"] for r in rows["retargeted"]])
    assert moved < raw
    assert all(r["mask_iou"] > 0.9 for r in rows["raw"])  # the true frames, generated perfectly


def test_retarget_proof_smoke_on_a_random_tiny_pipeline(data, tmp_path):
    from magicpose.models.components import ModelSpec
    from magicpose.pipelines.magicpose import MagicPosePipeline
    from magicpose.toy.quickstart import FULL, model_configs

    components = model_configs(tmp_path / "model", FULL)  # widths 16, 32, 64
    tokenizer = str(REPO / "configs/models/sd15/tokenizer")
    pipe = MagicPosePipeline.from_spec(
        ModelSpec(components=components, pretrained=None, pixel_space=True, paths={"tokenizer": tokenizer})
    )
    pipe.set_progress_bar_config(disable=True)
    scale = replace(FAST, size=SIZE, eval_videos=2, eval_frames=2, eval_stride=4, sampler_steps=1)
    record = retarget_proof(pipe, data, scale, tmp_path)
    assert record["pairs"] == [["video_0001", "video_0002"], ["video_0002", "video_0001"]]
    assert record["frames"] == 4
    for m in PAIR_METRICS:
        g = record["gain"][m]
        assert set(g) == {"mean", "stderr", "standard_errors", "wins"}
        assert np.isfinite(g["mean"]) and g["stderr"] >= 0
    assert set(record["check"]) == {"min_se", "mask_iou", "keypoint_error", "passed"}
    assert (tmp_path / "retarget.mp4").stat().st_size > 0
    json.dumps(record)  # JSON-able, for metrics.json
    assert "keypoint_error" in retarget_table(record)
