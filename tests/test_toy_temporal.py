"""The toy world's stage 2 vs stage 3 comparison: paired flicker gains and the temporal check."""

from __future__ import annotations

import numpy as np

from magicpose.toy.temporal import compare_stages, temporal_check, temporal_table, write_side_by_side


def _videos(jitter: float, seed: int = 0, n: int = 4, frames: int = 6, size: int = 16) -> list[dict]:
    """A static grey background with a white square moving right; generated = truth + per-frame background jitter."""
    rng = np.random.default_rng(seed)
    videos = []
    for _ in range(n):
        target = np.full((frames, size, size, 3), 100, np.uint8)
        mask = np.zeros((frames, size, size), bool)
        for t in range(frames):
            mask[t, 4:10, t:t + 6] = True
        target[mask] = 250
        noise = rng.normal(0, jitter, (frames, 1, 1, 3)) * ~mask[..., None]
        generated = np.clip(target + noise, 0, 255).astype(np.uint8)
        videos.append({"target": target, "target_mask": mask, "generated": generated, "pose": target,
                       "reference": target[0], "background": np.full((size, size, 3), 100, np.uint8)})
    return videos


def test_steadier_background_is_a_flicker_gain_with_no_loss_elsewhere(tmp_path):
    comparison = compare_stages(_videos(jitter=6.0), _videos(jitter=1.0))
    gain = comparison["gain"]
    assert gain["flicker_frame"]["mean"] > 0 and gain["flicker_background"]["mean"] > 0
    assert comparison["stage3"]["flicker_background"] < comparison["stage2"]["flicker_background"]
    assert gain["flicker_frame"]["n"] == 4 * 5  # every pair of consecutive frames of every video
    check = temporal_check(comparison)
    assert check["steadier"] and check["passed"], check
    assert "flicker_frame" in temporal_table(comparison)
    write_side_by_side(tmp_path / "t.mp4", _videos(6.0), _videos(1.0), enlarge=2)
    assert (tmp_path / "t.mp4").stat().st_size > 0


def test_the_same_videos_pass_no_check_and_worse_ones_fail():
    same = compare_stages(_videos(jitter=3.0), _videos(jitter=3.0))
    assert same["gain"]["flicker_frame"]["mean"] == 0 and not temporal_check(same)["passed"]
    worse = compare_stages(_videos(jitter=1.0), _videos(jitter=6.0, seed=1))
    assert worse["gain"]["flicker_frame"]["mean"] < 0 and not temporal_check(worse)["steadier"]
