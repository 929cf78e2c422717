"""Synthetic checkpoints in the original layouts, for tests and measurements.

The released files (MagicDance's `model_state-*.th`, ControlNet / SD single files, Follow-Your-Pose's
`followyourpose_checkpoint-1000` and `pose_encoder.pth`) are not redistributable, but their key layouts are known
(`magicpose.convert.magicdance`, `magicpose.convert.followyourpose`), so files with the same keys and shapes and random
values, made from our (e.g. randomly initialised) components by inverting the mapping, exercise the same code paths.

    write_synthetic_checkpoint("stage2.th", "configs/models/sd15")        # a full-size 9.15 GB stage-2 file
    write_synthetic_release(Path("fyp"), "configs/models/sd15")           # checkpoint-1000/ + pose_encoder.pth
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from magicpose.convert import ldm
from magicpose.convert.followyourpose import RELEASED_VIDEO_OPTIONS
from magicpose.convert.followyourpose import original_state_dict as fyp_original_state_dict
from magicpose.convert.magicdance import ACM, CLIP, CONTROL, POSE, UNET, VAE
from magicpose.models.pose_adapter import build_pose_adapter
from magicpose.models.video_unet import VideoUNet
from magicpose.paths import resolve_path

# ----- MagicDance / ControlNet / SD (LDM layout) -------------------------------------------------------------
LAYOUTS = ("stage2", "stage1", "init", "controlnet", "sd")


def component_state(kind: str, model: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    """One component in LDM layout, under `prefix` (tensors shared with the model)."""
    config = {} if kind == "clip" else dict(model.config)
    state = ldm.to_ldm(kind, model.state_dict(), config)
    return {prefix + key: value for key, value in state.items()}


def ldm_extras(hint_model_channels: int | None = None, acm_prefix: str | None = None, text_positions: int = 77
               ) -> dict[str, torch.Tensor]:
    """What the original's state dicts hold besides weights: schedule buffers, CLIP position_ids, the unused hint."""
    out = dict(ldm.ldm_schedule_buffers({}))
    out[CLIP + ldm.CLIP_POSITION_IDS] = torch.arange(text_positions).unsqueeze(0)
    if acm_prefix is not None and hint_model_channels is not None:
        gen = torch.Generator().manual_seed(0)
        for key, value in ldm.ldm_hint_block_placeholder(3, hint_model_channels).items():
            out[acm_prefix + key] = torch.randn(value.shape, generator=gen)
    return out


def original_state_dict(components: dict[str, torch.nn.Module], layout: str = "stage2") -> dict[str, torch.Tensor]:
    """`model_state-110000.th` (stage2), `model_state-10000.th` (stage1), `control_sd15_ini.ckpt` (init),
    `control_v11p_sd15_openpose.pth` (controlnet) or an SD-1.5 `.ckpt` (sd), from our components."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}")
    if layout == "controlnet":
        return component_state("controlnet", components["controlnet"], CONTROL)
    state = {}
    state.update(component_state("unet", components["unet"], UNET))
    state.update(component_state("vae", components["vae"], VAE))
    state.update(component_state("clip", components["text_encoder"], CLIP))
    channels = components["unet"].config.block_out_channels[0]
    positions = components["text_encoder"].config.max_position_embeddings
    if layout == "stage2":
        state.update(component_state("appearance", components["appearance_unet"], ACM))
        state.update(component_state("controlnet", components["controlnet"], POSE))
        state.update(ldm_extras(channels, ACM, positions))
    elif layout == "stage1":
        state.update(component_state("appearance", components["appearance_unet"], CONTROL))
        state.update(ldm_extras(channels, CONTROL, positions))
    elif layout == "init":
        state.update(component_state("controlnet", components["controlnet"], CONTROL))
        state.update(ldm_extras(None, None, positions))
    else:
        state.update(ldm_extras(None, None, positions))
    return state


_KIND = {"unet": "unet", "appearance_unet": "appearance", "controlnet": "controlnet", "vae": "vae",
         "text_encoder": "clip"}


def build_random(components_dir: str, layout: str = "stage2", seed: int = 0) -> dict[str, torch.Tensor]:
    """A synthetic checkpoint of randomly initialised models, built one component at a time (only tensors stay)."""
    import json

    from magicpose.models.components import random_component
    from magicpose.paths import resolve_path

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}")
    folder = resolve_path(components_dir)
    acm = {"stage2": ACM, "stage1": CONTROL}.get(layout)
    prefixes = {"unet": UNET, "appearance_unet": acm, "controlnet": POSE if layout == "stage2" else CONTROL,
                "vae": VAE, "text_encoder": CLIP}
    needed = {"stage2": ("unet", "appearance_unet", "controlnet", "vae", "text_encoder"),
              "stage1": ("unet", "appearance_unet", "vae", "text_encoder"),
              "init": ("unet", "controlnet", "vae", "text_encoder"), "controlnet": ("controlnet",),
              "sd": ("unet", "vae", "text_encoder")}[layout]
    state: dict[str, torch.Tensor] = {}
    for index, name in enumerate(needed):
        torch.manual_seed(seed + index)
        config_name = "unet" if name == "appearance_unet" else name
        model = random_component(config_name, folder / config_name)
        state.update(component_state(_KIND[name], model, prefixes[name]))
        del model
    if layout != "controlnet":
        channels = json.loads((folder / "unet" / "config.json").read_text())["block_out_channels"][0]
        positions = json.loads((folder / "text_encoder" / "config.json").read_text())["max_position_embeddings"]
        state.update(ldm_extras(channels if acm else None, acm, positions))
    return state


def write_synthetic_checkpoint(out: str | Path, components: str = "configs/models/sd15", layout: str = "stage2",
                               seed: int = 0) -> dict[str, torch.Tensor]:
    """`build_random` written to `out` (`.safetensors`, else a weights-only-loadable pickle); prints its size."""
    state = build_random(components, layout, seed)
    if str(out).endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file(state, str(out))
    else:
        torch.save(state, out)
    print(f"wrote {len(state)} tensors ({sum(v.numel() * v.element_size() for v in state.values()) / 1e9:.2f} GB) "
          f"to {out}")
    return state


# ----- Follow-Your-Pose ----------------------------------------------------------------------------------------
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
    state = {k: v.detach().clone() for k, v in fyp_original_state_dict(unet, adapter).items()}
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
