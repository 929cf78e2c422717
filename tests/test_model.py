"""MagicPoseModel and Image-CFG on tiny real components."""

from __future__ import annotations

import pytest
import torch

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
    return MagicPoseModel(c["unet"], c["appearance_unet"], c["controlnet"])


def _inputs(model, frames=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    latents = torch.randn(frames, 4, 32, 32, generator=gen)
    reference = torch.randn(1, 4, 32, 32, generator=gen)
    text = torch.randn(1, 77, 32, generator=gen)
    uncond = torch.randn(1, 77, 32, generator=gen)
    poses = torch.rand(frames, 3, 64, 64, generator=gen)
    return latents, reference, text, uncond, poses


def test_main_unet_is_frozen_and_stays_in_eval_mode(model):
    model.train()
    assert not model.unet.training
    assert model.appearance_unet.training and model.controlnet.training
    assert not any(p.requires_grad for p in model.unet.parameters())
    assert all(p.requires_grad for p in model.appearance_unet.parameters())
    assert all(p.requires_grad for p in model.controlnet.parameters())


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
    model = MagicPoseModel(c["unet"], c["appearance_unet"], None)
    latents, reference, text, _, poses = _inputs(model, frames=2)
    with torch.no_grad():
        assert model(latents, 10, text.expand(2, -1, -1), reference).shape == latents.shape
        with pytest.raises(ValueError, match="no pose ControlNet"):
            model(latents, 10, text.expand(2, -1, -1), reference, poses)
