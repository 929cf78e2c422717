"""Released Follow-Your-Pose weights -> a Follow-Your-Pose pipeline folder, and back.

Files read:

| file | layout | what we make of it |
|---|---|---|
| `followyourpose_checkpoint-1000/pytorch_model.bin` (an accelerate `save_state` folder; the folder or the file) | the original `UNet3DConditionModel` state dict: SD-1.4 UNet keys (diffusers names), `...transformer_blocks.N.{attn_temp,norm_temp,conv_temporal}.*`, `skeleton_adapter.*`; possibly every key under `module.` | `unet/` (a `VideoUNet`), `pose_adapter/` (a `T2IAdapter`) |
| `pose_encoder.pth` | the bare adapter: `conv_in.*`, `body.{0..7}.{block1,block2,in_conv}.*` | `pose_adapter/` when the checkpoint has no `skeleton_adapter.*` (the original's load order lets the checkpoint's copy win) |
| SD-1.4 / 1.5 diffusers folder (`--sd`) | vae, text_encoder, tokenizer, scheduler | copied, so the output is a whole pipeline |

Key accounting is strict: every key of a file must land on a parameter of the right shape, and every parameter must
be filled; anything else is a `UserError` naming the file and the keys. Pickles are read only with
`torch.load(weights_only=True)` (see `magicpose.convert.safe_load`).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DConditionModel

from magicpose.convert.magicdance import Report
from magicpose.convert.safe_load import Checkpoint, open_checkpoint, save_tensors
from magicpose.errors import UserError
from magicpose.models.pose_adapter import (
    ORIGINAL_PREFIX,
    adapter_key_to_original,
    build_pose_adapter,
    original_adapter_key,
)
from magicpose.models.video_unet import VideoUNet
from magicpose.paths import resolve_path, staged_folder

UNET_PREFIX = "unet."  # our VideoUNet holds the 2D UNet (with its temporal additions) under this name
CHECKPOINT_FILES = ("pytorch_model.bin", "model.safetensors", "pytorch_model.safetensors")
SD_CONFIGS = "configs/models/sd15"
SD_COPIED = ("vae", "text_encoder", "tokenizer", "scheduler")
DTYPES = {"keep": None, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# The released model: the original's inflation (its attn_temp was not zero-initialised; the weights overwrite it).
RELEASED_VIDEO_OPTIONS: dict[str, Any] = {"temporal_rank": 160, "temporal_kernel": 3, "frame_pooled_norm": True,
                                          "sparse_causal_frames": ("first", "prev"),
                                          "zero_init_temporal_attention": False}


def checkpoint_file(path: Path) -> Path:
    """The state-dict file of an accelerate `save_state` folder, or the file itself."""
    if not path.is_dir():
        return path
    for name in CHECKPOINT_FILES:
        if (path / name).is_file():
            return path / name
    raise UserError(f"{path}: no {' / '.join(CHECKPOINT_FILES)} in this folder (an accelerate save_state folder)")


def _unet_config(sd: Path | None, components: str | Path) -> dict[str, Any]:
    folder = (sd / "unet") if sd is not None else resolve_path(components) / "unet"
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder}: no config.json (the UNet config the weights go into)")
    return dict(UNet2DConditionModel.load_config(folder))


def _empty_video_unet(unet_config: dict[str, Any]) -> VideoUNet:
    """Built on the meta device: no memory and no random init for weights that are about to be replaced."""
    with torch.device("meta"):
        return VideoUNet(unet_config=unet_config, **RELEASED_VIDEO_OPTIONS)


def _account(expected: dict[str, torch.Size], got: dict[str, tuple[int, ...]], path: Path, what: str) -> None:
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    wrong = sorted(k for k in set(expected) & set(got) if tuple(expected[k]) != tuple(got[k]))
    if missing or unexpected or wrong:
        parts = [f"{len(keys)} {kind} (e.g. {keys[0]}{shape})" for kind, keys, shape in (
            ("missing", missing, ""), ("unexpected", unexpected, ""),
            ("with the wrong shape", wrong, f": {tuple(got[wrong[0]])} vs {tuple(expected[wrong[0]])}" if wrong else ""),
        ) if keys]
        raise UserError(f"{path}: does not match the {what}: {'; '.join(parts)}")


def _adapter_downscale(conv_in_shape: tuple[int, ...], path: Path) -> int:
    factor = math.isqrt(conv_in_shape[1] // 3)
    if factor * factor * 3 != conv_in_shape[1]:
        raise UserError(f"{path}: conv_in takes {conv_in_shape[1]} channels, not 3 x a square (PixelUnshuffle)")
    return factor


def _adapter_state(ckpt: Checkpoint, keys: dict[str, str], channels: list[int]) -> dict[str, torch.Tensor]:
    """Original adapter keys (`keys`: original name -> key in `ckpt`) -> a strictly checked T2IAdapter state dict."""
    try:
        names = {original_adapter_key(k): source for k, source in keys.items()}
    except KeyError as err:
        raise UserError(f"{ckpt.path}: {err.args[0]!r} is not a pose-adapter key") from None
    if "adapter.conv_in.weight" not in names:
        raise UserError(f"{ckpt.path}: the pose adapter has no conv_in.weight")
    factor = _adapter_downscale(ckpt.shape(names["adapter.conv_in.weight"]), ckpt.path)
    with torch.device("meta"):
        adapter = build_pose_adapter(channels, factor)
    expected = {k: v.shape for k, v in adapter.state_dict().items()}
    _account(expected, {k: ckpt.shape(s) for k, s in names.items()}, ckpt.path, f"pose adapter (widths {channels})")
    return {k: ckpt.get(s) for k, s in names.items()}


def read_original(checkpoint: Path, pose_encoder: Path | None, unet_config: dict[str, Any]
                  ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None, list[str]]:
    """(VideoUNet state dict, T2IAdapter state dict or None, notes) from the original files, strictly accounted."""
    path = checkpoint_file(checkpoint)
    ckpt = open_checkpoint(path)
    notes = [f"{path.name}: {note}" for note in ckpt.notes]
    adapter_keys = {k.removeprefix(ORIGINAL_PREFIX): k for k in ckpt if k.startswith(ORIGINAL_PREFIX)}
    unet_keys = {UNET_PREFIX + k: k for k in ckpt if not k.startswith(ORIGINAL_PREFIX)}
    expected = {k: v.shape for k, v in _empty_video_unet(unet_config).state_dict().items()}
    _account(expected, {k: ckpt.shape(s) for k, s in unet_keys.items()}, path, "video UNet (SD UNet + temporal layers)")
    unet_state = {k: ckpt.get(s) for k, s in unet_keys.items()}
    channels = list(unet_config["block_out_channels"])

    adapter_state = _adapter_state(ckpt, adapter_keys, channels) if adapter_keys else None
    if pose_encoder is not None:
        encoder = open_checkpoint(pose_encoder)
        from_file = _adapter_state(encoder, {k: k for k in encoder}, channels)
        if adapter_state is None:
            adapter_state = from_file
            notes.append(f"pose adapter from {pose_encoder.name}")
        else:
            same = all(torch.equal(adapter_state[k], from_file[k]) for k in adapter_state)
            notes.append(f"pose adapter from the checkpoint's skeleton_adapter.* (the original's load order); "
                         f"{pose_encoder.name} is {'identical' if same else 'different and was not used'}")
    elif adapter_state is not None:
        notes.append("pose adapter from the checkpoint's skeleton_adapter.*")
    if adapter_state is None:
        notes.append("no pose adapter (neither skeleton_adapter.* nor --pose-encoder): text-to-video only")
    return unet_state, adapter_state, notes


def convert_followyourpose(
    checkpoint: str | Path,
    out: str | Path,
    *,
    pose_encoder: str | Path | None = None,
    sd: str | Path | None = None,
    components: str | Path = "configs/models/sd15",
    dtype: str = "keep",
    overwrite: bool = False,
) -> Report:
    """Write a Follow-Your-Pose pipeline folder: `unet/`, `pose_adapter/`, the SD parts (with `sd`), a report."""
    checkpoint, out = Path(checkpoint), Path(out)
    sd_folder = resolve_path(sd) if sd else None
    if sd_folder is not None and not sd_folder.is_dir():
        raise UserError(f"{sd_folder}: no such folder (--sd: a diffusers Stable Diffusion folder)")
    if out.exists() and not overwrite:
        raise UserError(f"{out}: already exists (pass --overwrite to replace it)")
    if dtype not in DTYPES:
        raise UserError(f"--dtype: {dtype!r} is not one of {', '.join(DTYPES)}")
    unet_config = _unet_config(sd_folder, components)
    unet_state, adapter_state, notes = read_original(checkpoint, Path(pose_encoder) if pose_encoder else None,
                                                     unet_config)
    report = Report(source=str(checkpoint), layout="followyourpose", out=str(out), notes=notes)
    cast = DTYPES[dtype]
    with staged_folder(out) as staging:
        _write_model(staging / "unet", _video_unet_from(unet_config, unet_state, cast))
        report.components["unet"] = f"{len(unet_state)} tensors -> VideoUNet"
        if adapter_state is not None:
            _write_model(staging / "pose_adapter", _adapter_from(unet_config, adapter_state, cast))
            report.components["pose_adapter"] = f"{len(adapter_state)} tensors -> T2IAdapter (full_adapter)"
        _copy_sd_parts(sd_folder, components, staging, report)
        (staging / "conversion.json").write_text(json.dumps(report.__dict__, indent=2) + "\n")
    return report


def convert_pose_encoder(pose_encoder: str | Path, out: str | Path, *, components: str | Path = SD_CONFIGS,
                         dtype: str = "keep") -> Report:
    """`pose_encoder.pth` alone -> `out/pose_adapter/` (a T2IAdapter), for `model.paths.pose_adapter`; the adapter's
    widths follow the UNet config in `components`."""
    pose_encoder, out = Path(pose_encoder), Path(out)
    unet_config = _unet_config(None, components)
    encoder = open_checkpoint(pose_encoder)
    state = _adapter_state(encoder, {k: k for k in encoder}, list(unet_config["block_out_channels"]))
    report = Report(source=str(pose_encoder), layout="Follow-Your-Pose pose encoder", out=str(out))
    with staged_folder(out) as staging:
        _write_model(staging / "pose_adapter", _adapter_from(unet_config, state, DTYPES[dtype]))
        report.components["pose_adapter"] = f"{len(state)} tensors -> T2IAdapter (full_adapter)"
        (staging / "conversion.json").write_text(json.dumps(report.__dict__, indent=2) + "\n")
    return report


def _video_unet_from(unet_config: dict[str, Any], state: dict[str, torch.Tensor], dtype: torch.dtype | None
                     ) -> VideoUNet:
    model = _empty_video_unet(unet_config)
    state = {k: v.to(dtype) if dtype is not None and v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model


def _adapter_from(unet_config: dict[str, Any], state: dict[str, torch.Tensor], dtype: torch.dtype | None):
    factor = math.isqrt(state["adapter.conv_in.weight"].shape[1] // 3)
    with torch.device("meta"):
        adapter = build_pose_adapter(list(unet_config["block_out_channels"]), factor)
    state = {k: v.to(dtype) if dtype is not None else v for k, v in state.items()}
    adapter.load_state_dict(state, strict=True, assign=True)
    return adapter


def _write_model(folder: Path, model: torch.nn.Module) -> None:
    model.save_config(folder)
    save_tensors(folder / "diffusion_pytorch_model.safetensors", model.state_dict())


def _copy_sd_parts(sd: Path | None, components: str | Path, root: Path, report: Report) -> None:
    """SD's vae / text encoder / tokenizer / scheduler with `--sd`; else only the weightless parts from configs."""
    if sd is not None:
        for name in SD_COPIED:
            if not (sd / name).is_dir():
                raise UserError(f"{sd}: no '{name}/' subfolder (--sd: a diffusers Stable Diffusion folder)")
            shutil.copytree(sd / name, root / name)
            report.components[name] = f"copied from {sd / name}"
        return
    config_root = resolve_path(components)
    for name in ("tokenizer", "scheduler"):
        source = config_root / name
        if not source.is_dir():
            source = resolve_path(SD_CONFIGS) / name  # the CLIP tokenizer and DDIM schedule of every SD-1.x
        shutil.copytree(source, root / name)
        report.components[name] = f"copied from {source}"
    report.notes.append("no --sd: vae and text_encoder are not in the folder; point model.paths.vae / "
                        "model.paths.text_encoder at a Stable Diffusion 1.4/1.5 folder")


# ----------------------------------------------------------------------------------------------------- export

def original_state_dict(unet: VideoUNet, adapter: torch.nn.Module | None) -> dict[str, torch.Tensor]:
    """Our modules -> the original `pytorch_model.bin` layout (tensors shared with the modules)."""
    state = {k.removeprefix(UNET_PREFIX): v for k, v in unet.state_dict().items()}
    if adapter is not None:
        state.update({ORIGINAL_PREFIX + adapter_key_to_original(k): v for k, v in adapter.state_dict().items()})
    return state


def export_followyourpose(pipeline: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """A Follow-Your-Pose pipeline folder (its `unet/` and `pose_adapter/`) -> one original-layout state dict.

    `.safetensors` or a weights-only pickle (`.bin` / `.pth`), by the suffix of `out`.
    """
    from diffusers import T2IAdapter

    from magicpose.models.components import load_strict

    root, out = resolve_path(pipeline), Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"{out}: already exists (pass --overwrite to replace it)")
    unet = load_strict(VideoUNet, root / "unet")
    adapter = load_strict(T2IAdapter, root / "pose_adapter") if (root / "pose_adapter").is_dir() else None
    state = original_state_dict(unet, adapter)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".safetensors":
        save_tensors(out, state)
    else:
        torch.save({k: v.contiguous() for k, v in state.items()}, out)
    return out
