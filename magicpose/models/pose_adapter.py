"""Follow-Your-Pose's pose encoder: diffusers' `T2IAdapter` ("full_adapter"), plus the original's key layout.

The original `Adapter(cin=3*64, channels=[320, 640, 1280, 1280], nums_rb=2, ksize=1, sk=True, use_conv=False)` is
T2I-Adapter's full adapter: PixelUnshuffle(8) -> 3x3 conv -> 4 stages x 2 residual blocks (3x3 conv, ReLU, 1x1
conv, + identity), each stage after the first entered through AvgPool2d(2) and, when the width changes, a 1x1
conv. diffusers' `T2IAdapter(adapter_type="full_adapter")` computes the same function; only the parameter names
differ, and `original_adapter_key` / `adapter_key_to_original` translate them (proved numerically on random
weights in `tests/test_fyp_models.py`). One difference that never shows on SD sizes: diffusers pools with
`ceil_mode=True`, the original floors; both agree whenever the feature sides are even (any size divisible by 64).

Features: one `(b f) c h w` tensor per UNet down block, at that block's width and resolution; they are added to the
hidden state after the block's last layer, before it is pushed to the skip list (`VideoUNet` passes them as
diffusers' `down_intrablock_additional_residuals`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from diffusers import T2IAdapter

ORIGINAL_PREFIX = "skeleton_adapter."  # where the adapter sits inside the original UNet3D state dict
_BODY = re.compile(r"^body\.(\d+)\.(block1|block2|in_conv)\.(weight|bias)$")
_OURS = re.compile(r"^adapter\.body\.(\d+)\.(?:resnets\.(\d+)\.(block1|block2)|(in_conv))\.(weight|bias)$")


def build_pose_adapter(
    channels: Sequence[int], downscale_factor: int, num_res_blocks: int = 2, in_channels: int = 3
) -> T2IAdapter:
    """A randomly initialised full adapter whose 4 outputs match a UNet with these `block_out_channels`.

    `downscale_factor` is the VAE's (8 for SD): the first feature map then has the latent's size.
    """
    return T2IAdapter(
        in_channels=in_channels,
        channels=list(channels),
        num_res_blocks=num_res_blocks,
        downscale_factor=downscale_factor,
        adapter_type="full_adapter",
    )


def pose_features(adapter: T2IAdapter, pose: torch.Tensor, scale: float = 1.0) -> list[torch.Tensor]:
    """Adapter features of pose maps `n 3 H W` in [0, 1] (n = b f frames), each multiplied by `scale`."""
    features = adapter(pose.to(adapter.dtype))
    return [feature * scale for feature in features] if scale != 1.0 else list(features)


def original_adapter_key(key: str, num_res_blocks: int = 2) -> str:
    """`body.{s*n+j}.block1.weight` (original, n residual blocks per stage) -> `adapter.body.{s}.resnets.{j}.block1.weight`.

    The stage-entry 1x1 conv lives on the stage's first block in the original (`body.{s*n}.in_conv`) and on the
    stage in diffusers (`adapter.body.{s}.in_conv`). A key that is not an adapter key raises `KeyError`.
    """
    if key.startswith("conv_in."):
        return "adapter." + key
    match = _BODY.match(key)
    if match is None:
        raise KeyError(key)
    index, part, kind = int(match.group(1)), match.group(2), match.group(3)
    stage, block = divmod(index, num_res_blocks)
    if part == "in_conv":
        if block != 0:
            raise KeyError(f"{key}: in_conv only exists on a stage's first block")
        return f"adapter.body.{stage}.in_conv.{kind}"
    return f"adapter.body.{stage}.resnets.{block}.{part}.{kind}"


def adapter_key_to_original(key: str, num_res_blocks: int = 2) -> str:
    """The inverse of `original_adapter_key`."""
    if key.startswith("adapter.conv_in."):
        return key.removeprefix("adapter.")
    match = _OURS.match(key)
    if match is None:
        raise KeyError(key)
    stage, block, part, in_conv, kind = match.groups()
    if in_conv:
        return f"body.{int(stage) * num_res_blocks}.in_conv.{kind}"
    return f"body.{int(stage) * num_res_blocks + int(block)}.{part}.{kind}"
