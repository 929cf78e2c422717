"""`magicpose infer-tiktok` + `magicpose evaluate` end to end on a toy test split with the tiny model."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from PIL import Image

from magicpose.cli import main
from magicpose.eval.networks import WEIGHT_FILES, save_random_weights
from magicpose.eval.networks.weights import sha256_of

from .conftest import REPO, TINY_CONFIG

FRAMES = 3  # per video; shorter than a 16-frame clip, so the run pads (--pad-short-videos)
INFER = ["--split", "test_set", "--max-frames", str(FRAMES), "--size", "32", "--steps", "2", "--no-progress",
         "device=cpu"]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A toy dataset (2 test videos), one infer-tiktok run on it, and random evaluation weights."""
    from magicpose.toy import generate_toy_dataset

    root = tmp_path_factory.mktemp("eval_e2e")
    generate_toy_dataset(root / "data", videos=1, test_videos=2, frames=FRAMES + 1, size=48, seed=0)
    out = root / "out"
    assert main(["infer-tiktok", "--config", str(TINY_CONFIG), "--data", str(root / "data"), "--out", str(out), *INFER]) == 0
    save_random_weights(root / "weights")
    return root


def _pngs(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))


def test_infer_tiktok_outputs(run):
    out = run / "out"
    expected = [f"video_{v:04d}/{i:04d}.png" for v in (1, 2) for i in range(FRAMES)]
    for sub in ("pred", "gt", "gt_recon", "poses"):
        assert _pngs(out / sub) == expected, sub
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["video_0001.mp4", "video_0002.mp4"]
    record = json.loads((out / "infer.json").read_text())
    assert (record["videos"], record["frames"], record["generated"]) == (2, 2 * FRAMES, 2 * FRAMES)
    assert Image.open(out / "pred" / expected[0]).size == (32, 32)
    # The reference is frame 0 of the same crop: gt is exactly the transformed source frame.
    source = Image.open(run / "data" / "test_set" / "video_0001" / "0000.png").convert("RGB")
    assert np.array_equal(np.asarray(Image.open(out / "gt" / expected[0])), np.asarray(source.resize((32, 32), Image.Resampling.BILINEAR)))


def test_infer_tiktok_resumes(run, capsys):
    out, args = run / "out", ["infer-tiktok", "--config", str(TINY_CONFIG), "--data", str(run / "data"), "--out", str(run / "out"), *INFER]
    victim = out / "pred" / "video_0002" / "0001.png"
    before = np.asarray(Image.open(victim)).copy()
    victim.unlink()
    capsys.readouterr()
    assert main(args) == 0
    assert "generated 1, kept 5" in capsys.readouterr().out
    assert np.array_equal(np.asarray(Image.open(victim)), before)  # same noise, same frame
    assert main(args) == 0
    assert "generated 0, kept 6" in capsys.readouterr().out
    # Other settings on the same folder are refused with one line naming it.
    assert main([*args, "inference.guidance_scale=3.0"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("magicpose infer-tiktok: error:") and str(out) in err and "inference" in err
    assert "\n" not in err
    # without windows the recorded settings are those of runs made before windows existed (they resume)
    settings = json.loads((out / "infer.json").read_text())["settings"]["inference"]
    assert "context_length" not in settings and "context_overlap" not in settings
    assert main([*args, "--context-length", "2"]) == 1 and "inference" in capsys.readouterr().err


def test_the_released_test_split_name_needs_no_split_flag(tmp_path, capsys):
    """TikTok-v4 as released names its test split disco_test_set: infer-tiktok finds it and says so."""
    from magicpose.toy import generate_toy_dataset

    generate_toy_dataset(tmp_path / "data", videos=1, test_videos=1, frames=2, size=32, seed=0)
    for folder in sorted((tmp_path / "data").glob("*test_set")):
        folder.rename(folder.with_name(folder.name.replace("test_set", "disco_test_set")))
    args = [a for a in INFER if a not in ("--split", "test_set")]
    assert main(["infer-tiktok", "--config", str(TINY_CONFIG), "--data", str(tmp_path / "data"),
                 "--out", str(tmp_path / "out"), *args]) == 0
    assert "test split: disco_test_set" in capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "infer.json").read_text())["settings"]["split"] == "disco_test_set"
    assert len(_pngs(tmp_path / "out" / "pred")) == 2


def test_evaluate_end_to_end(run, capsys):
    out = run / "out"
    metrics_json = run / "metrics.json"
    code = main(["evaluate", "--pred", str(out / "pred"), "--gt", str(out / "gt"), "--out", str(metrics_json),
                 "--weights-dir", str(run / "weights"), "--size", "64", "--pad-short-videos", "--frechet", "fast",
                 "--no-progress"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "fvd" in printed and "disco" in printed
    record = json.loads(metrics_json.read_text())
    assert record["counts"] == {"videos": 2, "frames": 6, "clips": 2, "resized_frames": 12,
                                "unpaired_pred": 0, "unpaired_gt": 0, "frame_pairs": 4}  # fmt: skip
    assert record["skipped"] == {}
    for protocol in ("disco", "fixed"):
        values = record["metrics"][protocol]
        assert list(values) == ["l1", "ssim", "psnr", "lpips", "fid", "fid_vid", "fvd", "flicker",
                                "flicker_energy_pred", "flicker_energy_gt", "flicker_energy_ratio"]  # fmt: skip
        assert all(np.isfinite(v) for v in values.values())
    assert record["protocols"]["disco"]["psnr_uint8_overflow"] is True
    assert record["protocols"]["fixed"]["lpips_input_range"] == "[-1, 1]"
    assert record["options"]["pad_short_videos"] is True and record["options"]["frechet"] == "fast"
    for key, spec in WEIGHT_FILES.items():
        assert record["weights"][key]["sha256"] == sha256_of(run / "weights" / spec.filename)


def test_evaluate_errors_are_one_line(run, tmp_path, capsys):
    out = run / "out"
    code = main(["evaluate", "--pred", str(out / "pred"), "--gt", str(out / "poses" / "video_0001"),
                 "--out", str(tmp_path / "m.json"), "--no-progress"])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("magicpose evaluate: error:") and "no partner" in err and "\n" not in err


def test_scripts_show_usage():
    for script in ("inference_tiktok_dataset.sh", "evaluate_tiktok.sh"):
        res = subprocess.run(["bash", f"scripts/{script}"], cwd=REPO, capture_output=True, text=True)
        assert res.returncode == 1 and "usage" in (res.stdout + res.stderr).lower(), script
