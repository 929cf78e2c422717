"""The TikTok protocol's arithmetic (magicpose.eval.metrics / frechet / protocol): no networks, all closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from magicpose.errors import UserError
from magicpose.eval import metrics
from magicpose.eval.frechet import frechet_distance, frechet_distance_features
from magicpose.eval.protocol import clip_windows, pair_frames, scan_frames
from magicpose.toy import metrics as toy


def _frame(seed: int = 0, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("protocol", ["disco", "fixed"])
def test_identical_frames(protocol):
    a = _frame()
    assert metrics.l1(a, a, protocol) == 0.0
    assert metrics.psnr(a, a, protocol) == 100.0  # DisCo's value for MSE = 0; `fixed` caps there too
    assert metrics.ssim(a, a) == pytest.approx(1.0)


def test_known_perturbation_closed_form():
    h, w = 16, 24
    a = np.full((h, w, 3), 100, np.uint8)
    b = a + np.uint8(10)  # every channel of every pixel off by 10 grey levels; 10² < 256, so no wrap
    expected = 20 * math.log10(255 / 10)
    assert metrics.psnr(a, b, "fixed") == pytest.approx(expected)
    assert metrics.psnr(a, b, "disco") == pytest.approx(expected)
    # L1: `fixed` is a plain mean on [0, 1]; `disco` is the 0-255 mean divided by H*W (DisCo's quirk).
    assert metrics.l1(a, b, "fixed") == pytest.approx(10 / 255)
    assert metrics.l1(a, b, "disco") == pytest.approx(10 / (h * w))
    assert metrics.ssim(a, b) < 1.0


def test_disco_psnr_reproduces_uint8_overflow():
    a = np.zeros((8, 8, 3), np.uint8)
    # Every difference is 16: in uint8, (0 - 16) wraps to 240 and 240² wraps to 0 -> MSE 0 -> "100 dB".
    b = np.full_like(a, 16)
    assert metrics.psnr(a, b, "disco") == 100.0
    assert metrics.psnr(a, b, "fixed") == pytest.approx(20 * math.log10(255 / 16))  # 24.08 dB, the truth
    # Difference 20: 400 wraps to 144 = 12², so DisCo reports the PSNR of a 12-level error.
    c = np.full_like(a, 20)
    assert metrics.psnr(a, c, "disco") == pytest.approx(20 * math.log10(255 / 12))
    assert metrics.psnr(a, c, "fixed") == pytest.approx(20 * math.log10(255 / 20))
    # A large error the quirk hides: -120 wraps to 136, 136² = 18496 wraps to 64 -> MSE 64 -> 32 dB.
    d = np.full_like(a, 120)
    assert metrics.mse(a, d, "disco") == 64.0
    assert metrics.psnr(a, d, "disco") > 30 > 10 > metrics.psnr(a, d, "fixed")


def test_disco_psnr_is_not_capped_but_fixed_is():
    a = np.zeros((256, 256, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 1  # MSE = 1 / (3 * 256²): 101.1 dB
    assert metrics.psnr(a, b, "disco") == pytest.approx(20 * math.log10(255) + 10 * math.log10(3 * 256 * 256))
    assert metrics.psnr(a, b, "disco") > 100.0
    assert metrics.psnr(a, b, "fixed") == 100.0


def test_metrics_refuse_float_and_mismatched_frames():
    with pytest.raises(ValueError, match="uint8"):
        metrics.l1(np.zeros((4, 4, 3)), np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="shape"):
        metrics.psnr(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))


def test_protocol_switches():
    disco, fixed = metrics.PROTOCOLS["disco"], metrics.PROTOCOLS["fixed"]
    assert (disco.psnr_uint8_overflow, disco.l1_divide_by_hw, disco.lpips_normalize) == (True, True, False)
    assert (fixed.psnr_uint8_overflow, fixed.l1_divide_by_hw, fixed.lpips_normalize) == (False, False, True)
    assert disco.lpips_input_range == "[0, 1]" and fixed.lpips_input_range == "[-1, 1]"


def test_toy_metrics_come_from_the_protocol_module():
    a, b = _frame(1), _frame(2)
    assert toy.l1(a, b) == metrics.l1(a, b, "fixed")
    assert toy.psnr(a, b) == metrics.psnr(a, b, "fixed")
    assert toy.ssim(a, b) == metrics.ssim(a, b)
    clip_a, clip_b = np.stack([a, b]), np.stack([b, b])
    assert toy.ssim(clip_a, clip_b) == pytest.approx((metrics.ssim(a, b) + 1.0) / 2)


# ----- Fréchet distance -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["sqrtm", "fast"])
def test_frechet_distance_of_two_gaussians_matches_the_formula(method):
    rng = np.random.default_rng(0)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    # Covariances sharing eigenvectors: sqrt(S1 S2) = Q sqrt(l1 l2) Qᵀ, so
    # d² = |mu1 - mu2|² + Σ (sqrt(l1) - sqrt(l2))².
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    l1, l2 = rng.uniform(0.5, 3, d), rng.uniform(0.5, 3, d)
    s1, s2 = (q * l1) @ q.T, (q * l2) @ q.T
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(l1) - np.sqrt(l2)) ** 2)
    assert frechet_distance(mu1, s1, mu2, s2, method) == pytest.approx(expected, rel=1e-9)
    # One dimension: (m1 - m2)² + (s1 - s2)² with standard deviations s.
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]], method) == pytest.approx(4 + 1)


def test_frechet_methods_agree_on_general_covariances():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(200, 12)) @ rng.normal(size=(12, 12))
    b = rng.normal(size=(150, 12)) @ rng.normal(size=(12, 12)) + 0.5
    assert frechet_distance_features(a, b, "fast") == pytest.approx(frechet_distance_features(a, b, "sqrtm"), rel=1e-7)
    # Fewer samples than dimensions (FID on a small test set): the low-rank path of `fast`.
    c, e = rng.normal(size=(10, 40)), rng.normal(size=(12, 40)) * 1.5
    assert frechet_distance_features(c, e, "fast") == pytest.approx(frechet_distance_features(c, e, "sqrtm"), rel=1e-6)


@pytest.mark.parametrize("method", ["sqrtm", "fast"])
def test_frechet_distance_of_identical_sets_is_zero(method):
    feats = np.random.default_rng(2).normal(size=(30, 16))
    assert abs(frechet_distance_features(feats, feats, method)) < 1e-9
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance_features(feats[:1], feats[:1], method)


# ----- pairing and clips ------------------------------------------------------------------------------------


def test_clip_windows():
    stems = [f"{i:04d}" for i in range(20)]
    clips = clip_windows(stems, 16)
    assert len(clips) == 5 and clips[0] == list(range(16)) and clips[-1] == list(range(4, 20))  # stride 1
    assert len(clip_windows(stems, 16, stride=2)) == 3
    gap = stems[:10] + stems[11:]  # frame 10 missing: only windows that avoid the gap survive (DisCo's lookup)
    assert [c[0] for c in clip_windows(gap, 4)] == [0, 1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 14, 15]
    assert clip_windows(stems[:3], 16) == []  # DisCo: a short video gives no clip
    assert clip_windows(stems[:3], 5, pad_short=True) == [[0, 1, 2, 2, 2]]
    assert clip_windows(["a", "b", "c"], 2) == [[0, 1], [1, 2]]  # non-numeric stems: consecutive names


def _write(path, value: int, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)


def test_pairing_by_name_in_both_layouts(tmp_path):
    for stem in ("2", "10", "1"):
        _write(tmp_path / "pred" / "vid" / f"{stem}.png", 1)
        _write(tmp_path / "gt" / f"TiktokDance_vid_{stem}.png", 2)  # DisCo's flat names
    pred = scan_frames(tmp_path / "pred")
    assert list(pred) == ["vid"]
    gt = scan_frames(tmp_path / "gt")
    assert list(gt) == ["TiktokDance_vid"]
    _write(tmp_path / "gt2" / "vid" / "1.png", 2)
    _write(tmp_path / "gt2" / "vid" / "2.png", 2)
    _write(tmp_path / "gt2" / "vid" / "10.png", 2)
    pairing = pair_frames(tmp_path / "pred", tmp_path / "gt2")
    assert pairing.videos == {"vid": ["1", "2", "10"]}  # natural order


def test_unpaired_frames_are_named(tmp_path):
    _write(tmp_path / "pred" / "v" / "0001.png", 1)
    _write(tmp_path / "pred" / "v" / "0002.png", 1)
    _write(tmp_path / "gt" / "v" / "0001.png", 1)
    with pytest.raises(UserError, match=r"1 prediction frame\(s\) in .*pred have no partner \(v/0002\)"):
        pair_frames(tmp_path / "pred", tmp_path / "gt")
    pairing = pair_frames(tmp_path / "pred", tmp_path / "gt", ignore_unpaired=True)
    assert pairing.frames == 1 and pairing.unpaired_pred == 1
    with pytest.raises(UserError, match="no such folder"):
        pair_frames(tmp_path / "nope", tmp_path / "gt")
