"""MagicPoseModel and Image-CFG on tiny real components."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from magicpose.models.magicpose import GuidanceInputs, MagicPoseModel, guided_prediction


class CallCounter:
    """Counts forward calls of a module and the batch sizes it saw."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.batches: list[int] = []
        module.register_forward_hook(lambda _m, args, _out: self.batches.append(args[0].shape[0]))

    @property
    def calls(self) -> int:
        return len(self.batches)


@pytest.fixture
def model(tiny_components):
    c = tiny_components
    model = MagicPoseModel(c["unet"], c["appearance_unet"], c["controlnet"]).prepare()
    model.unet.requires_grad_(False)  # as MagicPoseTraining does: MagicPose keeps the SD UNet frozen
    return model


def _inputs(model, frames=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    latents = torch.randn(frames, 4, 32, 32, generator=gen)
    reference = torch.randn(1, 4, 32, 32, generator=gen)
    text = torch.randn(1, 77, 32, generator=gen)
    uncond = torch.randn(1, 77, 32, generator=gen)
    poses = torch.rand(frames, 3, 64, 64, generator=gen)
    return latents, reference, text, uncond, poses


def test_wrapping_freezes_nothing_and_a_frozen_main_unet_stays_in_eval_mode(tiny_components):
    # the wrapper stores; whoever trains freezes (MagicPoseTraining freezes the main UNet, see test_training)
    c = tiny_components
    model = MagicPoseModel(c["unet"], c["appearance_unet"], c["controlnet"]).prepare()
    assert all(p.requires_grad for p in model.parameters())
    model.train()
    assert model.unet.training
    model.unet.requires_grad_(False)
    model.train()
    assert not model.unet.training
    assert model.appearance_unet.training and model.controlnet.training
    assert all(p.requires_grad for p in model.appearance_unet.parameters())
    assert all(p.requires_grad for p in model.controlnet.parameters())


def test_prepare_keeps_the_installed_processors_and_a_stock_swap_is_refused(model):
    processors = dict(model.unet.attn_processors)
    assert model.attention == "sdpa"
    model.prepare()
    assert all(p is processors[n] for n, p in model.unet.attn_processors.items())  # nothing reinstalled
    latents, reference, text, _, _ = _inputs(model, frames=2)
    bank = model.encode_reference(reference, 10, text)
    model.unet.set_attn_processor(AttnProcessor2_0())  # what a diffusers method that swaps processors does
    assert model.attention is None
    with pytest.raises(RuntimeError, match="ignored the reference bank"):
        model.denoise(latents, 10, text, bank)
    model.appearance_unet.set_attn_processor(AttnProcessor2_0())
    with pytest.raises(RuntimeError, match="recorded nothing"):
        model.encode_reference(reference, 10, text)


@torch.no_grad()
def test_controlnet_important_is_eps_u_plus_scale_times_difference(model):
    latents, reference, text, uncond, poses = _inputs(model)
    t = torch.tensor(500)
    bank = model.encode_reference(reference, t, text)
    inputs = GuidanceInputs(text, uncond, poses, bank)
    guided = guided_prediction(model, latents, t, inputs, 7.0, "controlnet_important")

    f = latents.shape[0]
    residuals = model.pose_residuals(latents, t, text.expand(f, -1, -1), poses)
    eps_c = model.denoise(latents, t, text.expand(f, -1, -1), bank, residuals)
    eps_u = model.denoise(latents, t, uncond.expand(f, -1, -1))  # plain UNet: no bank, no pose
    torch.testing.assert_close(guided, eps_u + 7.0 * (eps_c - eps_u), atol=1e-5, rtol=1e-5)
    assert (eps_c - eps_u).abs().max() > 1e-3


@torch.no_grad()
def test_guidance_spends_no_controlnet_pass_on_the_unconditional_half(model):
    latents, reference, text, uncond, poses = _inputs(model, frames=4)
    controlnet, unet = CallCounter(model.controlnet), CallCounter(model.unet)
    bank = model.encode_reference(reference, 10, text)
    inputs = GuidanceInputs(text, uncond, poses, bank)

    guided_prediction(model, latents, 10, inputs, 7.0, "controlnet_important")
    assert controlnet.batches == [4] and unet.batches == [4, 4]

    guided_prediction(model, latents, 10, inputs, 7.0, "balance")  # text CFG: pose in both halves, one pass
    assert controlnet.batches[1:] == [8] and unet.batches[2:] == [8]


@pytest.mark.parametrize("mode", ["controlnet_important", "balance"])
@torch.no_grad()
def test_scale_one_is_the_conditional_prediction_alone(model, mode):
    latents, reference, text, uncond, poses = _inputs(model)
    unet = CallCounter(model.unet)
    bank = model.encode_reference(reference, 10, text)
    out = guided_prediction(model, latents, 10, GuidanceInputs(text, uncond, poses, bank), 1.0, mode)
    f = latents.shape[0]
    expected = model(latents, 10, text.expand(f, -1, -1), reference, poses)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)
    assert unet.batches == [f, f]  # guided call once, the reference forward once


def test_training_forward_reaches_appearance_unet_and_controlnet_but_not_the_unet(model):
    latents, reference, text, _, poses = _inputs(model, frames=2)
    refs = torch.cat([reference, reference + 0.1])  # one reference per target
    t = torch.tensor([100, 900])
    loss = model(latents, t, text.expand(2, -1, -1), refs, poses).pow(2).mean()
    loss.backward()
    assert all(p.grad is None for p in model.unet.parameters())
    assert all(p.grad is not None for p in model.controlnet.parameters())
    reached = [n for n, p in model.appearance_unet.named_parameters() if p.grad is not None]
    assert any(n.startswith("down_blocks") for n in reached) and any(n.startswith("up_blocks") for n in reached)


def test_stage1_model_without_controlnet_runs_and_refuses_poses(tiny_components):
    c = tiny_components
    model = MagicPoseModel(c["unet"], c["appearance_unet"], None).prepare()
    latents, reference, text, _, poses = _inputs(model, frames=2)
    with torch.no_grad():
        assert model(latents, 10, text.expand(2, -1, -1), reference).shape == latents.shape
        with pytest.raises(ValueError, match="no pose ControlNet"):
            model(latents, 10, text.expand(2, -1, -1), reference, poses)
