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

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import T2IAdapter, UNet2DConditionModel

from magicpose.errors import UserError
from magicpose.models.components import DTYPES, load_component, random_component
from magicpose.models.pose_adapter import build_pose_adapter
from magicpose.models.video_unet import VideoUNet, load_unet2d_weights
from magicpose.paths import resolve_path

FYP_COMPONENTS = ("vae", "text_encoder", "tokenizer", "unet", "pose_adapter", "scheduler")


@dataclass
class VideoOptions:
    """How a 2D UNet is inflated (see `VideoUNet`); the defaults are the original's, except the zero-init."""

    temporal_attention: bool = True
    temporal_conv: bool = True
    temporal_heads: int | None = None  # null: as the block's attn1 (8 on SD)
    temporal_rank: int = 160
    temporal_kernel: int = 3
    frame_pooled_norm: bool = True
    sparse_causal_frames: list[str] = field(default_factory=lambda: ["first", "prev"])
    zero_init_temporal_attention: bool = True


@dataclass
class FypModelSpec:
    components: str | None = "configs/models/fyp_tiny"
    pretrained: str | None = None
    paths: dict[str, str | None] = field(default_factory=dict)
    seed: int = 0
    dtype: str = "float32"
    video: VideoOptions = field(default_factory=VideoOptions)
    with_pose_adapter: bool = True
    # trained stage-2 parameters on top of the UNet: a `weights/step-N/unet/` folder of `magicpose fit` or its file
    unet_delta: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.video, dict):  # from a plain container (OmegaConf.to_container)
            self.video = VideoOptions(**self.video)


def build_fyp_components(spec: FypModelSpec, names: tuple[str, ...] = FYP_COMPONENTS) -> dict[str, Any]:
    """Build the named components (`pose_adapter` is None when `with_pose_adapter` is false)."""
    _check_spec(spec)
    built: dict[str, Any] = {}
    # the adapter's shape depends on the UNet and the VAE: build those first when it is asked for
    order = [n for n in FYP_COMPONENTS if n in names or (n in ("unet", "vae") and "pose_adapter" in names)]
    for index, name in enumerate(FYP_COMPONENTS):
        if name in order:
            built[name] = _build_one(spec, name, index, built)
    dtype = DTYPES[spec.dtype]
    for component in built.values():
        if isinstance(component, torch.nn.Module) and component.dtype != dtype:
            component.to(dtype)
    return {name: built[name] for name in names}


def _check_spec(spec: FypModelSpec) -> None:
    if spec.dtype not in DTYPES:
        raise UserError(f"model.dtype: unknown dtype {spec.dtype!r} (choose from {', '.join(DTYPES)})")
    unknown = sorted(set(spec.paths) - set(FYP_COMPONENTS))
    if unknown:
        raise UserError(f"model.paths: unknown component(s) {unknown} (valid: {', '.join(FYP_COMPONENTS)})")


def video_options(spec: FypModelSpec) -> dict[str, Any]:
    options = asdict(spec.video)
    options["sparse_causal_frames"] = tuple(options["sparse_causal_frames"])
    return options


def _build_one(spec: FypModelSpec, name: str, index: int, built: dict[str, Any]) -> Any:
    if name == "pose_adapter" and not spec.with_pose_adapter:
        return None
    source = _local_source(spec, name)
    if source is not None:
        if name == "unet":
            return apply_unet_delta(load_video_unet(source, spec), spec.unet_delta)
        if name == "pose_adapter":
            return load_strict(T2IAdapter, source)
        return load_component(name, source)
    if spec.components is None:
        raise UserError(f"model: no source for {name!r}: set model.pretrained, model.paths.{name} or model.components")
    if name == "pose_adapter":
        torch.manual_seed(spec.seed + index)
        return build_pose_adapter(built["unet"].unet.config.block_out_channels, vae_scale_factor(built["vae"]))
    config_dir = resolve_path(spec.components) / name
    if not config_dir.is_dir():
        raise UserError(f"{config_dir}: no such folder (model.components, {name} config)")
    if name in ("tokenizer", "scheduler"):
        return load_component(name, config_dir)
    torch.manual_seed(spec.seed + index)
    if name == "unet":
        unet = VideoUNet(unet_config=dict(UNet2DConditionModel.load_config(config_dir)), **video_options(spec))
        return apply_unet_delta(unet, spec.unet_delta)
    return random_component(name, config_dir)


def _local_source(spec: FypModelSpec, name: str) -> Path | None:
    if spec.paths.get(name):
        path = resolve_path(spec.paths[name])
        if not path.is_dir():
            raise UserError(f"{path}: no such folder (model.paths.{name})")
        return path
    if spec.pretrained:
        root = resolve_path(spec.pretrained)
        if not root.is_dir():
            raise UserError(f"{root}: no such folder (model.pretrained)")
        sub = root / name
        if name == "pose_adapter" and not sub.is_dir():
            return None  # a pipeline folder without an adapter: build a fresh one (e.g. for stage 1)
        if not sub.is_dir():
            raise UserError(f"{root}: pipeline folder has no '{name}/' subfolder")
        return sub
    return None


def vae_scale_factor(vae: Any) -> int:
    return 1 if vae is None else 2 ** (len(vae.config.block_out_channels) - 1)


def load_strict(cls: type, folder: Path) -> torch.nn.Module:
    """`cls.from_pretrained(folder)` that refuses missing, unexpected or mis-shaped weights."""
    try:
        model, info = cls.from_pretrained(folder, local_files_only=True, output_loading_info=True)
    except (OSError, ValueError) as err:
        raise UserError(f"{folder}: cannot load {cls.__name__} ({str(err).strip().splitlines()[0]})") from err
    problems = {k: list(info.get(k) or []) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    problems = {k: v for k, v in problems.items() if v}
    if problems:
        detail = "; ".join(f"{len(v)} {k.replace('_', ' ')} (e.g. {v[0]})" for k, v in problems.items())
        raise UserError(f"{folder}: weights do not match {cls.__name__}: {detail}")
    return model


def load_video_unet(folder: Path, spec: FypModelSpec) -> VideoUNet:
    """A `VideoUNet` folder as saved, or a 2D UNet folder inflated with `spec.video`."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise UserError(f"{folder}: no config.json (expected a UNet folder)")
    class_name = UNet2DConditionModel.load_config(folder).get("_class_name")
    if class_name == "VideoUNet":
        return load_strict(VideoUNet, folder)
    unet2d = load_component("unet", folder)
    model = VideoUNet(unet_config=dict(unet2d.config), **video_options(spec))
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
