"""The temporal motion module (stage 3): the frozen SD UNet and an AnimateDiff `MotionAdapter`, as one
`UNetMotionModel` that shares their modules.

diffusers' `UNetMotionModel.from_unet2d(unet, adapter)` copies both networks' weights into a new model. We build the
same model with the same classes but *share* the modules instead: the spatial layers are the UNet's own modules and
the temporal layers the adapter's. So nothing is held twice (a second 3.4 GB copy of the SD UNet at fp32), training
the motion model trains the adapter itself (what a stage-3 checkpoint and `save_pretrained` write), and the UNet
component stays a plain `UNet2DConditionModel`, usable without the module. The construction is checked: the model is
built on the meta device and every tensor must have been replaced by a shared one.

Shapes (einops): the motion model takes `b c f h w` latents, `(b f) l d` text, `(b f) c h w` ControlNet residuals,
and flattens frames as `(b f)` inside; `denoise_frames` takes and returns `(b f) c h w` like the per-frame UNet.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel
from einops import rearrange
from torch import nn

MOTION_PREFIX = "motion_modules"  # the temporal layers' attribute in every motion block (and in module names)


def is_temporal(name: str) -> bool:
    """A module (or processor) name inside a motion module: the temporal layers, not the UNet's spatial ones."""
    return f".{MOTION_PREFIX}." in f".{name}"


def check_compatible(unet: UNet2DConditionModel, adapter: MotionAdapter) -> None:
    """The adapter fits the UNet: one block of motion modules per UNet block, the same channels and layer counts,
    and the UNet's GroupNorm groups (diffusers' own `from_unet2d` builds its temporal layers with the UNet's groups)."""
    u, a = unet.config, adapter.config
    if tuple(a.block_out_channels) != tuple(u.block_out_channels):
        raise ValueError(f"motion adapter channels {tuple(a.block_out_channels)} do not match the UNet's "
                         f"{tuple(u.block_out_channels)}")
    n = len(u.block_out_channels)
    layers, unet_layers = (_per_block(x, n) for x in (a.motion_layers_per_block, u.layers_per_block))
    if layers != unet_layers:
        raise ValueError(f"motion adapter has {layers} layers per block, the UNet {unet_layers}")
    if a.motion_norm_num_groups != u.norm_num_groups:
        raise ValueError(f"motion adapter norm groups {a.motion_norm_num_groups} differ from the UNet's "
                         f"{u.norm_num_groups}")
    if a.conv_in_channels:
        raise ValueError("motion adapters with their own conv_in (PIA) are not supported")


def _per_block(value: int | Sequence[int], blocks: int) -> list[int]:
    return [value] * blocks if isinstance(value, int) else list(value)


def motion_unet(unet: UNet2DConditionModel, adapter: MotionAdapter) -> UNetMotionModel:
    """A `UNetMotionModel` whose spatial modules are `unet`'s and whose temporal modules are `adapter`'s (shared,
    not copied). Equal to `UNetMotionModel.from_unet2d(unet, adapter)` in every weight and output."""
    check_compatible(unet, adapter)
    if adapter.dtype != unet.dtype:
        adapter.to(unet.dtype)  # as from_unet2d: the temporal layers run in the UNet's dtype
    with torch.device("meta"):
        model = UNetMotionModel.from_unet2d(unet, adapter, load_weights=False)
    for name in ("conv_in", "time_proj", "time_embedding", "conv_norm_out", "conv_act", "conv_out"):
        setattr(model, name, getattr(unet, name))
    for ours, spatial, temporal in zip(model.down_blocks, unet.down_blocks, adapter.down_blocks):
        _share_block(ours, spatial, temporal, "downsamplers")
    for ours, spatial, temporal in zip(model.up_blocks, unet.up_blocks, adapter.up_blocks):
        _share_block(ours, spatial, temporal, "upsamplers")
    if adapter.mid_block is None:
        model.mid_block = unet.mid_block
    else:
        _share_block(model.mid_block, unet.mid_block, adapter.mid_block, None)
    left = [name for name, t in _tensors(model) if t.is_meta]
    if left:
        raise RuntimeError(f"motion UNet: {len(left)} tensors were not shared (e.g. {left[0]}); this diffusers "
                           "version's UNetMotionModel has modules this builder does not know")
    return model


def _share_block(ours: nn.Module, spatial: nn.Module, temporal: nn.Module, sampler: str | None) -> None:
    ours.resnets = spatial.resnets
    if hasattr(ours, "attentions"):
        ours.attentions = spatial.attentions
    if sampler and getattr(ours, sampler) is not None:
        setattr(ours, sampler, getattr(spatial, sampler))
    ours.motion_modules = temporal.motion_modules


def _tensors(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    yield from model.named_parameters(remove_duplicate=False)
    yield from model.named_buffers(remove_duplicate=False)


def zero_init(adapter: MotionAdapter) -> MotionAdapter:
    """Zero the output projection of every motion module (AnimateDiff's `zero_initialize`): each module is then the
    identity (its output is added to its input), so a fresh adapter leaves the per-frame UNet's output unchanged."""
    for name, module in adapter.named_modules():
        if name.endswith("proj_out") and isinstance(module, nn.Linear):
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)
    return adapter


def denoise_frames(
    model: UNetMotionModel,
    sample: torch.Tensor,
    timestep: torch.Tensor | int,
    encoder_hidden_states: torch.Tensor,
    num_frames: int,
    **kwargs: Any,
) -> torch.Tensor:
    """The motion UNet on `(b f) c h w` latents (frames of a video consecutive), returning `(b f) c h w`.

    `timestep` is a scalar, one per video `b`, or one per frame `(b f)` (then equal within a video: a video is
    denoised at one noise level). The rest of `kwargs` (ControlNet residuals, `cross_attention_kwargs`) go to the
    model as they are; residuals are per frame `(b f) c h w`, as diffusers' AnimateDiff ControlNet pipeline feeds them.
    """
    if sample.shape[0] % num_frames:
        raise ValueError(f"batch of {sample.shape[0]} frames is not a multiple of num_frames={num_frames}")
    max_frames = model.config.motion_max_seq_length
    if num_frames > max_frames:
        raise ValueError(f"{num_frames} frames in one pass, but the motion module knows positions up to "
                         f"{max_frames}: use context windows (context_length <= {max_frames})")
    videos = sample.shape[0] // num_frames
    t = torch.as_tensor(timestep, device=sample.device)
    if t.ndim == 1 and t.shape[0] == sample.shape[0] and videos != sample.shape[0]:
        t = t[::num_frames]
    video = rearrange(sample, "(b f) c h w -> b c f h w", f=num_frames)
    out = model(video, t, encoder_hidden_states=encoder_hidden_states, return_dict=False, **kwargs)[0]
    return rearrange(out, "b c f h w -> (b f) c h w")
