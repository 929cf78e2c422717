"""FollowYourPosePipeline: sliding context windows, single-pass equivalence, pose, save/load."""

from __future__ import annotations

import copy

import pytest
import torch

from magicpose.config import FypModelSpec
from magicpose.pipelines.followyourpose import FollowYourPosePipeline, context_windows, window_weights

from .conftest import REPO, stick_pose

TINY = REPO / "configs/models/fyp_tiny"
TOKENIZER = REPO / "configs/models/sd15/tokenizer"


def tiny_fyp_spec(**kwargs) -> FypModelSpec:
    kwargs.setdefault("components", str(TINY))
    kwargs.setdefault("paths", {"tokenizer": str(TOKENIZER)})
    return FypModelSpec(**kwargs)


@pytest.fixture(scope="module")
def pipe():
    pipe = FollowYourPosePipeline.from_spec(tiny_fyp_spec(video={"zero_init_temporal_attention": False}))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("frames", [1, 5, 8, 13, 32])
@pytest.mark.parametrize("length,overlap", [(4, 0), (4, 2), (8, 4), (16, 4), (5, 4)])
def test_windows_cover_every_frame_with_the_requested_overlap(frames, length, overlap):
    windows = context_windows(frames, length, overlap)
    covered = sorted({i for w in windows for i in w})
    assert covered == list(range(frames))
    assert all(len(w) == min(length, frames) for w in windows)
    assert windows[0].start == 0 and windows[-1].stop == frames
    for a, b in zip(windows, windows[1:]):
        assert a.stop - b.start >= overlap  # consecutive windows share at least `overlap` frames
    assert (window_weights(length, overlap) > 0).all()


def test_bad_windows_are_refused():
    with pytest.raises(ValueError):
        context_windows(10, 4, 4)
    with pytest.raises(ValueError):
        context_windows(10, 0, 0)


def _direct_loop(pipe, prompt, poses, steps, guidance, latents):
    """The original sampler written out: DDIM, text CFG, the pose in both halves, one pass over all frames."""
    scheduler = copy.deepcopy(pipe.scheduler)
    scheduler.set_timesteps(steps)
    text = torch.cat([pipe.encode_prompt(""), pipe.encode_prompt(prompt)])
    feats = [torch.cat([f, f]) for f in pipe.pose_adapter(poses)]
    x = latents * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        eps_u, eps_c = pipe.unet(scheduler.scale_model_input(torch.cat([x, x]), t), t, text, feats).chunk(2)
        x = scheduler.step(eps_u + guidance * (eps_c - eps_u), t, x, eta=0.0).prev_sample
    return x


@torch.no_grad()
def test_window_as_long_as_the_clip_equals_the_single_pass(pipe):
    poses = [stick_pose(seed, 32) for seed in range(5)]
    noise = torch.randn(1, 4, 5, 16, 16, generator=torch.Generator().manual_seed(0))
    kwargs = dict(num_inference_steps=2, guidance_scale=7.5, latents=noise, output_type="latent")
    windowed = pipe("a person dancing", poses, context_length=5, **kwargs).frames
    whole = pipe("a person dancing", poses, **kwargs).frames
    direct = _direct_loop(pipe, "a person dancing", pipe.prepare_skeleton(poses, 32, 32), 2, 7.5, noise)
    assert torch.equal(windowed, whole)
    assert (whole - direct).abs().max() < 1e-5
    # shorter windows: every frame is still denoised, the result is finite and the windows mattered
    short = pipe("a person dancing", poses, context_length=3, context_overlap=1, **kwargs).frames
    assert short.shape == whole.shape and torch.isfinite(short).all()
    assert (short - whole).abs().max() > 1e-4


@torch.no_grad()
def test_pose_scale_and_text_only_and_outputs(pipe):
    poses = [stick_pose(seed, 32) for seed in range(3)]
    noise = torch.randn(1, 4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    kwargs = dict(num_inference_steps=2, guidance_scale=1.0, latents=noise, output_type="latent")
    posed = pipe("x", poses, **kwargs).frames
    no_pose_scale = pipe("x", poses, pose_scale=0.0, **kwargs).frames
    text_only = pipe("x", None, num_frames=3, height=32, width=32, **kwargs).frames
    assert torch.equal(no_pose_scale, text_only)
    assert (posed - text_only).abs().max() > 1e-4
    images = pipe("x", poses, num_inference_steps=2, guidance_scale=3.0, output_type="np").frames
    assert images.shape == (3, 32, 32, 3) and images.min() >= 0 and images.max() <= 1


@torch.no_grad()
def test_saved_pipeline_folder_loads_with_the_same_result(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "fyp", safe_serialization=True)
    again = FollowYourPosePipeline.from_spec(FypModelSpec(pretrained=str(tmp_path / "fyp"), components=None))
    again.set_progress_bar_config(disable=True)
    poses = [stick_pose(seed, 32) for seed in range(2)]
    noise = torch.randn(1, 4, 2, 16, 16, generator=torch.Generator().manual_seed(2))
    kwargs = dict(num_inference_steps=2, latents=noise, output_type="latent")
    assert torch.equal(pipe("x", poses, **kwargs).frames, again("x", poses, **kwargs).frames)
