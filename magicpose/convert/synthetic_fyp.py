"""Synthetic Follow-Your-Pose checkpoints in the original layout, for tests and measurements.

The released files are not redistributable, but their layouts are known (`magicpose.convert.followyourpose`):
`followyourpose_checkpoint-1000/pytorch_model.bin` holds the UNet3D state dict (SD UNet keys, temporal layers,
`skeleton_adapter.*`), `pose_encoder.pth` the bare adapter. These files have the same keys and shapes, random values,
and every temporal branch non-zero so that a conversion that dropped one would show.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from magicpose.convert.followyourpose import RELEASED_VIDEO_OPTIONS, original_state_dict
from magicpose.models.pose_adapter import build_pose_adapter
from magicpose.models.video_unet import VideoUNet
from magicpose.paths import resolve_path


def build_random_fyp(components_dir: str | Path, vae_scale_factor: int = 8, seed: int = 0
                     ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(UNet3D state dict with `skeleton_adapter.*`, `pose_encoder.pth` state dict) of random weights."""
    config = dict(UNet2DConditionModel.load_config(resolve_path(components_dir) / "unet"))
    torch.manual_seed(seed)
    unet = VideoUNet(unet_config=config, **RELEASED_VIDEO_OPTIONS)
    adapter = build_pose_adapter(config["block_out_channels"], vae_scale_factor)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for block in unet.transformer_blocks():  # the released weights trained these away from their zero init
            up = block.conv_temporal.up.weight
            up.copy_(torch.randn(up.shape, generator=gen) * 0.02)
    state = {k: v.detach().clone() for k, v in original_state_dict(unet, adapter).items()}
    encoder = {k.removeprefix("skeleton_adapter."): v for k, v in state.items() if k.startswith("skeleton_adapter.")}
    return state, encoder


def write_synthetic_release(folder: Path, components_dir: str | Path, vae_scale_factor: int = 8, seed: int = 0,
                            module_prefix: bool = False) -> tuple[Path, Path]:
    """`folder/followyourpose_checkpoint-1000/pytorch_model.bin` and `folder/pose_encoder.pth`, as released.

    `module_prefix`: every UNet3D key under `module.` (what a DDP-wrapped `save_state` can write).
    """
    state, encoder = build_random_fyp(components_dir, vae_scale_factor, seed)
    if module_prefix:
        state = {"module." + k: v for k, v in state.items()}
    ckpt_dir = folder / "followyourpose_checkpoint-1000"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    torch.save(state, ckpt_dir / "pytorch_model.bin")
    torch.save(encoder, folder / "pose_encoder.pth")
    return ckpt_dir, folder / "pose_encoder.pth"


def main(argv: list[str] | None = None) -> None:
    """python -m magicpose.convert.synthetic_fyp --components configs/models/sd15 --out DIR"""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--components", default="configs/models/sd15")
    parser.add_argument("--vae-scale-factor", type=int, default=8)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--module-prefix", action="store_true")
    args = parser.parse_args(argv)
    ckpt, encoder = write_synthetic_release(args.out, args.components, args.vae_scale_factor, args.seed,
                                            args.module_prefix)
    print(f"wrote {ckpt / 'pytorch_model.bin'} and {encoder}")


if __name__ == "__main__":
    main()
