"""The toy model shipped in pretrained_weights/toy/: hashes, strict loading, and a held-out frame it gets right."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers import ControlNetModel, UNet2DConditionModel
from safetensors.torch import load_file

from magicpose.errors import UserError
from magicpose.toy import generate_toy_dataset
from magicpose.toy.metrics import figure_mask, mask_iou
from magicpose.toy.quickstart import eval_videos, generate, recorded_scale
from magicpose.toy.shipped import CHECKSUMS, TOY_MODEL_DIR, load_toy_model, verify_toy_model

NETWORKS = {"unet": UNet2DConditionModel, "appearance_unet": UNet2DConditionModel, "controlnet": ControlNetModel}


def test_shipped_weights_match_their_hashes_and_load_strictly():
    verify_toy_model(TOY_MODEL_DIR)  # every file against SHA256SUMS
    listed = {line.split(maxsplit=1)[1] for line in (TOY_MODEL_DIR / CHECKSUMS).read_text().splitlines()}
    on_disk = {p.relative_to(TOY_MODEL_DIR).as_posix() for p in TOY_MODEL_DIR.rglob("*") if p.is_file()}
    assert on_disk - listed == {CHECKSUMS}  # nothing unlisted
    for name, cls in NETWORKS.items():
        folder = TOY_MODEL_DIR / "pipeline" / name
        network = cls.from_config(cls.load_config(folder))
        state = load_file(folder / "diffusion_pytorch_model.safetensors")
        assert {t.dtype for t in state.values()} == {torch.float16}, name
        result = network.load_state_dict(state, strict=True)  # raises on a missing or unexpected key
        assert not result.missing_keys and not result.unexpected_keys


def test_a_damaged_or_missing_file_is_refused_in_one_line(tmp_path):
    folder = tmp_path / "toy"
    shutil.copytree(TOY_MODEL_DIR, folder)
    weights = folder / "pipeline" / "controlnet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"controlnet/diffusion_pytorch_model\.safetensors: sha256 differs"):
        verify_toy_model(folder)
    weights.unlink()
    with pytest.raises(UserError, match="missing from the toy model"):
        verify_toy_model(folder)
    (folder / CHECKSUMS).unlink()
    with pytest.raises(UserError, match="no toy model here"):
        verify_toy_model(folder)


def test_shipped_model_beats_copying_the_reference_on_a_held_out_frame(tmp_path):
    """The first held-out dancer, its last evaluated frame (40 source frames after the reference), sampled as the
    shipped metrics were: the generated figure overlaps the true one better than the reference frame's figure."""
    pipe, shipped = load_toy_model()
    scale = recorded_scale(shipped)
    generate_toy_dataset(tmp_path / "data", 1, 1, scale.frames, scale.size, 0)  # held-out dancers: seed only
    video = eval_videos(tmp_path / "data", replace(scale, eval_videos=1))[0]
    frame = generate(pipe, video["reference"], video["pose"][-1:], scale.sampler_steps, seed=0,
                     guidance_scale=scale.guidance_scale, shared_noise=scale.shared_noise)[0]
    generated_iou = mask_iou(figure_mask(frame, video["background"]), video["target_mask"][-1])
    copy_iou = mask_iou(video["reference_mask"], video["target_mask"][-1])
    assert generated_iou > copy_iou + 0.1, (generated_iou, copy_iou)
    assert np.abs(frame.astype(float) - video["target"][-1]).mean() / 255 < 0.1  # and looks like the frame
    assert json.loads((TOY_MODEL_DIR / "metrics.json").read_text())["targets"]["pose"]["passed"]


def test_animate_runs_the_shipped_model_on_the_toy_examples(tmp_path):
    """configs/magicpose/toy/pretrained.yaml animates example_data's toy dancer with its pose maps: the frames are
    the toy world's size and show the dancer's background around a figure."""
    from PIL import Image

    from magicpose.cli import main
    from magicpose.toy.metrics import colour_distance

    from .conftest import REPO

    out = tmp_path / "out"
    reference = REPO / "example_data/image/toy/dancer_0.png"
    argv = ["animate", "--config", str(REPO / "configs/magicpose/toy/pretrained.yaml"), "--reference",
            str(reference), "--poses", str(REPO / "example_data/pose_sequence/toy"), "--out", str(out)]
    assert main(argv) == 0
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((out / "frames").glob("*.png"))]
    assert len(frames) == 48 and frames[0].shape == (32, 32, 3)
    ref = np.asarray(Image.open(reference).convert("RGB"))
    other = np.asarray(Image.open(REPO / "example_data/image/toy/dancer_1.png").convert("RGB"))
    assert colour_distance(frames[-1], ref) < colour_distance(frames[-1], other)  # its colours are dancer 0's
