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


# ------------------------------------------------------------------ diffusers' calling conventions

POSES = [stick_pose(seed, 32) for seed in range(5)]
NOISE = torch.randn(1, 4, 5, 16, 16, generator=torch.Generator().manual_seed(3))


def _latents(pipe, prompt="a person dancing", **kwargs):
    kwargs.setdefault("num_inference_steps", 2)
    kwargs.setdefault("guidance_scale", 7.5)
    return pipe(prompt, POSES, latents=NOISE, output_type="latent", **kwargs).frames


@torch.no_grad()
def test_prompt_embeds_give_exactly_the_frames_of_the_prompts(pipe):
    text, negative = pipe.encode_prompt("a person dancing"), pipe.encode_prompt("blurry")
    expected = _latents(pipe)
    assert torch.equal(_latents(pipe, None, prompt_embeds=text), expected)
    expected = _latents(pipe, negative_prompt="blurry")
    assert torch.equal(_latents(pipe, None, prompt_embeds=text, negative_prompt_embeds=negative), expected)
    assert torch.equal(_latents(pipe, negative_prompt_embeds=negative), expected)
    no_cfg = _latents(pipe, guidance_scale=1.0)
    assert torch.equal(_latents(pipe, None, prompt_embeds=text, guidance_scale=1.0), no_cfg)
    assert (_latents(pipe, None, prompt_embeds=negative, guidance_scale=1.0) - no_cfg).abs().max() > 1e-4


@torch.no_grad()
def test_the_public_guided_step_is_the_pipelines_step(pipe):
    """`predict_noise` (windows blended) and `guided_noise` (one pass), then a DDIM step: exactly `__call__`'s."""
    text, negative = pipe.encode_prompt("a person dancing"), pipe.encode_prompt("blurry")
    feats = pipe.encode_skeleton(pipe.prepare_skeleton(POSES, 32, 32), 1.0)
    for window in ({"context_length": 3, "context_overlap": 1}, {}):
        seen = []

        def record(p, step_index, timestep, callback_kwargs, seen=seen):
            seen.append(callback_kwargs["latents"])
            return {}

        _latents(pipe, negative_prompt="blurry", num_inference_steps=3, callback_on_step_end=record, **window)
        scheduler = copy.deepcopy(pipe.scheduler)
        x = NOISE * scheduler.init_noise_sigma
        for t, expected in zip(scheduler.timesteps, seen, strict=True):
            eps = pipe.predict_noise(x, t, text, negative, feats, 7.5, True, **window)
            if not window:
                assert torch.equal(pipe.guided_noise(x, t, text, negative, feats, 7.5, True), eps)
            x = scheduler.step(eps, t, x, eta=0.0).prev_sample
            assert torch.equal(x, expected)


@torch.no_grad()
def test_callback_runs_once_per_step_and_its_latents_replace_the_pipelines(pipe):
    from diffusers.callbacks import PipelineCallback

    calls = []

    class Record(PipelineCallback):
        tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

        def callback_fn(self, p, step_index, timestep, callback_kwargs):
            calls.append((step_index, timestep, callback_kwargs))
            return callback_kwargs

    plain = _latents(pipe, num_inference_steps=3, context_length=3, context_overlap=1)
    recorded = _latents(pipe, num_inference_steps=3, context_length=3, context_overlap=1,
                        callback_on_step_end=Record(cutoff_step_ratio=1.0))
    assert torch.equal(recorded, plain)
    assert [i for i, _, _ in calls] == [0, 1, 2] and pipe.num_timesteps == 3
    assert torch.equal(torch.stack([t for _, t, _ in calls]), pipe.scheduler.timesteps)
    assert torch.equal(calls[-1][2]["latents"], plain) and calls[0][2]["latents"].shape == plain.shape
    assert torch.equal(calls[0][2]["prompt_embeds"], pipe.encode_prompt("a person dancing"))
    assert torch.equal(calls[0][2]["negative_prompt_embeds"], pipe.encode_prompt(""))

    halved = _latents(pipe, callback_on_step_end=lambda p, i, t, kw: {"latents": kw["latents"] * 0.5} if i == 0 else {})
    assert (halved - _latents(pipe)).abs().max() > 1e-2
    final = torch.full_like(plain, 0.25)
    last = _latents(pipe, callback_on_step_end=lambda p, i, t, kw: {"latents": final} if i == p.num_timesteps - 1 else {})
    assert torch.equal(last, final)


def test_conflicting_or_unknown_inputs_are_refused(pipe):
    text = pipe.encode_prompt("x")
    cases = [
        (dict(prompt="x", prompt_embeds=text), "prompt or prompt_embeds"),
        (dict(prompt=None), "prompt or prompt_embeds"),
        (dict(prompt="x", negative_prompt="y", negative_prompt_embeds=text), "negative_prompt or negative_prompt_emb"),
        (dict(prompt_embeds=text.expand(2, -1, -1)), "b l d"),
        (dict(prompt="x", negative_prompt_embeds=text[:, :5]), "shape of the prompt's"),
        (dict(prompt="x", callback_on_step_end=lambda *a: {}, callback_on_step_end_tensor_inputs=["noise_pred"]),
         r"\['noise_pred'\]"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            pipe(skeleton=POSES[:1], num_inference_steps=1, **kwargs)
