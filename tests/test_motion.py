"""The motion module (stage 3): a UNetMotionModel that shares the frozen UNet's and the adapter's modules, read by
the reference bank on its spatial layers only, and an optional pipeline component that changes nothing when absent."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel

from magicpose.models.attention import (
    BankAwareProcessor,
    ReferenceReadProcessor,
    self_attention_names,
)
from magicpose.models.components import build_components
from magicpose.models.magicpose import MagicPoseModel
from magicpose.models.motion import denoise_frames, motion_unet, zero_init
from magicpose.pipelines.magicpose import MagicPosePipeline
from tests.conftest import random_image, stick_pose, tiny_spec, wake_controlnet

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests/fixtures/magicpose/tiny_latents_before_motion.pt"
POSES = [stick_pose(i) for i in range(3)]


def _adapter(seed: int = 0, std: float | None = 0.05) -> MotionAdapter:
    torch.manual_seed(seed)
    adapter = MotionAdapter.from_config(MotionAdapter.load_config(REPO / "configs/models/tiny/motion_adapter"))
    if std is None:
        return zero_init(adapter)
    with torch.no_grad():  # every weight matters, including the zero-initialised output projections
        for p in adapter.parameters():
            p.add_(torch.randn_like(p) * std)
    return adapter


def _unet() -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(REPO / "configs/models/tiny/unet"))


def _pipe(motion_adapter: MotionAdapter | None) -> MagicPosePipeline:
    parts = build_components(tiny_spec(motion_module=False))
    wake_controlnet(parts["controlnet"])
    parts["motion_adapter"] = motion_adapter
    pipe = MagicPosePipeline(**parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _latents(pipe, poses=POSES, mode="controlnet_important", **kwargs) -> torch.Tensor:
    kwargs.setdefault("output_type", "latent")
    return pipe(random_image(0), poses, num_inference_steps=3, guidance_mode=mode,
                generator=torch.Generator().manual_seed(0), **kwargs).frames


def test_shared_motion_unet_equals_diffusers_from_unet2d_and_holds_nothing_twice():
    unet, adapter = _unet(), _adapter()
    ours, theirs = motion_unet(unet, adapter), UNetMotionModel.from_unet2d(unet, adapter)
    a, b = ours.state_dict(), theirs.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    owned = {id(p) for p in [*unet.parameters(), *adapter.parameters()]}
    assert {id(p) for p in ours.parameters()} == owned  # every parameter is the UNet's or the adapter's
    x, text = torch.randn(8, 4, 32, 32), torch.randn(8, 7, 32)
    assert torch.equal(denoise_frames(ours, x, 10, text, 4), denoise_frames(theirs, x, 10, text, 4))
    with torch.no_grad():  # training the motion model trains the adapter itself
        ours.down_blocks[0].motion_modules[0].proj_out.weight.add_(1.0)
    assert torch.equal(ours.down_blocks[0].motion_modules[0].proj_out.weight,
                       adapter.down_blocks[0].motion_modules[0].proj_out.weight)


def test_incompatible_adapter_is_refused():
    config = MotionAdapter.load_config(REPO / "configs/models/tiny/motion_adapter")
    with pytest.raises(ValueError, match="channels"):
        motion_unet(_unet(), MotionAdapter.from_config({**config, "block_out_channels": [32, 32]}))
    with pytest.raises(ValueError, match="norm groups"):
        motion_unet(_unet(), MotionAdapter.from_config({**config, "motion_norm_num_groups": 4}))


def test_frames_see_each_other_only_through_the_motion_module():
    unet, adapter = _unet(), _adapter()
    x, text = torch.randn(4, 4, 32, 32), torch.randn(4, 7, 32)
    changed = x.clone()
    changed[0] += 1.0
    with torch.no_grad():
        temporal = motion_unet(unet, adapter)
        assert (denoise_frames(temporal, x, 10, text, 4) - denoise_frames(temporal, changed, 10, text, 4))[3].abs().max() > 1e-4
        assert torch.equal(unet(x, 10, text).sample[3], unet(changed, 10, text).sample[3])


def test_reference_processors_sit_on_the_spatial_layers_only():
    model = MagicPoseModel(_unet(), _unet(), None, _adapter()).prepare()
    processors = model.main_unet.attn_processors
    temporal = [n for n in processors if ".motion_modules." in n]
    assert temporal and all(type(processors[n]) is BankAwareProcessor for n in temporal)
    spatial = [f"{n}.processor" for n in self_attention_names(model.main_unet)]
    assert spatial and all(isinstance(processors[n], ReferenceReadProcessor) for n in spatial)
    assert not any(".motion_modules." in n for n in spatial)
    assert model.attention == "sdpa"


def test_pipeline_without_motion_adapter_equals_the_outputs_from_before_it_existed():
    pipe = _pipe(None)
    golden = torch.load(GOLDEN, weights_only=True)  # written by the pipeline before the motion module was added
    for mode in ("controlnet_important", "balance"):
        # bit for bit on the machine that wrote the file (measured: max difference 0.0); another CPU's BLAS may sum
        # in another order, so allow float rounding (latents reach ~6 after guidance at scale 7)
        assert (_latents(pipe, mode=mode) - golden[mode]).abs().max() <= 1e-4, mode


@pytest.mark.parametrize("mode", ["controlnet_important", "balance"])
def test_zero_initialised_motion_module_equals_the_per_frame_pipeline(mode):
    """Frames in [0, 1] within 1e-5. (The latents, up to ~6 after guidance at scale 7, agree to a few ulps: the
    motion UNet embeds the timestep once per video rather than once per frame, a different GEMM shape.)"""
    per_frame = _latents(_pipe(None), mode=mode, output_type="np")
    pipe = _pipe(_adapter(std=None))
    assert np.abs(_latents(pipe, mode=mode, output_type="np") - per_frame).max() <= 1e-5
    # overlapping windows of a zero-initialised module too
    windowed = _latents(pipe, mode=mode, context_length=2, context_overlap=1, output_type="np")
    assert np.abs(windowed - per_frame).max() <= 1e-5


def test_a_trained_motion_module_changes_the_video_and_windows_cover_every_frame():
    per_frame = _latents(_pipe(None))
    pipe = _pipe(_adapter())
    whole = _latents(pipe)
    assert (whole - per_frame).abs().max() > 1e-3
    # a window as long as the clip is the plain single pass
    assert torch.equal(_latents(pipe, context_length=3, context_overlap=1), whole)
    windowed = _latents(pipe, context_length=2, context_overlap=1)
    assert windowed.shape == whole.shape and torch.isfinite(windowed).all()


def test_window_longer_than_the_motion_module_positions_is_refused():
    pipe = _pipe(_adapter())
    limit = pipe.motion_adapter.config.motion_max_seq_length
    with pytest.raises(ValueError, match="frame positions"):
        _latents(pipe, context_length=limit + 1)


def test_diffusers_attention_methods_keep_both_branches_on():
    pipe = _pipe(_adapter())
    expected = _latents(pipe, output_type="np")
    pipe.enable_attention_slicing(1)  # sliced attention: the same frames up to float rounding
    assert np.abs(_latents(pipe, output_type="np") - expected).max() <= 1e-5
    pipe.unet.set_default_attn_processor()
    assert np.abs(_latents(pipe, output_type="np") - expected).max() <= 1e-5


def test_save_pretrained_round_trip_with_the_motion_adapter(tmp_path):
    pipe = _pipe(_adapter())
    pipe.save_pretrained(tmp_path / "pipe")
    assert (tmp_path / "pipe/motion_adapter/config.json").is_file()
    expected = _latents(pipe, output_type="np")
    loaded = MagicPosePipeline.from_pretrained(tmp_path / "pipe")
    built = MagicPosePipeline.from_spec(tiny_spec(pretrained=str(tmp_path / "pipe"), components=None))
    for other in (loaded, built):
        ours, theirs = pipe.motion_adapter.state_dict(), other.motion_adapter.state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
        other.set_progress_bar_config(disable=True)
        assert np.abs(_latents(other, output_type="np") - expected).max() <= 1e-5  # memory layout: a few ulps
    # motion_module: false leaves the saved adapter out
    plain = MagicPosePipeline.from_spec(tiny_spec(pretrained=str(tmp_path / "pipe"), components=None,
                                                  motion_module=False))
    assert plain.motion_adapter is None


def test_builder_makes_a_zero_initialised_adapter_only_when_asked():
    assert build_components(tiny_spec(), names=("motion_adapter",))["motion_adapter"] is None
    adapter = build_components(tiny_spec(motion_module=True), names=("motion_adapter",))["motion_adapter"]
    outs = [m.proj_out for m in adapter.modules() if hasattr(m, "proj_out")]
    assert outs and all(not o.weight.any() and not o.bias.any() for o in outs)


def test_clip_batch_reads_one_reference_per_clip():
    """Training on clips: `(r f)` frames, reference r serving clip r, equals each clip run alone."""
    parts = build_components(tiny_spec(motion_module=False))
    wake_controlnet(parts["controlnet"])
    model = MagicPoseModel(parts["unet"], parts["appearance_unet"], parts["controlnet"], _adapter()).prepare()
    f = 3
    torch.manual_seed(1)
    sample, refs = torch.randn(2 * f, 4, 32, 32), torch.randn(2, 4, 32, 32)
    poses, text = torch.rand(2 * f, 3, 64, 64), torch.randn(1, 77, 32)
    t = torch.tensor([5] * f + [700] * f)
    with torch.no_grad():
        both = model(sample, t, text, refs, poses, num_frames=f)
        alone = [model(sample[i * f:(i + 1) * f], t[i * f:(i + 1) * f], text, refs[i:i + 1], poses[i * f:(i + 1) * f],
                       num_frames=f) for i in range(2)]
    assert (both - torch.cat(alone)).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="num_frames"):
        model.denoise(sample, t, text)


def test_spec_default_keeps_the_pipeline_per_frame():
    spec = tiny_spec()
    assert spec.motion_module is None
    assert MagicPosePipeline.from_spec(replace(spec)).motion_adapter is None
