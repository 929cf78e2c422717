"""MagicPosePipeline on tiny real components: parity with diffusers, batching, the appearance branch, round-trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, StableDiffusionControlNetPipeline
from PIL import Image
from safetensors.torch import load_file, save_file

from magicpose.errors import UserError
from magicpose.models.components import build_components, load_component
from magicpose.pipelines.magicpose import MagicPosePipeline

from .conftest import random_image, stick_pose, tiny_spec
from .test_model import CallCounter

POSES = [stick_pose(i) for i in range(4)]


def _run(pipe, reference=None, poses=POSES, seed=0, **kwargs):
    """The frames (`f h w 3`) of the one video a single-reference call makes."""
    kwargs.setdefault("num_inference_steps", 3)
    out = pipe(reference, poses, generator=torch.Generator().manual_seed(seed), output_type="np", **kwargs).frames
    assert out.shape[0] == 1  # a batch of one video
    return out[0]


def test_appearance_branch_off_in_balance_mode_equals_diffusers_controlnet_pipeline(tiny_pipe):
    c = tiny_pipe.components
    reference_pipe = StableDiffusionControlNetPipeline(
        vae=c["vae"], text_encoder=c["text_encoder"], tokenizer=c["tokenizer"], unet=c["unet"],
        controlnet=c["controlnet"], scheduler=c["scheduler"], safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    reference_pipe.set_progress_bar_config(disable=True)
    prompt, steps, scale = "a person dancing", 4, 7.5
    for negative in (None, "blurry"):
        expected = reference_pipe(
            prompt, POSES[0], negative_prompt=negative, num_inference_steps=steps, guidance_scale=scale,
            generator=torch.Generator().manual_seed(3), output_type="np",
        ).images
        ours = tiny_pipe(
            None, [POSES[0]], prompt=prompt, negative_prompt=negative, num_inference_steps=steps,
            guidance_scale=scale, guidance_mode="balance", generator=torch.Generator().manual_seed(3),
            output_type="np",
        ).frames[0]
        assert ours.shape == expected.shape
        assert np.abs(ours - expected).max() <= 1e-5


def test_frames_batched_together_equal_each_frame_alone(tiny_pipe):
    reference = random_image(1)
    together = _run(tiny_pipe, reference, frames_per_batch=4)
    alone = _run(tiny_pipe, reference, frames_per_batch=1)
    assert np.abs(together - alone).max() <= 1e-5
    # poses drive the frames: with one shared initial noise, frames still differ
    assert np.abs(together[0] - together[1]).max() > 1e-3


def test_independent_noise_is_also_batch_invariant_with_a_multistep_scheduler(tiny_pipe):
    tiny_pipe.scheduler = DPMSolverMultistepScheduler.from_config(tiny_pipe.scheduler.config)
    reference = random_image(1)
    a = _run(tiny_pipe, reference, frames_per_batch=3, shared_noise=False)
    b = _run(tiny_pipe, reference, frames_per_batch=2, shared_noise=False)
    assert np.abs(a - b).max() <= 1e-5


def test_the_appearance_branch_changes_the_output(tiny_pipe):
    with_ref = _run(tiny_pipe, random_image(1))
    other_ref = _run(tiny_pipe, Image.new("RGB", (64, 64), (255, 0, 0)))
    without = _run(tiny_pipe, None)
    # random tiny weights: effects are small but far above float noise (batching differences are < 1e-6)
    assert np.abs(with_ref - without).max() > 1e-2
    assert np.abs(with_ref - other_ref).max() > 1e-3


def test_appearance_unet_runs_once_per_step_whatever_the_number_of_frames(tiny_pipe):
    appearance, controlnet = CallCounter(tiny_pipe.appearance_unet), CallCounter(tiny_pipe.controlnet)
    _run(tiny_pipe, random_image(1), num_inference_steps=3, frames_per_batch=2)
    assert appearance.batches == [1, 1, 1]
    assert controlnet.batches == [2, 2] * 3  # cond half only, frames in batches of 2


@pytest.mark.parametrize("mode", ["controlnet_important", "balance"])
def test_guidance_scale_one_works(tiny_pipe, mode):
    frames = _run(tiny_pipe, random_image(1), guidance_scale=1.0, guidance_mode=mode)
    assert frames.shape == (4, 64, 64, 3) and np.isfinite(frames).all()


def test_pil_output_and_progress(tiny_pipe):
    frames = tiny_pipe(random_image(1), POSES[:2], num_inference_steps=2, output_type="pil").frames
    assert len(frames) == 1 and len(frames[0]) == 2 and frames[0][0].size == (64, 64)


def test_save_pretrained_from_pretrained_round_trip(tiny_pipe, tmp_path):
    tiny_pipe.save_pretrained(tmp_path / "pipe")
    for sub in ("unet", "appearance_unet", "controlnet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (tmp_path / "pipe" / sub).is_dir()
    expected = _run(tiny_pipe, random_image(1))
    loaded = MagicPosePipeline.from_pretrained(tmp_path / "pipe")
    # and through the project's strict builder
    built = MagicPosePipeline.from_spec(tiny_spec(pretrained=str(tmp_path / "pipe"), components=None))
    for pipe in (loaded, built):
        for name in ("unet", "appearance_unet", "controlnet", "vae", "text_encoder"):
            ours, theirs = tiny_pipe.components[name].state_dict(), pipe.components[name].state_dict()
            assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), name
        pipe.set_progress_bar_config(disable=True)
        # same weights; memory layout may change BLAS summation order by a few ulps
        assert np.abs(_run(pipe, random_image(1)) - expected).max() <= 1e-5


def test_loading_refuses_missing_or_unexpected_weights(tiny_pipe, tmp_path):
    tiny_pipe.controlnet.save_pretrained(tmp_path / "cn")
    weights = tmp_path / "cn" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    removed = sorted(state)[0]
    del state[removed]
    save_file(state, weights)
    with pytest.raises(UserError, match="missing keys"):
        load_component("controlnet", tmp_path / "cn")
    state[removed] = torch.zeros(1)
    state["extra.weight"] = torch.zeros(1)
    save_file(state, weights)
    with pytest.raises(UserError, match="unexpected keys|mismatched"):
        load_component("controlnet", tmp_path / "cn")


def test_builder_seeds_components_and_copies_the_unet_into_the_appearance_unet():
    a = build_components(tiny_spec(seed=0), names=("unet", "appearance_unet"))
    b = build_components(tiny_spec(seed=0), names=("unet", "appearance_unet"))
    c = build_components(tiny_spec(seed=1), names=("unet",))
    for (name, p), q in zip(a["unet"].named_parameters(), b["unet"].parameters()):
        assert torch.equal(p, q), name
    assert any(not torch.equal(p, q) for p, q in zip(a["unet"].parameters(), c["unet"].parameters()))
    for p, q in zip(a["unet"].parameters(), a["appearance_unet"].parameters()):
        assert torch.equal(p, q) and p.data_ptr() != q.data_ptr()


def test_builder_names_missing_folders():
    with pytest.raises(UserError, match="no such folder"):
        build_components(tiny_spec(pretrained="/nonexistent/MagicPose", components=None))
    with pytest.raises(UserError, match="unknown component"):
        build_components(tiny_spec(paths={"unett": "x"}))


def test_xformers_backend_is_refused_clearly_when_unavailable():
    try:
        import xformers  # noqa: F401
    except ImportError:
        with pytest.raises(UserError, match="xformers is not installed"):
            build_components(tiny_spec(attention="xformers"))
    with pytest.raises(UserError, match="unknown backend"):
        build_components(tiny_spec(attention="flash"))


# ------------------------------------------------------------------ diffusers' calling conventions


def _latents(pipe, reference=None, poses=POSES[:1], **kwargs):
    kwargs.setdefault("num_inference_steps", 2)
    return pipe(reference, poses, generator=torch.Generator().manual_seed(0), output_type="latent", **kwargs).frames


@pytest.mark.parametrize("mode", ["controlnet_important", "balance"])
def test_prompt_embeds_give_exactly_the_frames_of_the_prompts(tiny_pipe, mode):
    reference = random_image(1)
    text, negative = tiny_pipe.encode_text("a person dancing"), tiny_pipe.encode_text("blurry")
    # no negative: each mode's default unconditional text (the prompt itself / the empty prompt) follows the embeds
    expected = _latents(tiny_pipe, reference, prompt="a person dancing", guidance_mode=mode)
    assert torch.equal(_latents(tiny_pipe, reference, prompt_embeds=text, guidance_mode=mode), expected)
    expected = _latents(tiny_pipe, reference, prompt="a person dancing", negative_prompt="blurry", guidance_mode=mode)
    given = _latents(tiny_pipe, reference, prompt_embeds=text, negative_prompt_embeds=negative, guidance_mode=mode)
    mixed = _latents(tiny_pipe, reference, prompt="a person dancing", negative_prompt_embeds=negative,
                     guidance_mode=mode)
    assert torch.equal(given, expected) and torch.equal(mixed, expected)
    # and the embeddings are what the frames follow
    other = _latents(tiny_pipe, reference, prompt_embeds=negative, negative_prompt_embeds=negative,
                     guidance_mode=mode)
    assert (other - expected).abs().max() > 1e-4


def test_encode_prompt_needs_no_unet(tiny_pipe):
    expected = tiny_pipe.encode_text("a person")
    tiny_pipe.unet = None
    assert torch.equal(tiny_pipe.encode_text("a person"), expected)
    assert expected.dtype == tiny_pipe.text_encoder.dtype


def test_reference_latents_give_exactly_the_frames_of_the_reference_image(tiny_pipe):
    reference = random_image(1)
    expected = _latents(tiny_pipe, reference, POSES[:2])
    latents = tiny_pipe.encode_reference_image(reference, 64, 64)
    given = tiny_pipe(
        pose_images=POSES[:2], reference_latents=latents, num_inference_steps=2,
        generator=torch.Generator().manual_seed(0), output_type="latent",
    ).frames
    assert torch.equal(given, expected)


def test_callback_runs_once_per_timestep_after_every_batch_with_all_frames(tiny_pipe):
    reference, calls = random_image(1), []

    def record(pipe, step_index, timestep, callback_kwargs):
        calls.append((step_index, timestep, callback_kwargs))  # no copies: the pipeline must not overwrite them
        return {}

    names = ["latents", "prompt_embeds", "negative_prompt_embeds"]
    frames = _latents(tiny_pipe, reference, POSES[:3], frames_per_batch=2, prompt="x", negative_prompt="y",
                      callback_on_step_end=record, callback_on_step_end_tensor_inputs=names)
    assert [i for i, _, _ in calls] == [0, 1] and tiny_pipe.num_timesteps == 2
    assert torch.equal(torch.stack([t for _, t, _ in calls]), tiny_pipe.scheduler.timesteps)
    assert all(sorted(kwargs) == sorted(names) for _, _, kwargs in calls)
    assert calls[0][2]["latents"].shape == frames.shape  # all 3 frames, not a batch of 2
    assert torch.equal(calls[-1][2]["latents"], frames)  # the last step's latents are the output
    assert not torch.equal(calls[0][2]["latents"], calls[1][2]["latents"])  # each step's latents stay its own
    assert torch.equal(calls[0][2]["prompt_embeds"], tiny_pipe.encode_text("x"))
    assert torch.equal(calls[0][2]["negative_prompt_embeds"], tiny_pipe.encode_text("y"))
    # a callback that changes nothing changes nothing
    assert torch.equal(frames, _latents(tiny_pipe, reference, POSES[:3], frames_per_batch=2, prompt="x",
                                        negative_prompt="y"))


def test_latents_returned_by_the_callback_replace_the_pipelines(tiny_pipe):
    reference = random_image(1)
    plain = _latents(tiny_pipe, reference)
    copied = _latents(tiny_pipe, reference, callback_on_step_end=lambda p, i, t, kw: {"latents": kw["latents"].clone()})
    halved = _latents(tiny_pipe, reference,
                      callback_on_step_end=lambda p, i, t, kw: {"latents": kw["latents"] * 0.5} if i == 0 else {})
    assert torch.equal(copied, plain)
    assert (halved - plain).abs().max() > 1e-2
    final = torch.full_like(plain, 0.25)
    last = _latents(tiny_pipe, reference,
                    callback_on_step_end=lambda p, i, t, kw: {"latents": final} if i == p.num_timesteps - 1 else {})
    assert torch.equal(last, final)


def test_conflicting_or_unknown_inputs_are_refused(tiny_pipe):
    reference = random_image(1)
    text = tiny_pipe.encode_text("x")
    latents = tiny_pipe.encode_reference_image(reference, 64, 64)
    cases = [
        (dict(prompt="x", prompt_embeds=text), "prompt or prompt_embeds"),
        (dict(prompt="", prompt_embeds=text), "prompt or prompt_embeds"),
        (dict(negative_prompt="y", negative_prompt_embeds=text), "negative_prompt or negative_prompt_embeds"),
        (dict(prompt_embeds=text[0]), "b l d"),
        (dict(prompt_embeds=text.expand(2, -1, -1), reference_latents=latents.expand(3, -1, -1, -1),
              reference_image=None), "same length or length 1"),
        (dict(negative_prompt_embeds=text[:, :5]), "shape of the prompt's"),
        (dict(reference_latents=latents), "reference_image or reference_latents"),
        (dict(reference_image=None, reference_latents=latents[..., :4]), "reference_latents must be"),
        (dict(callback_on_step_end=lambda *a: {}, callback_on_step_end_tensor_inputs=["latents", "noise_pred"]),
         r"\['noise_pred'\]"),
    ]
    for kwargs, match in cases:
        kwargs.setdefault("reference_image", reference)
        with pytest.raises(ValueError, match=match):
            tiny_pipe(pose_images=POSES[:1], num_inference_steps=1, **kwargs)
