"""FollowYourPosePipeline: sliding context windows (the shared scheduler itself: test_windows.py), single-pass
equivalence, pose, save/load, and diffusers' video pipeline conventions (batches of videos, output types, attention
slicing / xformers, VAEs), written as identities."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from magicpose.config import FypModelSpec
from magicpose.pipelines.followyourpose import FollowYourPosePipeline

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


def _direct_loop(pipe, prompt, poses, steps, guidance, latents):
    """The original sampler written out: DDIM, text CFG, the pose in both halves, one pass over all frames."""
    scheduler = copy.deepcopy(pipe.scheduler)
    scheduler.set_timesteps(steps)
    text = torch.cat([pipe.encode_text(""), pipe.encode_text(prompt)])
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
    assert images.shape == (1, 3, 32, 32, 3) and images.min() >= 0 and images.max() <= 1


@torch.no_grad()
def test_saved_pipeline_folder_loads_with_the_same_result(pipe, tmp_path):
    """`save_pretrained` then `from_spec(pretrained=...)` or diffusers' own `from_pretrained`: the same frames."""
    pipe.save_pretrained(tmp_path / "fyp", safe_serialization=True)
    again = FollowYourPosePipeline.from_spec(FypModelSpec(pretrained=str(tmp_path / "fyp"), components=None))
    loaded = FollowYourPosePipeline.from_pretrained(tmp_path / "fyp")
    poses = [stick_pose(seed, 32) for seed in range(2)]
    noise = torch.randn(1, 4, 2, 16, 16, generator=torch.Generator().manual_seed(2))
    kwargs = dict(num_inference_steps=2, latents=noise)
    expected, frames = pipe("x", poses, output_type="latent", **kwargs).frames, pipe("x", poses, **kwargs).frames
    for other in (again, loaded):
        other.set_progress_bar_config(disable=True)
        assert type(other.unet) is type(pipe.unet) and type(other.vae) is type(pipe.vae)
        assert torch.equal(other("x", poses, output_type="latent", **kwargs).frames, expected)
        # decoded: equal up to float rounding (the fixture's randomly built VAE is in train mode, the loaded one in
        # eval mode, and PyTorch's attention picks another kernel: ~1e-7)
        again_frames = other("x", poses, **kwargs).frames
        assert len(again_frames) == 1 and len(again_frames[0]) == 2
        for a, b in zip(again_frames[0], frames[0], strict=True):
            assert np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max() <= 1


# ------------------------------------------------------------------ diffusers' calling conventions

POSES = [stick_pose(seed, 32) for seed in range(5)]
NOISE = torch.randn(1, 4, 5, 16, 16, generator=torch.Generator().manual_seed(3))


def _latents(pipe, prompt="a person dancing", **kwargs):
    kwargs.setdefault("num_inference_steps", 2)
    kwargs.setdefault("guidance_scale", 7.5)
    return pipe(prompt, POSES, latents=NOISE, output_type="latent", **kwargs).frames


@torch.no_grad()
def test_prompt_embeds_give_exactly_the_frames_of_the_prompts(pipe):
    text, negative = pipe.encode_text("a person dancing"), pipe.encode_text("blurry")
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
    text, negative = pipe.encode_text("a person dancing"), pipe.encode_text("blurry")
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
    assert torch.equal(calls[0][2]["prompt_embeds"], pipe.encode_text("a person dancing"))
    assert torch.equal(calls[0][2]["negative_prompt_embeds"], pipe.encode_text(""))

    halved = _latents(pipe, callback_on_step_end=lambda p, i, t, kw: {"latents": kw["latents"] * 0.5} if i == 0 else {})
    assert (halved - _latents(pipe)).abs().max() > 1e-2
    final = torch.full_like(plain, 0.25)
    last = _latents(pipe, callback_on_step_end=lambda p, i, t, kw: {"latents": final} if i == p.num_timesteps - 1 else {})
    assert torch.equal(last, final)


def test_conflicting_or_unknown_inputs_are_refused(pipe):
    text = pipe.encode_text("x")
    gen = torch.Generator().manual_seed(0)
    cases = [
        (dict(prompt="x", prompt_embeds=text), "prompt or prompt_embeds"),
        (dict(prompt=None), "prompt or prompt_embeds"),
        (dict(prompt="x", negative_prompt="y", negative_prompt_embeds=text), "negative_prompt or negative_prompt_emb"),
        (dict(prompt_embeds=text[0]), "b l d"),
        (dict(prompt="x", negative_prompt_embeds=text[:, :5]), "shape of the prompt's"),
        (dict(prompt="x", callback_on_step_end=lambda *a: {}, callback_on_step_end_tensor_inputs=["noise_pred"]),
         r"\['noise_pred'\]"),
        (dict(prompt=["x", "y"], negative_prompt=["a", "b", "c"]), "same length or length 1"),
        (dict(prompt_embeds=text.expand(2, -1, -1), negative_prompt_embeds=text.expand(3, -1, -1)), "same length"),
        (dict(prompt=["x", "y"], num_videos_per_prompt=2, generator=[gen] * 3), "one per video: 4 videos"),
        (dict(prompt="x", num_videos_per_prompt=0), "num_videos_per_prompt"),
        (dict(prompt=["x", "y"], latents=torch.zeros(3, 4, 1, 16, 16)), r"latents must be \(1, 4, 1, 16, 16\)"),
        (dict(prompt="x", latents=torch.zeros(1, 4, 1, 8, 8)), r"latents must be"),
        (dict(prompt="x", output_type="mp4"), "output_type must be one of"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            pipe(skeleton=POSES[:1], num_inference_steps=1, **kwargs)


# ------------------------------------------------------------------ diffusers' video pipeline conventions

SHORT = POSES[:3]
SHORT_NOISE = NOISE[:, :, :3]


def _g(seed):
    return torch.Generator().manual_seed(seed)


def _run(pipe, prompt="a person dancing", **kwargs):
    """Frames of a short call; `np` by default: frames in [0, 1], where "equal up to float rounding" is <= 1e-5 (the
    latents reach ~7 and CFG scales the rounding of batched or sliced kernels by 7.5: ~1e-5 there)."""
    kwargs.setdefault("num_inference_steps", 2)
    kwargs.setdefault("guidance_scale", 7.5)
    kwargs.setdefault("output_type", "np")
    return pipe(prompt, SHORT, **kwargs).frames


def _diff(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


@torch.no_grad()
def test_dict_and_tuple_outputs_hold_the_same_frames(pipe):
    as_dict = _run(pipe, latents=SHORT_NOISE, output_type="np")
    as_tuple = pipe("a person dancing", SHORT, num_inference_steps=2, guidance_scale=7.5, latents=SHORT_NOISE,
                    output_type="np", return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 1
    assert np.array_equal(as_tuple[0], as_dict)


@torch.no_grad()
def test_output_types_are_one_batch_of_videos_frame_by_frame(pipe, tmp_path):
    """`np` b f h w 3, `pt` b f 3 h w, `pil` b lists of f images, `latent` b c f h w: the same video; decoding the
    latents by hand (diffusers' convention) gives the frames; `export_to_video(frames[0])` writes it."""
    from diffusers.utils import export_to_video

    outputs = {kind: _run(pipe, latents=SHORT_NOISE, output_type=kind) for kind in ("np", "pt", "pil", "latent")}
    video_np, video_pt, video_pil, latents = (outputs[k] for k in ("np", "pt", "pil", "latent"))
    assert video_np.shape == (1, 3, 32, 32, 3) and video_np.dtype == np.float32
    assert tuple(video_pt.shape) == (1, 3, 3, 32, 32) and tuple(latents.shape) == (1, 4, 3, 16, 16)
    assert len(video_pil) == 1 and len(video_pil[0]) == 3 and video_pil[0][0].size == (32, 32)
    assert np.array_equal(video_pt.permute(0, 1, 3, 4, 2).numpy(), video_np)
    for frame_np, frame_pil in zip(video_np[0], video_pil[0], strict=True):
        assert np.array_equal(np.asarray(frame_pil), (frame_np * 255).round().astype(np.uint8))
    flat = latents[0].transpose(0, 1) / pipe.vae.config.scaling_factor  # f c h w
    by_hand = (pipe.vae.decode(flat).sample / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    assert np.abs(by_hand - video_np[0]).max() < 1e-6
    for kind in ("np", "pil"):
        path = export_to_video(outputs[kind][0], str(tmp_path / f"{kind}.mp4"))
        assert (tmp_path / f"{kind}.mp4").stat().st_size > 0 and path.endswith(f"{kind}.mp4")


@torch.no_grad()
def test_a_batch_of_prompts_equals_each_prompt_alone(pipe):
    """Two prompts in one call (a list, or batched `prompt_embeds`; shared or per-video noise, sliding windows or
    not) give the videos of two calls with one prompt each."""
    prompts, negatives = ["a person dancing", "a robot on the beach"], ["blurry", "dark"]
    # one `1 c f h w` noise shared by both videos, a shared negative prompt, decoded frames
    batch = _run(pipe, prompts, negative_prompt="blurry", latents=SHORT_NOISE)
    alone = [_run(pipe, p, negative_prompt="blurry", latents=SHORT_NOISE) for p in prompts]
    assert batch.shape == (2, 3, 32, 32, 3)
    assert _diff(batch, np.concatenate(alone)) <= 1e-5
    assert _diff(batch[0], batch[1]) > 1e-3  # the prompts mattered
    # one generator per video, a negative prompt per video, sliding windows
    window = dict(context_length=2, context_overlap=1)
    batch = _run(pipe, prompts, negative_prompt=negatives, generator=[_g(5), _g(6)], **window)
    alone = [_run(pipe, p, negative_prompt=n, generator=_g(s), **window)
             for p, n, s in zip(prompts, negatives, (5, 6), strict=True)]
    assert _diff(batch, np.concatenate(alone)) <= 1e-5
    # batched embeddings are exactly the prompts' path
    embeds, negative_embeds = pipe.encode_text(prompts), pipe.encode_text(negatives)
    by_embeds = _run(pipe, None, prompt_embeds=embeds, negative_prompt_embeds=negative_embeds,
                     generator=[_g(5), _g(6)], **window)
    assert np.array_equal(by_embeds, batch)


@torch.no_grad()
def test_num_videos_per_prompt_makes_different_videos_laid_out_b_n(pipe):
    """`num_videos_per_prompt=2`: two different videos per prompt, `(b n)`; the first video of one generator is the
    one-video call's; with a list of generators video i is the one-video call with generator i."""
    two = _run(pipe, num_videos_per_prompt=2, generator=_g(7))
    one = _run(pipe, generator=_g(7))
    assert two.shape == (2, 3, 32, 32, 3)
    assert _diff(two[0], two[1]) > 1e-3
    assert _diff(two[:1], one) <= 1e-5
    seen = {}

    def record(p, i, t, kw):
        seen.update({k: v.shape for k, v in kw.items()})
        return {}

    prompts = ["a person dancing", "a robot on the beach"]
    four = _run(pipe, prompts, num_videos_per_prompt=2, generator=[_g(s) for s in range(4)],
                callback_on_step_end=record, callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"])
    assert four.shape == (4, 3, 32, 32, 3)
    assert seen == {"latents": (4, 4, 3, 16, 16), "prompt_embeds": (4, 77, pipe.text_encoder.config.hidden_size)}
    for index in (1, 2):  # prompt 0's second video, prompt 1's first
        alone = _run(pipe, prompts[index // 2], generator=_g(index))
        assert _diff(four[index : index + 1], alone) <= 1e-5


@torch.no_grad()
def test_cross_attention_kwargs_reach_the_attention_processors(pipe):
    from diffusers.models.attention_processor import AttnProcessor2_0

    calls = []

    class Probe(AttnProcessor2_0):
        def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                     probe=None):
            calls.append(probe)
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)

    name = next(n for n in pipe.unet.unet.attn_processors if n.endswith("attn2.processor"))
    module = pipe.unet.unet.get_submodule(name.removesuffix(".processor"))
    stock = module.processor
    expected = _run(pipe, latents=SHORT_NOISE, context_length=2, context_overlap=1)
    module.set_processor(Probe())
    try:
        marker = object()
        got = _run(pipe, latents=SHORT_NOISE, context_length=2, context_overlap=1,
                   cross_attention_kwargs={"probe": marker})
    finally:
        module.set_processor(stock)
    assert calls == [marker] * (2 * 2)  # 2 steps x 2 windows, one (CFG-batched) pass each
    assert np.array_equal(got, expected)


def _attn_layers(pipe):
    """{attn1 / attn2 / attn_temp: {(processor type, slice size)}} of the video UNet."""
    kinds = {}
    for name, processor in pipe.unet.unet.attn_processors.items():
        kinds.setdefault(name.split(".")[-2], set()).add((type(processor).__name__,
                                                          getattr(processor, "slice_size", None)))
    return kinds


@torch.no_grad()
def test_attention_slicing_keeps_the_sparse_causal_attention_and_the_frames(pipe):
    """`enable_attention_slicing` resolves per-layer slice sizes as diffusers does and keeps sparse-causal `attn1`;
    the frames stay (<= 1e-5); stock sliced processors on `attn1` (a naive slicing) would change them."""
    expected = _run(pipe, latents=SHORT_NOISE)
    heads = pipe.unet.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.heads
    try:
        for size, per_layer in (("auto", heads // 2), ("max", 1), (1, 1)):
            pipe.enable_attention_slicing(size)
            assert _attn_layers(pipe) == {"attn1": {("SparseCausalProcessor", per_layer)},
                                          "attn2": {("SlicedAttnProcessor", per_layer)},
                                          "attn_temp": {("SlicedAttnProcessor", per_layer)}}
            assert _diff(_run(pipe, latents=SHORT_NOISE), expected) <= 1e-5
        pipe.disable_attention_slicing()
        assert _attn_layers(pipe) == {"attn1": {("SparseCausalProcessor", None)},
                                      "attn2": {("AttnProcessor2_0", None)},
                                      "attn_temp": {("AttnProcessor2_0", None)}}
        assert np.array_equal(_run(pipe, latents=SHORT_NOISE), expected)
        pipe.unet.unet.set_attention_slice("auto")  # the 2D UNet's own method alone: stock processors on attn1
        assert _attn_layers(pipe)["attn1"] == {("SlicedAttnProcessor", heads // 2)}
        assert _diff(_run(pipe, latents=SHORT_NOISE), expected) > 1e-3
    finally:
        pipe.disable_attention_slicing()
    assert np.array_equal(_run(pipe, latents=SHORT_NOISE), expected)


@torch.no_grad()
def test_xformers_switch_uses_diffusers_checks_and_keeps_the_sparse_causal_attention(pipe):
    try:
        import xformers  # noqa: F401
    except ImportError:
        xformers = None
    before = dict(pipe.unet.unet.attn_processors)
    vae_before = dict(pipe.vae.attn_processors)
    expected = _run(pipe, latents=SHORT_NOISE)
    if xformers is None or not torch.cuda.is_available():
        # diffusers' own error (ModuleNotFoundError without xformers, ValueError without CUDA); nothing changed
        with pytest.raises((ModuleNotFoundError, ValueError), match="xformers|cuda"):
            pipe.enable_xformers_memory_efficient_attention()
        assert all(pipe.unet.unet.attn_processors[k] is v for k, v in before.items())
        assert all(pipe.vae.attn_processors[k] is v for k, v in vae_before.items())
    else:
        gpu = copy.deepcopy(pipe).to("cuda")
        on_sdpa = _run(gpu, latents=SHORT_NOISE.cuda())
        gpu.enable_xformers_memory_efficient_attention()
        attn1 = [p for n, p in gpu.unet.unet.attn_processors.items() if n.endswith("attn1.processor")]
        assert {(type(p).__name__, p.settings.backend) for p in attn1} == {("SparseCausalProcessor", "xformers")}
        assert _diff(_run(gpu, latents=SHORT_NOISE.cuda()), on_sdpa) <= 1e-3
    pipe.disable_xformers_memory_efficient_attention()  # no checks needed: back to SDPA, sparse-causal kept
    assert _attn_layers(pipe)["attn1"] == {("SparseCausalProcessor", None)}
    assert np.array_equal(_run(pipe, latents=SHORT_NOISE), expected)


def _tiny_taesd(depth: int = 2):
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    return AutoencoderTiny(encoder_block_out_channels=(8,) * depth, decoder_block_out_channels=(8,) * depth,
                           num_encoder_blocks=(1,) * depth, num_decoder_blocks=(1,) * depth, latent_channels=4)


@torch.no_grad()
def test_autoencoder_kl_and_autoencoder_tiny_decode_by_diffusers_convention(pipe):
    """Frames = `vae.decode(latents / scaling_factor)[0]` mapped from [-1, 1], for `AutoencoderKL` (the fixture's)
    and `AutoencoderTiny` (a tiny one built here); the denoising does not depend on the VAE."""
    taesd = _tiny_taesd()
    with_taesd = FollowYourPosePipeline(**{**pipe.components, "vae": taesd})
    with_taesd.set_progress_bar_config(disable=True)
    latents = _run(pipe, latents=SHORT_NOISE, output_type="latent")
    for p, vae in ((pipe, pipe.vae), (with_taesd, taesd)):
        assert p.vae_scale_factor == 2
        assert torch.equal(_run(p, latents=SHORT_NOISE, output_type="latent"), latents)
        frames = _run(p, latents=SHORT_NOISE, output_type="pt")
        decoded = vae.decode(latents[0].transpose(0, 1) / vae.config.scaling_factor, return_dict=False)[0]
        assert (frames[0] - (decoded / 2 + 0.5).clamp(0, 1)).abs().max() < 1e-6
    assert (frames - _run(pipe, latents=SHORT_NOISE, output_type="pt")).abs().max() > 1e-3  # another VAE


@torch.no_grad()
def test_vae_scale_factor_and_processors_follow_the_current_vae(pipe):
    p = FollowYourPosePipeline(**pipe.components)
    p.set_progress_bar_config(disable=True)
    assert p.vae_scale_factor == 2 and p.pose_processor.config.vae_scale_factor == 2
    p.vae = _tiny_taesd(depth=3)  # 4x
    assert p.vae_scale_factor == 4
    assert p.video_processor.config.vae_scale_factor == 4 and p.pose_processor.config.vae_scale_factor == 4
    latents = p(None, None, num_frames=2, height=32, width=32, prompt_embeds=pipe.encode_text("x"),
                num_inference_steps=1, output_type="latent").frames
    assert tuple(latents.shape) == (1, 4, 2, 8, 8)  # 32 px / 4
    p.vae = None
    assert p.vae_scale_factor == 8  # diffusers' default without a VAE
    with pytest.raises(ValueError, match="no VAE"):
        p("x", None, num_frames=1, num_inference_steps=1, output_type="np")


@torch.no_grad()
def test_a_text_encoder_only_pipeline_encodes_prompts(pipe):
    text_only = FollowYourPosePipeline(vae=None, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=None,
                                       pose_adapter=None, scheduler=None)
    prompts = ["a person dancing", "a robot"]
    assert torch.equal(text_only.encode_text(prompts), pipe.encode_text(prompts))
    assert torch.equal(text_only.encode_text("x"), pipe.encode_text("x"))
