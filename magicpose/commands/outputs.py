"""What the generating commands (animate, fyp-sample, infer-tiktok) share: the output-folder check, staged writes,
the run record, the device, building a MagicPose pipeline from a config and swapping its scheduler.

Heavy libraries (torch, diffusers) load inside the functions: the CLI imports every command module to build its
parser, and `magicpose --help` must stay fast.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicpose.errors import UserError

if TYPE_CHECKING:
    import torch

    from magicpose.config import MagicPoseConfig
    from magicpose.config.magicpose import ModelSpec


# ----- arguments ---------------------------------------------------------------------------------------------
def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", action="append", required=True, metavar="YAML",
                        help="config file (repeat to merge several, later ones win)")


# flags of the MagicPose sampling commands (animate, infer-tiktok) -> config keys
INFERENCE_FLAGS = {
    "steps": "inference.steps", "guidance_scale": "inference.guidance_scale", "seed": "inference.seed",
    "size": "inference.size", "frames_per_batch": "inference.frames_per_batch", "device": "device",
    "context_length": "inference.context_length", "context_overlap": "inference.context_overlap",
}  # fmt: skip

CONTEXT_HELP = ("sliding window in frames for long videos (inference.context_length; default: none): each window is "
                "denoised in one pass and overlapping windows are blended per frame. Without a motion module the "
                "frames do not interact, so windows are frame batches and the frames equal those without windows")


def add_context_arguments(parser: argparse.ArgumentParser) -> None:
    """--context-length / --context-overlap of the MagicPose sampling commands."""
    parser.add_argument("--context-length", type=int, metavar="N", help=CONTEXT_HELP)
    parser.add_argument("--context-overlap", type=int, metavar="N",
                        help="frames shared by neighbouring windows (inference.context_overlap, default 4)")


def flag_overrides(args: argparse.Namespace, mapping: dict[str, str]) -> list[str]:
    """`key=value` overrides for the flags that were given (`mapping`: argument name -> config key)."""
    return [f"{key}={getattr(args, attr)}" for attr, key in mapping.items() if getattr(args, attr) is not None]


# ----- the output folder -------------------------------------------------------------------------------------
def check_output_folder(out: Path, names: Sequence[str], overwrite: bool) -> None:
    """Refuse before any work if an earlier run's results (`names` in `out`) are there and `overwrite` is off."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    existing = [name for name in names if (out / name).exists()]
    if existing and not overwrite:
        raise UserError(f"{out}: already holds results ({', '.join(existing)}); pass --overwrite to replace them")


def publish(out: Path, names: Sequence[str], write: Callable[[Path], None]) -> None:
    """`write(staging)` writes everything into a staging folder; then each of `names` replaces the old one in `out`.

    An interrupted run leaves no half result: the old files stay until the new ones are complete.
    """
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    write(staging)
    for name in names:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        (staging / name).rename(target)
    staging.rmdir()


# ----- the run record ----------------------------------------------------------------------------------------
def versions() -> dict[str, str]:
    import diffusers
    import torch
    import transformers

    import magicpose

    return {
        "magicpose": magicpose.__version__,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def run_record(command: str, inputs: dict[str, Any], num_frames: int, config: Any, device: torch.device,
               seconds: float) -> dict[str, Any]:
    """run.json: the command, its inputs, the frame count, seed, device, time, resolved config and versions."""
    from magicpose.config import to_container

    return {
        "command": command,
        **inputs,
        "num_frames": num_frames,
        "seed": config.inference.seed,
        "device": str(device),
        "seconds": round(seconds, 2),
        "config": to_container(config),
        "versions": versions(),
    }


# ----- pipelines ---------------------------------------------------------------------------------------------
def swap_scheduler(pipe: Any, name: str | None) -> None:
    """Replace the pipeline's scheduler by the diffusers class `name` (same config); None keeps it."""
    if not name:
        return
    import diffusers

    cls = getattr(diffusers, name, None)
    if cls is None or not name.endswith("Scheduler") or not hasattr(cls, "from_config"):
        raise UserError(f"inference.scheduler: {name!r} is not a diffusers scheduler class")
    pipe.scheduler = cls.from_config(pipe.scheduler.config)


def build_pipeline(model: ModelSpec, device: torch.device, scheduler: str | None = None):
    """A MagicPosePipeline from the `model:` section (original files converted on first use), on `device`, with
    `inference.scheduler` swapped in."""
    from magicpose.convert.cache import convert_sources
    from magicpose.pipelines.magicpose import MagicPosePipeline

    pipe = MagicPosePipeline.from_spec(convert_sources(model)).to(device)
    swap_scheduler(pipe, scheduler)
    return pipe


def sampling_arguments(config: MagicPoseConfig) -> dict[str, Any]:
    """The `MagicPosePipeline` arguments that a config's `inference:` section sets."""
    inf = config.inference
    return {
        "prompt": inf.prompt,
        "negative_prompt": inf.negative_prompt,
        "num_inference_steps": inf.steps,
        "guidance_scale": inf.guidance_scale,
        "guidance_mode": inf.guidance_mode,
        "controlnet_conditioning_scale": inf.controlnet_conditioning_scale,
        "frames_per_batch": inf.frames_per_batch,
        "shared_noise": inf.shared_noise,
        "context_length": inf.context_length,
        "context_overlap": inf.context_overlap,
    }


def size_multiple(pipe: Any) -> int:
    """Pixel sizes must survive the VAE and every UNet down-sampling."""
    from magicpose.models.components import unet_scale_factor

    unet = getattr(pipe.unet, "unet", pipe.unet)  # Follow-Your-Pose's VideoUNet wraps a 2D UNet
    return pipe.vae_scale_factor * unet_scale_factor(unet)


def check_size(size: int, multiple: int) -> None:
    if size <= 0 or size % multiple:
        raise UserError(f"inference.size: {size} must be a positive multiple of {multiple} for this model")


def check_resize_mode(mode: str) -> None:
    if mode not in ("crop", "pad"):
        raise UserError(f"inference.resize_mode: {mode!r} is not 'crop' or 'pad'")


def check_inference(config: MagicPoseConfig, multiple: int) -> None:
    """The `inference:` section of a MagicPose config, against a model whose sizes must be multiples of `multiple`."""
    from magicpose.models.magicpose import GUIDANCE_MODES

    inf = config.inference
    if inf.guidance_mode not in GUIDANCE_MODES:
        raise UserError(f"inference.guidance_mode: {inf.guidance_mode!r} is not one of {', '.join(GUIDANCE_MODES)}")
    check_resize_mode(inf.resize_mode)
    check_size(inf.size, multiple)
    if inf.steps < 1 or inf.frames_per_batch < 1:
        raise UserError("inference.steps and inference.frames_per_batch must be at least 1")
    if inf.fps <= 0:
        raise UserError(f"inference.fps: {inf.fps} must be positive")
    if inf.context_length is not None and (inf.context_length < 1 or not 0 <= inf.context_overlap < inf.context_length):
        raise UserError(f"inference.context_length / context_overlap: {inf.context_length} / {inf.context_overlap}: "
                        "need a length of at least 1 and 0 <= overlap < length")
