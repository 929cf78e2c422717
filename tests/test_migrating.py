"""The originals' recipes, run as docs/migrating.md writes them, on tiny synthetic files with the released names in
the released layouts (a checkout in a temporary folder: our scripts and configs, the files in pretrained_weights/,
TikTok-v4 with its disco_test_set). Only tiny-model overrides are appended to each command."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch

from magicpose.convert.testing import original_state_dict, write_synthetic_release
from magicpose.original_names import ORIGINAL_NAMES

from .conftest import REPO, tiny_spec, write_tiny_sd_folder

DOC = (REPO / "docs" / "migrating.md").read_text()
# the released models are SD-sized; these make the same commands run the tiny models on a CPU in seconds
TINY_MODEL = ["model.components=configs/models/tiny", "model.dtype=float32", "device=cpu"]
FYP_TINY = REPO / "configs/models/fyp_tiny"
FIXTURES = REPO / "tests/fixtures/followyourpose"
TINY_FIT = ["model.components=configs/models/tiny", "data.size=32", "data.batch_size=2", "data.num_workers=0",
            "train.max_steps=1", "train.sample_every=1", "train.checkpoint_every=1", "train.log_every=1",
            "inference.steps=2", "inference.size=32", "trainer.accelerator=cpu", "trainer.devices=1"]


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """The MagicDance release's files (tiny, random, the released key layouts) and TikTok-v4 as released."""
    from magicpose.models.components import build_components
    from magicpose.toy import generate_toy_dataset

    root = tmp_path_factory.mktemp("release")
    models = build_components(tiny_spec())
    for name, layout in (("control_sd15_ini.ckpt", "init"), ("control_v11p_sd15_openpose.pth", "controlnet"),
                         ("model_state-10000.th", "stage1"), ("model_state-110000.th", "stage2")):
        torch.save(original_state_dict(models, layout), root / name)
    data = root / "TikTok-v4"
    generate_toy_dataset(data, videos=2, test_videos=1, frames=3, size=32, seed=0)
    for folder in sorted(data.glob("*test_set")):
        folder.rename(folder.with_name(folder.name.replace("test_set", "disco_test_set")))
    return root


@pytest.fixture
def checkout(release, tmp_path):
    """A fresh checkout: our code, scripts and configs, the released files in pretrained_weights/ (no conversion
    cache yet), TikTok-v4 in dataset/, the shipped examples."""
    root = tmp_path / "MagicPose"
    root.mkdir()
    for name in ("magicpose", "scripts", "configs", ".venv", "example_data", "pose_example"):
        if (REPO / name).exists():
            (root / name).symlink_to(REPO / name)
    (root / "pretrained_weights").mkdir()
    for file in release.glob("*.*"):
        (root / "pretrained_weights" / file.name).symlink_to(file)
    (root / "dataset").mkdir()
    (root / "dataset" / "TikTok-v4").symlink_to(release / "TikTok-v4")
    return root


def _doc_command(pattern: str) -> list[str]:
    """The (longest: ours, not the original's) command of docs/migrating.md that starts with `pattern`, as words."""
    found = re.findall(r"`(" + re.escape(pattern) + r"[^`]*)`", DOC)
    assert found, f"docs/migrating.md has no command starting with {pattern!r}"
    return max(found, key=len).split()


def _run(root, words, *extra):
    env = {k: v for k, v in os.environ.items() if k != "MAGICPOSE_CACHE"}
    res = subprocess.run([*words, *extra], cwd=root, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def _conversions(stderr: str) -> list[str]:
    return re.findall(r"converting (?:\S+/)?pretrained_weights/(\S+) \(", stderr)


def test_stage1_from_control_sd15_ini(checkout):
    res = _run(checkout, _doc_command("bash scripts/appearance_control_pretraining.sh"), *TINY_FIT)
    assert _conversions(res.stderr) == ["control_sd15_ini.ckpt"]  # once, for the three SD parts
    run = checkout / "runs" / "appearance_control_pretraining"
    assert (run / "pipeline" / "appearance_unet").is_dir() and list((run / "samples").glob("*.mp4"))
    assert "sample clips: test split: disco_test_set" in res.stderr


def test_stage2_from_model_state_10000_and_the_openpose_controlnet(checkout):
    res = _run(checkout, _doc_command("bash scripts/appearance_disentangle_pose_control.sh"), *TINY_FIT)
    assert sorted(_conversions(res.stderr)) == ["control_sd15_ini.ckpt", "control_v11p_sd15_openpose.pth",
                                                "model_state-10000.th"]
    assert (checkout / "runs" / "magicdance" / "pipeline" / "controlnet").is_dir()


def test_any_image_inference_from_model_state_110000(checkout):
    words = _doc_command("bash scripts/inference_any_image_pose.sh")
    res = _run(checkout, words, "--size", "32", "--steps", "2", *TINY_MODEL)
    assert _conversions(res.stderr) == ["model_state-110000.th"]
    out = checkout / "outputs" / "animate" / "astronaut_001"
    assert len(list((out / "frames").glob("*.png"))) == len(list((checkout / words[3]).glob("*.png")))


def test_test_set_inference_and_the_reported_evaluation(checkout):
    _run(checkout, _doc_command("bash scripts/inference_tiktok_dataset.sh"), "--size", "32", "--steps", "2",
         "--no-progress", *TINY_MODEL)
    out = checkout / "outputs" / "tiktok_test"
    assert json.loads((out / "infer.json").read_text())["settings"]["split"] == "disco_test_set"
    assert len(list((out / "gt_recon").rglob("*.png"))) == 3
    words = _doc_command("bash scripts/evaluate_tiktok.sh outputs/tiktok_test --gt")
    _run(checkout, words, "--metrics", "l1", "ssim", "psnr", "--no-progress", "--device", "cpu")
    metrics = json.loads((checkout / words[words.index("--out") + 1]).read_text())
    assert metrics["settings"]["frame_size"] == 512 and list(metrics["protocols"]) == ["disco"]
    assert metrics["gt"].endswith("outputs/tiktok_test/gt_recon") and metrics["counts"]["frames"] == 3


def test_every_original_name_is_in_the_guide_and_named_by_the_errors(capsys):
    from magicpose.cli import main

    quoted = " ".join(re.findall(r"`[^`]*`", DOC))
    missing = [name for name in ORIGINAL_NAMES if not re.search(rf"[`\-.]{name}\b", quoted)]
    assert not missing, missing
    with pytest.raises(SystemExit):
        main(["animate", "-c", "configs/magicpose/tiny.yaml", "--reference", "a.png", "--poses", "p", "--out", "o",
              "--control_mode", "balance"])
    assert "'--control_mode' is the original's name; here: inference.guidance_mode" in capsys.readouterr().err
    assert main(["animate", "-c", "configs/magicpose/tiny.yaml", "--reference", "a.png", "--poses", "p", "--out",
                 "o", "img_bin_limit=all"]) == 1
    assert "unknown key 'img_bin_limit': 'img_bin_limit' is the original's name; here: data.max_frame_distance" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fyp-sample", "-c", "configs/followyourpose/tiny.yaml", "--prompt", "x", "--skeleton_path", "a.mov",
              "--out", "o"])
    assert "'--skeleton_path' is the original's name; here: --skeleton" in capsys.readouterr().err


# ----- Follow-Your-Pose ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fyp_release(tmp_path_factory):
    """The Follow-Your-Pose release as the original README places it (checkpoints/), tiny, and the original
    repository's two YAMLs and HD-VILA data layout."""
    root = tmp_path_factory.mktemp("fyp_release")
    write_synthetic_release(root / "checkpoints", FYP_TINY, vae_scale_factor=2, seed=3)
    write_tiny_sd_folder(root / "checkpoints" / "stable-diffusion-v1-4", FYP_TINY)
    configs = root / "FollowYourPose" / "configs"
    configs.mkdir(parents=True)
    for name in ("pose_sample.yaml", "pose_train.yaml"):
        shutil.copy(FIXTURES / name, configs / name)
    hdvila = root / "hdvila"
    (hdvila / "part_0" / "video_clips").mkdir(parents=True)
    from magicpose.media import write_video

    frames = [np.full((32, 32, 3), 40 * i, np.uint8) for i in range(6)]
    write_video(hdvila / "part_0" / "video_clips" / "clip_0.mp4", frames, fps=8)
    (hdvila / "caption_rm2048_train.csv").write_text("clip_id,part_id,caption\nclip_0.mp4,0,a grey square\n")
    return root


@pytest.fixture
def fyp_checkout(checkout, fyp_release):
    for name in ("checkpoints", "FollowYourPose", "hdvila"):
        (checkout / name).symlink_to(fyp_release / name)
    return checkout


def test_txt2video_from_the_release_in_checkpoints(fyp_checkout):
    words = ["bash", "scripts/txt2video.sh", '"Iron man on the beach"', "pose_example/dance_001.mp4"]
    assert " ".join(words[1:]) in DOC
    res = _run(fyp_checkout, ["bash", "scripts/txt2video.sh", "Iron man on the beach", "pose_example/dance_001.mp4"],
               "--frames", "3", "--steps", "1", "--size", "32", "device=cpu")
    assert re.search(r"converting checkpoints/followyourpose_checkpoint-1000/pytorch_model.bin \(a Follow-Your-Pose "
                     r"checkpoint\) into checkpoints/.converted/followyourpose_checkpoint-1000-", res.stderr)
    assert (fyp_checkout / "outputs" / "fyp" / "dance_001" / "video.mp4").is_file()


def test_the_original_yamls_convert_and_run(fyp_checkout, monkeypatch, capsys):
    from magicpose.cli import main
    from magicpose.media import count_frames

    monkeypatch.chdir(fyp_checkout)
    monkeypatch.delenv("MAGICPOSE_CACHE", raising=False)
    for name in ("sample", "train"):
        words = _doc_command(f"magicpose convert fyp-config FollowYourPose/configs/pose_{name}.yaml")
        assert main(words[1:]) == 0
    # sampling: the original's three prompts, one video each, the release converted on first use
    words = _doc_command("magicpose fyp-sample -c my_sample.yaml")
    assert main([*words[1:], "--frames", "3", "--steps", "1", "--size", "32", "device=cpu"]) == 0
    out = fyp_checkout / words[words.index("--out") + 1]
    assert len(list(out.glob("0?_*.mp4"))) == 3 and count_frames(next(out.glob("00_*.mp4"))) == 3
    # training: the original's recipe on the HD-VILA layout (tiny numbers)
    words = _doc_command("magicpose fit -c my_train.yaml")
    assert main([*words[1:], "model.components=configs/models/fyp_tiny", "data.root=hdvila", "data.frames=3",
                 "data.stride=1", "data.size=32", "data.num_workers=0", "train.max_steps=1", "train.sample_every=1",
                 "train.gradient_checkpointing=false", "inference.frames=3", "inference.steps=1", "inference.size=32",
                 "trainer.accelerator=cpu", "trainer.devices=1", "run_dir=runs/fyp"]) == 0
    assert len(list((fyp_checkout / "runs/fyp/samples/step-0000001").glob("*.mp4"))) == 4  # the four prompts
    assert (fyp_checkout / "runs/fyp/pipeline/unet").is_dir()


def test_the_names_table_agrees_with_the_fyp_yaml_converter():
    """Two places know what an original Follow-Your-Pose key is here: the hint for a stray key and the converter of
    whole YAMLs. Every key both know must point at the converter's targets."""
    from magicpose.config.original_fyp import BOTH_DIRECT, SAMPLE_DIRECT, TRAIN_DIRECT
    from magicpose.original_names import original_name_hint

    checked = 0
    for table in (TRAIN_DIRECT, SAMPLE_DIRECT, BOTH_DIRECT):
        for key, (targets, _) in table.items():
            hint = original_name_hint(key)
            if hint is None:
                continue
            checked += 1
            assert all(target in hint for target in targets), (key, targets, hint)
    assert checked >= 12


def test_stage3_from_model_state_110000_and_a_released_motion_module(checkout):
    """Not an original recipe (MagicDance released no temporal stage): stage 3 as README writes it, from the released
    stage-2 checkpoint and AnimateDiff's motion module in its original layout, both converted on first use."""
    from diffusers import MotionAdapter

    from magicpose.convert.animatediff import save_original_motion_checkpoint

    torch.manual_seed(0)
    adapter = MotionAdapter.from_config(MotionAdapter.load_config(REPO / "configs/models/tiny/motion_adapter"))
    save_original_motion_checkpoint(adapter, checkout / "pretrained_weights" / "mm_sd_v15_v2.ckpt")
    res = _run(checkout, ["bash", "scripts/temporal_motion_module.sh"], *TINY_FIT, "data.num_frames=2")
    assert sorted(_conversions(res.stderr)) == ["mm_sd_v15_v2.ckpt", "model_state-110000.th"]
    run = checkout / "runs" / "magicpose_temporal"
    assert (run / "pipeline" / "motion_adapter").is_dir() and list((run / "samples").glob("*.mp4"))
    assert sorted(p.name for p in (run / "weights").iterdir())[-1:] == ["step-0000001"]
    assert [p.name for p in (run / "weights" / "step-0000001").iterdir()] == ["motion_adapter"]
