"""The quickstart's whole path (toy data -> stage 1 -> stage 2 -> animate -> evaluate), shortened for CI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import REPO


def test_fast_quickstart_writes_every_output(tmp_path):
    """The whole path, stage 3 included (QUICKSTART_TEMPORAL=1) and the model exported as a shipped toy model
    (--export), then stage 3 alone and the retargeting proof alone on the finished folder, and --pretrained on the
    exported model."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "QUICKSTART_FAST": "1", "QUICKSTART_TEMPORAL": "1"}
    res = subprocess.run([sys.executable, "-m", "magicpose", "quickstart", "--out", str(tmp_path / "qs"), "--export",
                          str(tmp_path / "toy"), "--eval-every", "3"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "appearance branch off" in res.stdout and (tmp_path / "toy" / "SHA256SUMS").is_file()
    exported = json.loads((tmp_path / "toy" / "metrics.json").read_text())
    assert [row["step"] for row in exported["curve"]] == [3, 6]  # the held-out curve (FAST: 6 stage-2 steps)
    for name in ("animation.mp4", "grid.mp4", "metrics.json", "temporal.mp4"):
        assert (tmp_path / "qs" / name).is_file(), name
    metrics = json.loads((tmp_path / "qs" / "metrics.json").read_text())
    assert "mask_iou" in json.dumps(metrics)
    temporal = metrics["temporal"]
    assert {"stage2", "stage3", "gain"} <= set(temporal["per_frame_noise"]["comparison"]) and "passed" in temporal["check"]
    assert "shared_noise" in temporal
    assert "stage 2 (per frame) vs stage 3" in res.stdout
    env.pop("QUICKSTART_TEMPORAL")
    res = subprocess.run([sys.executable, "-m", "magicpose", "quickstart", "--out", str(tmp_path / "qs"),
                          "--temporal-only", "--stage3-steps", "2"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((tmp_path / "qs" / "metrics.json").read_text())["temporal"]["stage3_steps"] == 2
    # the retargeting proof alone on the finished folder (no check under --fast: a 6-step model proves nothing)
    res = subprocess.run([sys.executable, "-m", "magicpose", "quickstart", "--out", str(tmp_path / "qs"),
                          "--retarget-only"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((tmp_path / "qs" / "metrics.json").read_text())
    assert metrics["retarget"]["frames"] == 6 and "passed" in metrics["retarget"]["check"]  # 2 pairs x 3 frames
    assert metrics["temporal"]["stage3_steps"] == 2  # kept
    assert (tmp_path / "qs" / "retarget.mp4").is_file() and "retargeted onto A" in res.stdout
    # the exported model without training: the same numbers on freshly generated held-out dancers
    import torch

    from magicpose.cli import main  # in this process: the CLI path without another interpreter start-up

    threads = torch.get_num_threads()  # --pretrained sets 2, as the export ran; the suite's setting is restored after
    try:
        assert main(["quickstart", "--pretrained", str(tmp_path / "toy"), "--out", str(tmp_path / "pre")]) == 0
    finally:
        torch.set_num_threads(threads)
    again = json.loads((tmp_path / "pre" / "metrics.json").read_text())
    assert again["max_difference_from_shipped_metrics"] < 1e-6
    assert again["metrics"]["generated"] == pytest.approx(exported["metrics"]["generated"], abs=1e-6)
    assert set(again["ablations"]) == set(exported["ablations"]) and "pose" in again["targets"]
    assert (tmp_path / "pre" / "grid.mp4").is_file() and (tmp_path / "pre" / "grid.png").is_file()
    assert not (tmp_path / "pre" / "runs").exists()  # nothing trained


def test_quickstart_help_lists_the_flags():
    res = subprocess.run([sys.executable, "-m", "magicpose", "quickstart", "--help"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    for flag in ("--out", "--fast", "--no-check", "--min-iou-gain-se", "--max-colour-ratio", "--stage2-steps",
                 "--guidance-scale", "--seed", "learning check", "--temporal", "--temporal-only", "--stage3-steps",
                 "--retarget-only", "--pretrained", "--toy-model", "--export"):
        assert flag in res.stdout, flag
