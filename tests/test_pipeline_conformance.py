"""MagicPosePipeline behaves like a diffusers video pipeline (our own conformance tests, tiny components).

Outputs are a batch of videos for every `output_type`, inputs batch (references, prompts, `num_videos_per_prompt`),
and the diffusers methods that swap attention processors keep the appearance branch on.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import AutoencoderTiny
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.utils import export_to_video

from magicpose.media import count_frames
from magicpose.models.attention import ReferenceReadProcessor
from magicpose.pipelines.magicpose import MagicPosePipeline

from .conftest import random_image, stick_pose
from .test_model import CallCounter

POSES = [stick_pose(i) for i in range(3)]


def _call(pipe, reference, poses=POSES, seeds=(0,), **kwargs):
    kwargs.setdefault("num_inference_steps", 2)
    kwargs.setdefault("output_type", "np")
    generator = [torch.Generator().manual_seed(s) for s in seeds] if len(seeds) > 1 else \
        torch.Generator().manual_seed(seeds[0])
    return pipe(reference, poses, generator=generator, **kwargs)


def test_frames_are_a_batch_of_videos_in_every_output_type(tiny_pipe, tmp_path):
    reference = random_image(1)
    np_frames = _call(tiny_pipe, reference).frames
    pt_frames = _call(tiny_pipe, reference, output_type="pt").frames
    pil_frames = _call(tiny_pipe, reference, output_type="pil").frames
    latents = _call(tiny_pipe, reference, output_type="latent").frames
    assert np_frames.shape == (1, 3, 64, 64, 3)
    assert pt_frames.shape == (1, 3, 3, 64, 64) and isinstance(pt_frames, torch.Tensor)
    assert len(pil_frames) == 1 and len(pil_frames[0]) == 3 and pil_frames[0][0].size == (64, 64)
    assert latents.shape == (1, 3, 4, 32, 32)
    np.testing.assert_allclose(pt_frames.permute(0, 1, 3, 4, 2).numpy(), np_frames, atol=1e-6)
    for i, image in enumerate(pil_frames[0]):
        assert np.array_equal(np.asarray(image), np.rint(np_frames[0, i] * 255).astype(np.uint8))
    # diffusers' idiom writes the first video
    for name, frames in (("np.mp4", np_frames[0]), ("pil.mp4", pil_frames[0])):
        export_to_video(frames, str(tmp_path / name), fps=4)
        assert count_frames(tmp_path / name) == 3


def test_dict_and_tuple_outputs_are_the_same(tiny_pipe):
    reference = random_image(1)
    as_dict = _call(tiny_pipe, reference).frames
    as_tuple = _call(tiny_pipe, reference, return_dict=False)
    assert isinstance(as_tuple, tuple) and np.array_equal(as_tuple[0], as_dict)


def test_a_batch_of_references_equals_each_reference_alone(tiny_pipe):
    refs = [random_image(1), random_image(2)]
    appearance = CallCounter(tiny_pipe.appearance_unet)
    together = _call(tiny_pipe, refs, seeds=(3, 4)).frames
    assert appearance.batches == [2, 2]  # one pass per step for both references
    alone = [_call(tiny_pipe, ref, seeds=(seed,)).frames[0] for ref, seed in zip(refs, (3, 4))]
    assert together.shape == (2, 3, 64, 64, 3)
    for video, expected in zip(together, alone):
        assert np.abs(video - expected).max() <= 1e-5
    assert np.abs(together[0] - together[1]).max() > 1e-3  # each reference serves its own video


def test_a_batch_of_prompts_equals_each_prompt_alone(tiny_pipe):
    reference, prompts = random_image(1), ["a dancer", "a robot"]
    together = _call(tiny_pipe, reference, seeds=(5, 6), prompt=prompts, negative_prompt="blurry").frames
    for video, prompt, seed in zip(together, prompts, (5, 6)):
        expected = _call(tiny_pipe, reference, seeds=(seed,), prompt=prompt, negative_prompt="blurry").frames[0]
        assert np.abs(video - expected).max() <= 1e-5
    # batched embeddings are the prompts' path
    embeds = tiny_pipe.encode_text(prompts)
    assert embeds.shape[0] == 2
    by_embeds = _call(tiny_pipe, reference, seeds=(5, 6), prompt_embeds=embeds,
                      negative_prompt_embeds=tiny_pipe.encode_text("blurry").expand(2, -1, -1)).frames
    assert np.abs(by_embeds - together).max() <= 1e-6


def test_num_videos_per_prompt_makes_that_many_different_videos(tiny_pipe):
    reference = random_image(1)
    out = _call(tiny_pipe, reference, num_videos_per_prompt=2).frames
    assert out.shape == (2, 3, 64, 64, 3)
    assert np.abs(out[0] - out[1]).max() > 1e-3  # their own noise
    # with two prompts: (prompt, video) laid out as diffusers does, prompt-major
    two = _call(tiny_pipe, reference, prompt=["a", "b"], num_videos_per_prompt=2, seeds=(1, 2, 3, 4)).frames
    assert two.shape[0] == 4
    second = _call(tiny_pipe, reference, prompt="b", num_videos_per_prompt=2, seeds=(3, 4)).frames
    assert np.abs(two[2:] - second).max() <= 1e-5
    with pytest.raises(ValueError, match="one per video"):
        _call(tiny_pipe, reference, num_videos_per_prompt=2, seeds=(1, 2, 3))


def test_pose_sequences_per_reference(tiny_pipe):
    refs, sequences = [random_image(1), random_image(2)], [POSES, POSES[::-1]]
    together = _call(tiny_pipe, refs, sequences, seeds=(0, 1)).frames
    for video, ref, poses, seed in zip(together, refs, sequences, (0, 1)):
        assert np.abs(video - _call(tiny_pipe, ref, poses, seeds=(seed,)).frames[0]).max() <= 1e-5
    with pytest.raises(ValueError, match="same length"):
        _call(tiny_pipe, refs, [POSES, POSES[:2]], seeds=(0, 1))


def _processors_during_the_call(pipe, reference, **kwargs):
    """The frames, and the main UNet's processors as they are in the middle of the call."""
    during = {}

    def look(p, i, t, kw):
        during.update(p.unet.attn_processors)
        return {}

    frames = _call(pipe, reference, callback_on_step_end=look, **kwargs).frames
    return frames, during


def test_attention_slicing_keeps_the_appearance_branch_and_the_frames(tiny_pipe):
    reference = random_image(1)
    plain = _call(tiny_pipe, reference).frames
    without_reference = _call(tiny_pipe, None).frames
    for size in ("auto", "max", 1):
        tiny_pipe.enable_attention_slicing(size)
        at_rest = {type(p).__name__ for p in tiny_pipe.unet.attn_processors.values()}
        assert at_rest == {"SlicedAttnProcessor"}, at_rest  # diffusers' own method did its own thing
        sliced, during = _processors_during_the_call(tiny_pipe, reference)
        attn1 = [p for n, p in during.items() if n.endswith("attn1.processor")]
        assert attn1 and all(isinstance(p, ReferenceReadProcessor) and p.settings.slice_size for p in attn1)
        assert np.abs(sliced - plain).max() <= 1e-5, size
        assert np.abs(sliced - without_reference).max() > 1e-2  # the reference still matters
        assert {type(p).__name__ for p in tiny_pipe.unet.attn_processors.values()} == at_rest  # put back
    tiny_pipe.disable_attention_slicing()
    frames, during = _processors_during_the_call(tiny_pipe, reference)
    assert {p.settings.slice_size for p in during.values()} == {None}
    assert np.abs(frames - plain).max() <= 1e-6


def test_xformers_enabling_keeps_the_appearance_branch(tiny_pipe):
    reference = random_image(1)
    plain = _call(tiny_pipe, reference).frames
    try:
        tiny_pipe.enable_xformers_memory_efficient_attention()
    except (ModuleNotFoundError, ValueError) as err:  # diffusers' own refusal: no xformers, or no CUDA
        assert "xformers" in str(err) or "cuda" in str(err).lower()
        assert tiny_pipe.attention == "sdpa"  # nothing was switched off on the way
        assert np.array_equal(_call(tiny_pipe, reference).frames, plain)
        return
    assert tiny_pipe.attention == "xformers"  # pragma: no cover (CUDA machines with xformers)
    frames, during = _processors_during_the_call(tiny_pipe, reference)
    assert all(isinstance(p, ReferenceReadProcessor) and p.backend == "xformers"
               for n, p in during.items() if n.endswith("attn1.processor"))
    assert np.abs(frames - plain).max() <= 1e-3


def test_default_processors_set_behind_the_pipelines_back_are_taken_over(tiny_pipe):
    """diffusers' test suite calls `set_default_attn_processor()` on every component; a user may set any stock
    processor. The next call still runs the appearance branch, with the backend those processors imply."""
    reference = random_image(1)
    plain = _call(tiny_pipe, reference).frames
    for net in (tiny_pipe.unet, tiny_pipe.appearance_unet, tiny_pipe.controlnet):
        net.set_default_attn_processor()  # diffusers' plain AttnProcessor everywhere
    frames, during = _processors_during_the_call(tiny_pipe, reference)
    assert all(isinstance(p, ReferenceReadProcessor) for n, p in during.items() if n.endswith("attn1.processor"))
    assert np.abs(frames - plain).max() <= 1e-5
    tiny_pipe.unet.set_attn_processor(AttnProcessor2_0())
    assert np.abs(_call(tiny_pipe, reference).frames - plain).max() <= 1e-6


def test_cross_attention_kwargs_reach_the_processors_next_to_the_bank(tiny_pipe):
    seen = []

    class Probe(ReferenceReadProcessor):
        def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                     reference_bank=None, probe=None):
            seen.append((probe, reference_bank is not None))
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb, reference_bank)

    name = next(n for n in tiny_pipe.unet.attn_processors if n.endswith("attn1.processor"))
    tiny_pipe.unet.set_attn_processor({**tiny_pipe.unet.attn_processors, name: Probe(name.removesuffix(".processor"))})
    _call(tiny_pipe, random_image(1), num_inference_steps=1, cross_attention_kwargs={"probe": "here"})
    assert ("here", True) in seen  # the user's kwargs and our bank arrive together


def test_autoencoder_tiny_and_kl_both_run(tiny_components):
    reference = random_image(1)
    kl = MagicPosePipeline(**tiny_components)
    tiny_vae = AutoencoderTiny(encoder_block_out_channels=(16, 16), decoder_block_out_channels=(16, 16),
                               num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1), latent_channels=4)
    taesd = MagicPosePipeline(**{**tiny_components, "vae": tiny_vae})
    for pipe in (kl, taesd):
        pipe.set_progress_bar_config(disable=True)
        frames = _call(pipe, reference).frames
        assert frames.shape == (1, 3, 64, 64, 3) and np.isfinite(frames).all()
    assert taesd.vae_scale_factor == kl.vae_scale_factor == 2


def test_vae_scale_factor_follows_the_vae_and_a_text_only_pipeline_encodes(tiny_components):
    pipe = MagicPosePipeline(**tiny_components)
    assert pipe.vae_scale_factor == 2 and pipe.image_processor.config.vae_scale_factor == 2
    pipe.vae = None
    assert pipe.vae_scale_factor == 1 and pipe.image_processor.config.vae_scale_factor == 1
    text_only = MagicPosePipeline(None, tiny_components["text_encoder"], tiny_components["tokenizer"], None, None,
                                  None, None)
    assert torch.equal(text_only.encode_text(["a", "b"]), pipe.encode_text(["a", "b"]))
