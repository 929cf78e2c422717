"""`magicpose animate`: a reference image + a pose sequence -> frames, mp4, gif, a side-by-side grid and run.json."""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

import magicpose
from magicpose.config import to_container
from magicpose.data.media import (
    hstack,
    list_images,
    load_image,
    read_frames,
    to_square,
    write_gif,
    write_video,
)
from magicpose.errors import UserError
from magicpose.models.components import ModelSpec
from magicpose.models.magicpose import GUIDANCE_MODES

OUTPUT_NAMES = ("frames", "animation.mp4", "animation.gif", "grid.mp4", "run.json")


@dataclass
class AnimateRequest:
    reference: Path
    poses: Path
    out: Path
    overwrite: bool = False


def check_output_folder(out: Path, overwrite: bool) -> None:
    """Refuse before any work if a previous run's results are there and --overwrite was not given."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    existing = [name for name in OUTPUT_NAMES if (out / name).exists()]
    if existing and not overwrite:
        raise UserError(f"{out}: already holds results ({', '.join(existing)}); pass --overwrite to replace them")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device: {name!r} requested but CUDA is not available on this machine")
    return device


def build_pipeline(model: ModelSpec, device: torch.device, scheduler: str | None = None):
    from magicpose.pipelines.magicpose import MagicPosePipeline

    pipe = MagicPosePipeline.from_spec(model).to(device)
    if scheduler:
        import diffusers

        cls = getattr(diffusers, scheduler, None)
        if cls is None or not hasattr(cls, "from_config") or not scheduler.endswith("Scheduler"):
            raise UserError(f"inference.scheduler: {scheduler!r} is not a diffusers scheduler class")
        pipe.scheduler = cls.from_config(pipe.scheduler.config)
    return pipe


def check_inference(config: Any, multiple: int) -> None:
    inf = config.inference
    if inf.guidance_mode not in GUIDANCE_MODES:
        raise UserError(f"inference.guidance_mode: {inf.guidance_mode!r} is not one of {', '.join(GUIDANCE_MODES)}")
    if inf.resize_mode not in ("crop", "pad"):
        raise UserError(f"inference.resize_mode: {inf.resize_mode!r} is not 'crop' or 'pad'")
    if inf.size <= 0 or inf.size % multiple:
        raise UserError(f"inference.size: {inf.size} must be a positive multiple of {multiple} for this model")
    if inf.steps < 1 or inf.frames_per_batch < 1:
        raise UserError("inference.steps and inference.frames_per_batch must be at least 1")
    if inf.fps <= 0:
        raise UserError(f"inference.fps: {inf.fps} must be positive")


def size_multiple(pipe) -> int:
    """Pixel sizes must survive the VAE and every UNet down-sampling."""
    return pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1)


def run_animate(config: Any, request: AnimateRequest) -> dict[str, Any]:
    check_output_folder(request.out, request.overwrite)
    inf = config.inference
    reference = load_image(request.reference)
    poses = read_frames(request.poses)
    started = time.perf_counter()

    device = resolve_device(config.device)
    pipe = build_pipeline(ModelSpec(**to_container(config.model)), device, inf.scheduler)
    check_inference(config, size_multiple(pipe))
    reference = to_square(reference, inf.size, inf.resize_mode)
    poses = [to_square(pose, inf.size, inf.resize_mode) for pose in poses]

    generator = torch.Generator(device=device).manual_seed(inf.seed)
    frames = pipe(
        reference,
        poses,
        prompt=inf.prompt,
        negative_prompt=inf.negative_prompt,
        num_inference_steps=inf.steps,
        guidance_scale=inf.guidance_scale,
        guidance_mode=inf.guidance_mode,
        controlnet_conditioning_scale=inf.controlnet_conditioning_scale,
        frames_per_batch=inf.frames_per_batch,
        shared_noise=inf.shared_noise,
        generator=generator,
    ).frames
    record = _run_record(config, request, len(frames), device, time.perf_counter() - started)
    _write_outputs(request.out, reference, poses, frames, inf.fps, record)
    return record


def _run_record(config: Any, request: AnimateRequest, n_frames: int, device: torch.device, seconds: float) -> dict:
    import diffusers
    import transformers

    return {
        "command": "animate",
        "reference": str(request.reference),
        "poses": str(request.poses),
        "pose_files": [p.name for p in list_images(request.poses)] if request.poses.is_dir() else None,
        "num_frames": n_frames,
        "seed": config.inference.seed,
        "device": str(device),
        "seconds": round(seconds, 2),
        "config": to_container(config),
        "versions": {
            "magicpose": magicpose.__version__,
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
    }


def _write_outputs(
    out: Path, reference: Image.Image, poses: list[Image.Image], frames: list[Image.Image], fps: float, record: dict
) -> None:
    """Write everything into a staging folder, then move it in: an interrupted run leaves no half result."""
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "frames").mkdir(parents=True)
    width = len(str(len(frames) - 1))
    for index, frame in enumerate(frames):
        frame.save(staging / "frames" / f"{index:0{max(width, 4)}d}.png")
    write_video(staging / "animation.mp4", frames, fps)
    write_gif(staging / "animation.gif", frames, fps)
    grid = [np.asarray(hstack([reference, pose, frame])) for pose, frame in zip(poses, frames)]
    write_video(staging / "grid.mp4", grid, fps)
    (staging / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    for name in OUTPUT_NAMES:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        (staging / name).rename(target)
    staging.rmdir()
