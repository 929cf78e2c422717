"""`magicpose fyp-sample`: a prompt + a skeleton video -> a Follow-Your-Pose video (mp4, gif, grid, frames, run.json).

Skeleton frames are taken as the original did: frames `start, start + stride, ...` (stride 5 by default) of a video or
of a naturally sorted folder of images, centre-cropped (or padded) to squares. A skeleton too short for the request is
a one-line error that says which `--frames` / `--stride` would fit (the original crashed with "Out of bound indices").
Accepted skeletons: `magicpose extract-pose` output (OpenPose colours) and mmpose / COCO-17 renderings on black
(the released adapter's training style); any RGB pose map on black works with an adapter trained on its style.
`--video` takes a raw video instead and extracts mmpose-style maps from it first (`magicpose.commands.pose_env`).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicpose.commands.outputs import (
    add_config_argument,
    check_output_folder,
    check_resize_mode,
    check_size,
    flag_overrides,
    publish,
    run_record,
    size_multiple,
    swap_scheduler,
)
from magicpose.errors import UserError
from magicpose.paths import prompt_file_stem

if TYPE_CHECKING:  # the CLI imports this module at start-up: torch & co. load in the handler
    import torch
    from PIL import Image

    from magicpose.config import FypConfig

OUTPUT_NAMES = ("frames", "video.mp4", "video.gif", "grid.mp4", "run.json")

EPILOG = """examples:
  magicpose fyp-sample -c configs/followyourpose/tiny.yaml --prompt "a robot dancing" --skeleton poses.mp4 --out out/
  magicpose fyp-sample -c configs/followyourpose/inference.yaml --prompt "Iron man on the beach" \\
      --skeleton pose_example/dance_001.mp4 --out out/
  magicpose fyp-sample -c configs/followyourpose/inference.yaml --prompt "an astronaut dancing" \\
      --video my_dance.mp4 --frames 24 --out out/ --context-length 16   # needs .venv-pose (setup_pose.sh)

several prompts (--prompt A --prompt B, or inference.prompts in the config): one video per prompt, each with the
seed of a single-prompt run: NN_slug.mp4 / NN_slug.gif (e.g. 00_iron_man_on_the_beach.mp4), frames/NN_slug/,
grid.mp4 (skeleton | one column per prompt), run.json.
outputs in --out: frames/NNNN.png, video.mp4, video.gif, grid.mp4 (skeleton | result), run.json (resolved config,
skeleton frame indices, seed, versions); with --video also skeleton/ (extract-pose's keypoints/, pose_maps/,
report.json). An existing result is never replaced without --overwrite."""

FLAGS = {
    "frames": "inference.frames", "stride": "inference.stride", "start": "inference.start",
    "steps": "inference.steps", "guidance_scale": "inference.guidance_scale", "seed": "inference.seed",
    "context_length": "inference.context_length", "context_overlap": "inference.context_overlap",
    "size": "inference.size", "fps": "inference.fps", "device": "device",
}  # fmt: skip


@dataclass
class SampleRequest:
    prompt: str | list[str]  # a list: one video per prompt
    skeleton: Path
    out: Path
    overwrite: bool = False


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fyp-sample", help="Follow-Your-Pose: text + skeleton video -> video",
                       description="Generate a video that follows a skeleton sequence and a text prompt "
                                   "(Follow-Your-Pose).",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(p)
    p.add_argument("--prompt", action="append",
                   help="what the video shows; repeat for one video per prompt (default: inference.prompts, "
                        "else inference.prompt)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--skeleton", type=Path, help="skeleton video, or a folder of pose images")
    source.add_argument("--video", type=Path, metavar="RAW.mp4",
                        help="a raw video of a person instead: its poses are extracted (mediapipe, in .venv-pose) "
                             "into OUT/skeleton/ as mmpose-style maps, reused by later runs, and used as the skeleton")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--frames", type=int, help="frames to generate (inference.frames, default 32)")
    p.add_argument("--stride", type=int, help="use every S-th skeleton frame (inference.stride, default 5)")
    p.add_argument("--start", type=int, help="first skeleton frame used (inference.start)")
    p.add_argument("--steps", type=int, help="DDIM steps (inference.steps)")
    p.add_argument("--guidance-scale", type=float, help="text CFG scale (inference.guidance_scale)")
    p.add_argument("--seed", type=int, help="random seed (inference.seed)")
    p.add_argument("--context-length", type=int,
                   help="sliding window in frames for long videos (inference.context_length; default: one pass)")
    p.add_argument("--context-overlap", type=int, help="frames shared by neighbouring windows")
    p.add_argument("--size", type=int, help="square frame side in pixels (inference.size)")
    p.add_argument("--fps", type=float, help="frame rate of the written videos (inference.fps)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1, ... (device)")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --out")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="any config key, e.g. inference.pose_scale=0.8")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from magicpose.config import FypConfig, check_system, load_config

    check_output_folder(args.out, OUTPUT_NAMES, args.overwrite)
    config = load_config(args.config, flag_overrides(args, FLAGS) + list(args.overrides), schema=FypConfig)
    check_system(config)
    prompts = prompts_to_sample(args.prompt, config)
    skeleton = args.skeleton
    if args.video is not None:  # after the config checks: extraction takes a while
        from magicpose.commands.pose_env import extract_skeleton

        skeleton = extract_skeleton(args.video, args.out, args.overwrite)
    record = run_fyp_sample(config, SampleRequest(prompts, skeleton, args.out, args.overwrite))
    print(f"wrote {record['num_frames']} frames to {args.out} in {record['seconds']:.1f} s")
    return 0


def prompts_to_sample(flags: list[str] | None, config: FypConfig) -> str | list[str]:
    """`--prompt` flags, else `inference.prompts`, else `inference.prompt`; one prompt as a str (the single-video
    outputs), several as a list."""
    prompts = flags or config.inference.prompts or ([config.inference.prompt] if config.inference.prompt else [])
    if not prompts:
        raise UserError("no prompt: pass --prompt TEXT (repeat it for several videos) or set inference.prompts")
    return prompts[0] if len(prompts) == 1 else list(prompts)


def several_output_names(prompts: list[str]) -> tuple[str, ...]:
    """What a run with several prompts writes into --out."""
    stems = [prompt_file_stem(i, p) for i, p in enumerate(prompts)]
    return ("frames", "grid.mp4", "run.json", *(f"{s}{ext}" for s in stems for ext in (".mp4", ".gif")))


def skeleton_indices(available: int, frames: int, stride: int, start: int, source: Path) -> list[int]:
    """`start, start + stride, ...` (`frames` of them), or a `UserError` saying what would fit."""
    if frames < 1 or stride < 1 or start < 0:
        raise UserError(f"need frames >= 1, stride >= 1, start >= 0 (got {frames}, {stride}, {start})")
    need = start + (frames - 1) * stride + 1
    if need <= available:
        return list(range(start, need, stride))
    if available <= start:
        raise UserError(f"{source}: has {available} frames, fewer than the start frame {start}")
    fit_frames = (available - 1 - start) // stride + 1
    hint = f"use --frames {fit_frames}"
    if frames > 1 and (available - 1 - start) // (frames - 1) >= 1:
        hint += f" or --stride {(available - 1 - start) // (frames - 1)}"
    raise UserError(f"{source}: has {available} frames; {frames} frames at stride {stride} from frame {start} "
                    f"need {need} ({hint})")


def read_skeleton(path: Path, frames: int, stride: int, start: int) -> tuple[list[Image.Image], list[int]]:
    """The chosen skeleton frames of a video (streamed, stopping at the last one needed) or an image folder."""
    from PIL import Image

    from magicpose.media import iter_video_frames, list_images, load_image

    if not path.exists():
        raise UserError(f"{path}: no such file or folder (--skeleton)")
    if path.is_dir():
        files = list_images(path)
        indices = skeleton_indices(len(files), frames, stride, start, path)
        return [load_image(files[i]) for i in indices], indices
    wanted = set(skeleton_indices(10**9, frames, stride, start, path))  # checks the numbers before decoding
    picked, seen = {}, 0
    for index, frame in enumerate(iter_video_frames(path)):
        seen = index + 1
        if index in wanted:
            picked[index] = Image.fromarray(frame)
            if len(picked) == len(wanted):
                break
    if len(picked) < len(wanted):
        skeleton_indices(seen, frames, stride, start, path)  # the video ended early: raises with its length
    indices = sorted(picked)
    return [picked[i] for i in indices], indices


def run_fyp_sample(config: FypConfig, request: SampleRequest) -> dict[str, Any]:
    from magicpose.device import resolve_device

    prompts = [request.prompt] if isinstance(request.prompt, str) else list(request.prompt)
    check_output_folder(request.out, output_names(request.prompt), request.overwrite)
    inf = config.inference
    check_resize_mode(inf.resize_mode)
    skeleton, indices = read_skeleton(request.skeleton, inf.frames, inf.stride, inf.start)
    started = time.perf_counter()
    device = resolve_device(config.device)
    pipe = build_fyp_pipeline(config, device)
    skeleton, videos = sample_videos(pipe, config, prompts, skeleton, device)
    inputs = {"prompt": request.prompt, "skeleton": str(request.skeleton), "skeleton_frames": indices}
    if not isinstance(request.prompt, str):
        inputs = {"prompts": prompts, "videos": [f"{prompt_file_stem(i, p)}.mp4" for i, p in enumerate(prompts)],
                  **{k: v for k, v in inputs.items() if k != "prompt"}}
    record = run_record("fyp-sample", inputs, len(indices), config, device, time.perf_counter() - started)
    write_results(request.out, request.prompt, skeleton, videos, inf.fps, record)
    return record


def output_names(prompt: str | list[str]) -> tuple[str, ...]:
    """What a run for one prompt (a str) or several (a list) writes into its output folder."""
    return OUTPUT_NAMES if isinstance(prompt, str) else several_output_names(prompt)


def build_fyp_pipeline(config: FypConfig, device: torch.device):
    """A FollowYourPosePipeline from the `model:` section (original files converted on first use), on `device`,
    with `inference.scheduler` swapped in; a model without a pose adapter is refused."""
    from magicpose.convert.cache import convert_sources
    from magicpose.pipelines.followyourpose import FollowYourPosePipeline

    pipe = FollowYourPosePipeline.from_spec(convert_sources(config.model)).to(device)
    swap_scheduler(pipe, config.inference.scheduler)
    if pipe.pose_adapter is None:
        raise UserError("model: this Follow-Your-Pose model has no pose adapter (model.with_pose_adapter is false)")
    return pipe


def sample_videos(
    pipe: Any, config: FypConfig, prompts: list[str], skeleton: list[Image.Image], device: torch.device,
    **pipeline_kwargs: Any,
) -> tuple[list[Image.Image], list[list[Image.Image]]]:
    """One video per prompt following `skeleton`, as `config.inference` says; each from the seed, so video k is
    what a run for prompt k alone makes. `pipeline_kwargs` go to every pipeline call (e.g. `callback_on_step_end`).
    Returns the squared skeleton and the videos. Shared by `magicpose fyp-sample` and the web demo."""
    import torch

    from magicpose.media import to_square

    inf = config.inference
    check_resize_mode(inf.resize_mode)
    check_size(inf.size, size_multiple(pipe))
    skeleton = [to_square(image, inf.size, inf.resize_mode) for image in skeleton]
    videos = [pipe(
        prompt, skeleton, num_inference_steps=inf.steps, guidance_scale=inf.guidance_scale,
        negative_prompt=inf.negative_prompt, pose_scale=inf.pose_scale, pose_on_uncond=inf.pose_on_uncond,
        context_length=inf.context_length, context_overlap=inf.context_overlap,
        generator=torch.Generator(device=device).manual_seed(inf.seed), **pipeline_kwargs,
    ).frames[0] for prompt in prompts]  # the batch's one video
    return skeleton, videos


def write_results(out: Path, prompt: str | list[str], skeleton: list[Image.Image], videos: list[list[Image.Image]],
                  fps: float, record: dict) -> None:
    """`output_names(prompt)` into `out` (staged: complete or absent)."""
    if isinstance(prompt, str):
        publish(out, OUTPUT_NAMES, lambda staging: _write_outputs(staging, skeleton, videos[0], fps, record))
    else:
        publish(out, several_output_names(prompt),
                lambda staging: _write_several(staging, skeleton, list(prompt), videos, fps, record))


def _write_outputs(folder: Path, skeleton: list[Image.Image], frames: list[Image.Image], fps: float, record: dict
                   ) -> None:
    import numpy as np

    from magicpose.media import hstack, write_gif, write_video

    (folder / "frames").mkdir()
    for index, frame in enumerate(frames):
        frame.save(folder / "frames" / f"{index:04d}.png")
    write_video(folder / "video.mp4", frames, fps)
    write_gif(folder / "video.gif", frames, fps)
    write_video(folder / "grid.mp4", [np.asarray(hstack([pose, frame])) for pose, frame in zip(skeleton, frames)],
                fps)
    (folder / "run.json").write_text(json.dumps(record, indent=2) + "\n")


def _write_several(folder: Path, skeleton: list[Image.Image], prompts: list[str], videos: list[list[Image.Image]],
                   fps: float, record: dict) -> None:
    """One NN_slug.mp4 / .gif and frames/NN_slug/ per prompt; grid.mp4: the skeleton, then one column per prompt."""
    import numpy as np

    from magicpose.media import hstack, write_gif, write_video

    for index, (prompt, frames) in enumerate(zip(prompts, videos)):
        stem = prompt_file_stem(index, prompt)
        (folder / "frames" / stem).mkdir(parents=True)
        for number, frame in enumerate(frames):
            frame.save(folder / "frames" / stem / f"{number:04d}.png")
        write_video(folder / f"{stem}.mp4", frames, fps)
        write_gif(folder / f"{stem}.gif", frames, fps)
    rows = [np.asarray(hstack([pose, *row])) for pose, *row in zip(skeleton, *videos)]
    write_video(folder / "grid.mp4", rows, fps)
    (folder / "run.json").write_text(json.dumps(record, indent=2) + "\n")
