"""`magicpose animate`: a reference image + a pose sequence -> frames, mp4, gif, a side-by-side grid and run.json."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicpose.commands.outputs import (
    INFERENCE_FLAGS,
    add_config_argument,
    add_context_arguments,
    build_pipeline,
    check_inference,
    check_output_folder,
    flag_overrides,
    publish,
    run_record,
    sampling_arguments,
    size_multiple,
)
from magicpose.errors import UserError

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from magicpose.config import MagicPoseConfig

OUTPUT_NAMES = ("frames", "animation.mp4", "animation.gif", "grid.mp4", "run.json")

EPILOG = """examples:
  magicpose animate --config configs/magicpose/tiny.yaml --reference me.png --poses poses/ --out out/
  magicpose animate --config configs/magicpose/inference.yaml --reference me.png --poses dance.mp4 \\
      --out out/ --steps 30 inference.prompt="a person dancing"
  magicpose animate -c configs/magicpose/inference.yaml --reference me.png --poses poses/dance/pose_maps \\
      --retarget --reference-keypoints me.json --out out/     # the dance on my body (see retarget-pose)

outputs in --out: frames/NNNN.png, animation.mp4, animation.gif, grid.mp4 (reference | pose | result),
run.json (resolved config, seed, versions, the retargeting ratios). An existing result is never replaced
without --overwrite."""

FLAGS = {**INFERENCE_FLAGS, "guidance_mode": "inference.guidance_mode", "fps": "inference.fps"}


@dataclass
class AnimateRequest:
    reference: Path
    poses: Path
    out: Path
    overwrite: bool = False
    retarget: bool = False  # move the poses' keypoints onto the reference's body first (retarget-pose)
    reference_keypoints: Path | None = None  # the reference's OpenPose JSON; None: pose the reference image


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "animate",
        help="generate frames of a reference image following a pose sequence",
        description="Generate one frame per pose map, in the appearance of the reference image.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_argument(p)
    p.add_argument("--reference", required=True, type=Path, help="image of the person to animate")
    p.add_argument("--poses", required=True, type=Path,
                   help="folder of pose maps (sorted naturally: 2.png before 10.png) or a video of them")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--steps", type=int, help="denoising steps (inference.steps)")
    p.add_argument("--guidance-scale", type=float, help="Image-CFG scale (inference.guidance_scale)")
    p.add_argument("--guidance-mode", choices=["controlnet_important", "balance"],
                   help="controlnet_important: guide on reference+pose vs the plain UNet (the paper's Image-CFG); "
                        "balance: text CFG with reference and pose in both halves")
    p.add_argument("--seed", type=int, help="random seed (inference.seed)")
    p.add_argument("--fps", type=float, help="frame rate of the written videos (inference.fps)")
    p.add_argument("--size", type=int, help="output side in pixels; frames are square (inference.size)")
    p.add_argument("--pad", action="store_true",
                   help="pad inputs to a square instead of centre-cropping them (inference.resize_mode=pad)")
    p.add_argument("--retarget", action="store_true",
                   help="retarget the poses to the reference's body proportions first (needs their OpenPose "
                        "keypoints JSON, as extract-pose writes them; see retarget-pose)")
    p.add_argument("--reference-keypoints", type=Path, metavar="JSON",
                   help="the reference's OpenPose keypoints for --retarget (default: pose the reference image "
                        "in the pose environment)")
    p.add_argument("--frames-per-batch", type=int, help="frames denoised together (inference.frames_per_batch)")
    add_context_arguments(p)
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1, ... (device)")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --out")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="any config key, e.g. inference.prompt=...")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from magicpose.config import MagicPoseConfig, load_config

    check_output_folder(args.out, OUTPUT_NAMES, args.overwrite)
    if args.reference_keypoints is not None and not args.retarget:
        raise UserError("--reference-keypoints is only used with --retarget")
    overrides = flag_overrides(args, FLAGS)
    if args.pad:
        overrides.append("inference.resize_mode=pad")
    config = load_config(args.config, overrides + list(args.overrides), schema=MagicPoseConfig)
    request = AnimateRequest(args.reference, args.poses, args.out, args.overwrite, args.retarget,
                             args.reference_keypoints)
    record = run_animate(config, request)
    print(f"wrote {record['num_frames']} frames to {args.out} in {record['seconds']:.1f} s")
    return 0


def run_animate(config: MagicPoseConfig, request: AnimateRequest) -> dict[str, Any]:
    from magicpose.device import resolve_device
    from magicpose.media import list_images, load_image, read_frames

    check_output_folder(request.out, OUTPUT_NAMES, request.overwrite)
    reference = load_image(request.reference)
    retargeted = None
    if request.retarget:
        from magicpose.commands.retarget_pose import retargeted_maps

        inf = config.inference
        poses, pose_files, retargeted = retargeted_maps(request.reference, reference.size, request.poses,
                                                        request.reference_keypoints, inf.size, inf.resize_mode)
    else:
        poses = read_frames(request.poses)
        pose_files = list_images(request.poses) if request.poses.is_dir() else None
    started = time.perf_counter()

    device = resolve_device(config.device)
    pipe = build_pipeline(config.model, device, config.inference.scheduler)
    reference, poses, frames = animate(pipe, config, reference, poses, device)
    inputs = {
        "reference": str(request.reference),
        "poses": str(request.poses),
        "pose_files": None if pose_files is None else [p.name for p in pose_files],
        "retarget": retargeted,
    }
    record = run_record("animate", inputs, len(frames), config, device, time.perf_counter() - started)
    publish(request.out, OUTPUT_NAMES,
            lambda staging: write_outputs(staging, reference, poses, frames, config.inference.fps, record))
    return record


def animate(
    pipe: Any, config: MagicPoseConfig, reference: Image.Image, poses: list[Image.Image], device: torch.device,
    **pipeline_kwargs: Any,
) -> tuple[Image.Image, list[Image.Image], list[Image.Image]]:
    """The frames of `reference` following `poses` as `config.inference` says (checked against `pipe` first):
    inputs squared to `inference.size`, one generator seeded with `inference.seed`. `pipeline_kwargs` go to the
    pipeline call as they are (e.g. `callback_on_step_end`). Returns the squared reference and poses and the frames:
    what `write_outputs` takes. Shared by `magicpose animate` and the web demo."""
    import torch

    from magicpose.media import to_square

    inf = config.inference
    check_inference(config, size_multiple(pipe))
    reference = to_square(reference, inf.size, inf.resize_mode)
    poses = [to_square(pose, inf.size, inf.resize_mode) for pose in poses]
    generator = torch.Generator(device=device).manual_seed(inf.seed)
    arguments = {**sampling_arguments(config), **pipeline_kwargs}
    frames = pipe(reference, poses, generator=generator, **arguments).frames[0]  # the one video
    return reference, poses, frames


def write_outputs(
    folder: Path, reference: Image.Image, poses: list[Image.Image], frames: list[Image.Image], fps: float,
    record: dict,
) -> None:
    """`OUTPUT_NAMES` in `folder`: frames/NNNN.png, animation.mp4 / .gif, grid.mp4 (reference | pose | result),
    run.json."""
    import numpy as np

    from magicpose.media import hstack, write_gif, write_video

    (folder / "frames").mkdir()
    width = len(str(len(frames) - 1))
    for index, frame in enumerate(frames):
        frame.save(folder / "frames" / f"{index:0{max(width, 4)}d}.png")
    write_video(folder / "animation.mp4", frames, fps)
    write_gif(folder / "animation.gif", frames, fps)
    grid = [np.asarray(hstack([reference, pose, frame])) for pose, frame in zip(poses, frames)]
    write_video(folder / "grid.mp4", grid, fps)
    (folder / "run.json").write_text(json.dumps(record, indent=2) + "\n")
