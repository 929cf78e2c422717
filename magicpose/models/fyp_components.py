"""Components of Follow-Your-Pose, from a model spec (the `model:` section of a Follow-Your-Pose config).

Each component comes from, in this order:
1. `paths.<name>`: a local folder (weights + config);
2. `pretrained/<name>`: the subfolder of a Follow-Your-Pose pipeline folder (`magicpose convert followyourpose`,
   `magicpose fit` with `system: followyourpose`);
3. random initialisation from `components/<name>` (a folder of configs), seeded.

`unet` may be a `VideoUNet` folder (loaded as is) or a 2D `UNet2DConditionModel` folder such as SD-1.5's `unet/`
(inflated: its weights are kept, the temporal modules are new, built with `video`). The pose adapter's shape follows
the UNet (one feature per down block, at its width) and the VAE (its downscale factor), so it needs no config.
Loading is strict: a missing or unexpected weight is a `UserError` naming the folder.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from diffusers import T2IAdapter, UNet2DConditionModel

from magicpose.config.followyourpose import FypModelSpec
from magicpose.errors import UserError
from magicpose.models.components import (
    cast_components,
    check_spec,
    component_config_dir,
    load_component,
    load_strict,
    local_source,
    random_component,
    require_components,
    vae_scale_factor,
)
from magicpose.models.pose_adapter import build_pose_adapter
from magicpose.models.video_unet import VideoUNet, load_unet2d_weights
from magicpose.paths import resolve_path

FYP_COMPONENTS = ("vae", "text_encoder", "tokenizer", "unet", "pose_adapter", "scheduler")


def build_fyp_components(spec: FypModelSpec, names: tuple[str, ...] = FYP_COMPONENTS) -> dict[str, Any]:
    """Build the named components (`pose_adapter` is None when `with_pose_adapter` is false)."""
    check_spec(spec, FYP_COMPONENTS)
    built: dict[str, Any] = {}
    # the adapter's shape depends on the UNet and the VAE: build those first when it is asked for
    order = [n for n in FYP_COMPONENTS if n in names or (n in ("unet", "vae") and "pose_adapter" in names)]
    for index, name in enumerate(FYP_COMPONENTS):
        if name in order:
            built[name] = _build_one(spec, name, index, built)
    cast_components(built, spec.dtype)
    return {name: built[name] for name in names}


def video_options(spec: FypModelSpec) -> dict[str, Any]:
    options = asdict(spec.video)
    options["sparse_causal_frames"] = tuple(options["sparse_causal_frames"])
    return options


def _build_one(spec: FypModelSpec, name: str, index: int, built: dict[str, Any]) -> Any:
    if name == "pose_adapter" and not spec.with_pose_adapter:
        return None
    # a pipeline folder without an adapter (e.g. for stage 1): a fresh one is built
    source = local_source(spec, name, optional=name == "pose_adapter")
    if source is not None:
        if name == "unet":
            return apply_unet_delta(load_video_unet(source, spec), spec.unet_delta)
        if name == "pose_adapter":
            return load_strict(T2IAdapter, source)
        return load_component(name, source)
    if name == "pose_adapter":  # its shape follows the UNet and the VAE: no config folder
        require_components(spec, name)
        torch.manual_seed(spec.seed + index)
        return build_pose_adapter(built["unet"].unet.config.block_out_channels, vae_scale_factor(built["vae"]))
    config_dir = component_config_dir(spec, name)
    if name in ("tokenizer", "scheduler"):
        return load_component(name, config_dir)
    torch.manual_seed(spec.seed + index)
    if name == "unet":
        unet = VideoUNet(unet_config=dict(UNet2DConditionModel.load_config(config_dir)), **video_options(spec))
        return apply_unet_delta(unet, spec.unet_delta)
    return random_component(name, config_dir)


def load_video_unet(folder: Path, spec: FypModelSpec) -> VideoUNet:
    """A `VideoUNet` folder as saved, or a 2D UNet folder inflated with `spec.video`."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise UserError(f"{folder}: no config.json (expected a UNet folder)")
    class_name = UNet2DConditionModel.load_config(folder).get("_class_name")
    if class_name == "VideoUNet":
        return load_strict(VideoUNet, folder)
    unet2d = load_component("unet", folder)
    # diffusers' own keys (`_name_or_path` is the folder, a Path) would end up in the VideoUNet's config, which
    # then cannot be saved as JSON: the exported pipeline of a run from SD's unet/ failed at the very end
    config = {k: v for k, v in unet2d.config.items() if not k.startswith("_")}
    model = VideoUNet(unet_config=config, **video_options(spec))
    try:
        load_unet2d_weights(model, unet2d.state_dict(), source=str(folder))
    except ValueError as err:
        raise UserError(str(err)) from err
    return model


DELTA_FILE = "trainable.safetensors"


def apply_unet_delta(unet: VideoUNet, delta: str | None) -> VideoUNet:
    """Overwrite the parameters named in a trained-parameter file (every name must exist, shapes must match)."""
    if not delta:
        return unet
    from safetensors.torch import load_file

    path = resolve_path(delta)
    path = path / DELTA_FILE if path.is_dir() else path
    if not path.is_file():
        raise UserError(f"{path}: no such file (model.unet_delta: a weights/step-N/unet folder or its {DELTA_FILE})")
    tensors = load_file(str(path))
    params = dict(unet.named_parameters())
    unknown = sorted(set(tensors) - set(params))
    wrong = sorted(k for k in set(tensors) & set(params) if tensors[k].shape != params[k].shape)
    if unknown or wrong:
        example = (unknown or wrong)[0]
        raise UserError(f"{path}: does not fit the video UNet: {len(unknown)} unknown and {len(wrong)} mis-shaped "
                        f"parameter(s) (e.g. {example})")
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value)
    return unet
