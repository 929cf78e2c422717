"""`magicpose infer-tiktok`: generate every video of a TikTok-format split for evaluation (DisCo protocol).

For each video of `ROOT/<split>` (frames paired with pose maps by file name, natural order):

* reference = the video's first frame; every frame (the first included, as DisCo) is generated from it
  and its own pose map, in batches of `inference.frames_per_batch`;
* frames, pose maps and references get the same deterministic square crop (or pad) + resize to
  `inference.size` as training's evaluation loader (`magicpose.data.transforms.transform_image`).

Output folder::

    pred/<video>/<frame>.png       generated frames (named after the source frame's stem)
    gt/<video>/<frame>.png         the real frames, same crop and resize
    gt_recon/<video>/<frame>.png   VAE reconstructions of gt (what the original code saved as "GT");
                                   not written for a pixel-space model (no VAE: gt is already what it sees)
    poses/<video>/<frame>.png      the pose maps given to the model
    videos/<video>.mp4             the generated frames as a video
    infer.json                     settings, counts, timings (settings are checked on resume)

Resumable: a frame whose `pred` PNG exists is not generated again (PNGs are written to a temporary name and
renamed, so an interrupted run never leaves a half-written one). The initial noise is drawn per video from
`inference.seed` for all its frames at once and then indexed, so a resumed run gives the same frames as an
uninterrupted one (for deterministic samplers such as DDIM with eta 0, the default). A resume with other
settings is refused unless `--overwrite`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
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
    flag_overrides,
    sampling_arguments,
    size_multiple,
)
from magicpose.errors import UserError

if TYPE_CHECKING:  # the CLI imports this module to build its parser: torch & co. load in the handler only
    import torch
    from PIL import Image

    from magicpose.data.tiktok import VideoIndex

SUBFOLDERS = ("pred", "gt", "gt_recon", "poses", "videos")
RECORD = "infer.json"

EPILOG = """examples:
  magicpose infer-tiktok --config configs/magicpose/inference.yaml --data dataset/TikTok-v4 \\
      --out outputs/tiktok_test                      # the released test split, disco_test_set
  magicpose evaluate --pred outputs/tiktok_test/pred --gt outputs/tiktok_test/gt --out outputs/tiktok_test/metrics.json

Interrupt and run the same command again to continue where it stopped."""


@dataclass
class InferRequest:
    data: Path
    split: str
    out: Path
    videos: list[str] | None = None  # only these video folders
    max_videos: int | None = None
    max_frames: int | None = None  # first frames of each video only
    overwrite: bool = False
    progress: bool = True


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "infer-tiktok",
        help="generate every video of a TikTok-format split (reference = first frame) for `evaluate`",
        description="Generate each video of a TikTok-format split from its first frame and its pose maps; "
                    "write predictions, ground truth, VAE reconstructions, pose maps and one mp4 per video.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add_config_argument(p)
    p.add_argument("--data", required=True, type=Path, help="dataset root (ROOT/<split>/<video>/<frame>.png)")
    p.add_argument("--split", default="auto",
                   help="split folder (default auto: disco_test_set, the released TikTok-v4 test split, else test_set)")
    p.add_argument("--out", required=True, type=Path, help="output folder (resumed if it holds an earlier run)")
    p.add_argument("--videos", nargs="+", metavar="NAME", help="only these videos")
    p.add_argument("--max-videos", type=int, help="only the first N videos (natural order)")
    p.add_argument("--max-frames", type=int, help="only the first N frames of each video")
    p.add_argument("--steps", type=int, help="denoising steps (inference.steps)")
    p.add_argument("--guidance-scale", type=float, help="Image-CFG scale (inference.guidance_scale)")
    p.add_argument("--seed", type=int, help="random seed (inference.seed)")
    p.add_argument("--size", type=int, help="frame side in pixels (inference.size)")
    p.add_argument("--frames-per-batch", type=int,
                   help="frames denoised together (inference.frames_per_batch); each pipeline call (a resumable unit) "
                        "gets this many frames, and --context-length windows these frames")
    add_context_arguments(p)
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1, ... (device)")
    p.add_argument("--overwrite", action="store_true", help="discard an earlier run in --out made with other settings")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="any config key, e.g. inference.prompt=...")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from magicpose.config import MagicPoseConfig, load_config
    from magicpose.data.tiktok import test_split

    config = load_config(args.config, flag_overrides(args, INFERENCE_FLAGS) + list(args.overrides), schema=MagicPoseConfig)
    split, found = test_split(args.data, args.split)
    if found:
        print(found, file=sys.stderr)
    request = InferRequest(
        args.data, split, args.out, args.videos, args.max_videos, args.max_frames, args.overwrite,
        not args.no_progress,
    )  # fmt: skip
    record = run_infer_tiktok(config, request)
    print(
        f"{record['videos']} videos, {record['frames']} frames: generated {record['generated']}, "
        f"kept {record['skipped']} from an earlier run; outputs in {args.out}"
    )
    return 0


# ----------------------------------------------------------------------------------------------------------


def _settings(config: Any, request: InferRequest) -> dict[str, Any]:
    """What decides the generated pixels; a resume must match it. Batch size, fps, device do not."""
    from magicpose.config import to_container

    inference = {k: v for k, v in to_container(config.inference).items() if k not in ("frames_per_batch", "fps")}
    if inference.get("context_length") is None:  # no windows: the settings of runs made before windows existed
        inference.pop("context_length", None)
        inference.pop("context_overlap", None)
    return {
        "model": to_container(config.model),
        "inference": inference,
        "data": str(request.data.resolve()),
        "split": request.split,
    }


def _prepare_out(out: Path, settings: dict[str, Any], overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    record = out / RECORD
    if record.is_file():
        earlier = json.loads(record.read_text(encoding="utf-8")).get("settings")
        if earlier != settings and not overwrite:
            changed = sorted(k for k in settings if settings.get(k) != (earlier or {}).get(k))
            raise UserError(
                f"{out}: holds frames made with other settings ({', '.join(changed)} differ); "
                "use another --out or pass --overwrite to discard them"
            )
        if earlier != settings:
            for name in (*SUBFOLDERS, RECORD):
                target = out / name
                if target.is_dir():
                    shutil.rmtree(target)
                else:
                    target.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / RECORD).write_text(json.dumps({"settings": settings}, indent=2) + "\n", encoding="utf-8")


def select_videos(request: InferRequest) -> list[VideoIndex]:
    """The split's videos with at least one frame, filtered by `--videos` / `--max-videos`."""
    from magicpose.data.tiktok import scan_split

    videos = [v for v in scan_split(request.data, request.split) if len(v)]
    if request.videos:
        known = {v.video_id for v in videos}
        unknown = [name for name in request.videos if name not in known]
        if unknown:
            raise UserError(f"{request.data / request.split}: no video(s) {', '.join(unknown)} with pose maps")
        videos = [v for v in videos if v.video_id in set(request.videos)]
    if request.max_videos is not None:
        videos = videos[: max(request.max_videos, 0)]
    if not videos:
        raise UserError(f"{request.data / request.split}: no video with frames and pose maps")
    return videos


def _save_png(image: Image.Image | Any, path: Path) -> None:
    """Write through a temporary name: a killed run never leaves a truncated PNG that a resume would keep."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial.png")
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(partial)
    os.replace(partial, path)


def run_infer_tiktok(config: Any, request: InferRequest) -> dict[str, Any]:
    """Generate (or finish generating) every selected video; returns the counts also written to infer.json."""
    from magicpose.device import resolve_device

    started = time.perf_counter()
    settings = _settings(config, request)
    videos = select_videos(request)
    _prepare_out(request.out, settings, request.overwrite)
    inf = config.inference
    device = resolve_device(config.device)
    pipe = build_pipeline(config.model, device, inf.scheduler)
    pipe.set_progress_bar_config(disable=True)
    check_inference(config, size_multiple(pipe))

    todo = {v.video_id: _missing(request.out, v, request.max_frames) for v in videos}
    bar = _progress(sum(len(m) for m in todo.values()), request.progress)
    generated = 0
    for video in videos:
        generated += _run_video(pipe, config, request, video, todo[video.video_id], device, bar)
    bar.close()
    total = sum(len(_stems(v, request.max_frames)) for v in videos)
    record = {
        "settings": settings,
        "videos": len(videos),
        "frames": total,
        "generated": generated,
        "skipped": total - generated,
        "gt_recon": "VAE reconstructions (posterior mode)" if pipe.vae is not None
        else "not written: pixel-space model without a VAE (gt/ is exactly what the model sees)",
        "device": str(device),
        "seconds": round(time.perf_counter() - started, 2),
    }
    (request.out / RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def _stems(video: VideoIndex, max_frames: int | None) -> list[str]:
    stems = video.stems
    return stems if max_frames is None else stems[: max(max_frames, 0)]


def _missing(out: Path, video: VideoIndex, max_frames: int | None) -> list[int]:
    """Indices of the frames without a prediction yet."""
    stems = _stems(video, max_frames)
    return [i for i, stem in enumerate(stems) if not (out / "pred" / video.video_id / f"{stem}.png").is_file()]


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="infer-tiktok", unit="frame", disable=not enabled)


def _run_video(pipe, config: Any, request: InferRequest, video: VideoIndex, missing: list[int], device, bar) -> int:
    """Write gt / poses / gt_recon for every frame, generate the missing predictions, then the mp4."""
    import numpy as np
    import torch
    from PIL import Image

    from magicpose.data.transforms import SquareCrop, transform_image
    from magicpose.media import load_image, write_video

    inf = config.inference
    out, name = request.out, video.video_id
    stems = _stems(video, request.max_frames)

    def square(path: Path) -> Image.Image:
        return transform_image(load_image(path), inf.size, inf.resize_mode, SquareCrop())

    frames = [square(video.frame_path(i)) for i in range(len(stems))]
    poses = [square(video.pose_path(i)) for i in range(len(stems))]
    for stem, frame, pose in zip(stems, frames, poses):
        if not (out / "gt" / name / f"{stem}.png").is_file():
            _save_png(frame, out / "gt" / name / f"{stem}.png")
        if not (out / "poses" / name / f"{stem}.png").is_file():
            _save_png(pose, out / "poses" / name / f"{stem}.png")
    if pipe.vae is not None:
        _write_reconstructions(pipe, frames, stems, out / "gt_recon" / name, inf.frames_per_batch)

    latents = _video_latents(pipe, len(stems), inf.size, inf.shared_noise, inf.seed)
    for start in range(0, len(missing), inf.frames_per_batch):
        chunk = missing[start : start + inf.frames_per_batch]
        images = pipe(
            frames[0],
            [poses[i] for i in chunk],
            generator=torch.Generator().manual_seed(inf.seed),
            latents=latents[chunk].to(device),  # drawn per video: a frame's noise does not depend on the chunk
            **sampling_arguments(config),
        ).frames[0]
        for i, image in zip(chunk, images):
            _save_png(image, out / "pred" / name / f"{stems[i]}.png")
        bar.update(len(chunk))
    mp4 = out / "videos" / f"{name}.mp4"
    if missing or not mp4.is_file():
        mp4.parent.mkdir(parents=True, exist_ok=True)
        preds = [np.asarray(Image.open(out / "pred" / name / f"{s}.png").convert("RGB")) for s in stems]
        write_video(mp4, preds, inf.fps)
    return len(missing)


def _video_latents(pipe, count: int, size: int, shared: bool, seed: int) -> torch.Tensor:
    """`count c h w` initial noise of one video, drawn on the CPU from `seed` (identical on every device).

    With shared noise (the original's choice) every frame starts from the same draw; otherwise frame i gets
    the i-th draw of one sequence. Either way a frame's noise does not depend on which frames are left.
    """
    import torch

    side = size // pipe.vae_scale_factor
    shape = (1 if shared else count, pipe.unet.config.in_channels, side, side)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    return noise.expand(count, -1, -1, -1).to(pipe.unet.dtype) if shared else noise.to(pipe.unet.dtype)


def _write_reconstructions(pipe, frames: list[Image.Image], stems: list[str], folder: Path, batch: int) -> None:
    """VAE encode (posterior mode) -> decode of each ground-truth frame not yet written."""
    import torch

    with torch.no_grad():
        _reconstruct(pipe, frames, stems, folder, batch)


def _reconstruct(pipe, frames: list[Image.Image], stems: list[str], folder: Path, batch: int) -> None:
    todo = [i for i, stem in enumerate(stems) if not (folder / f"{stem}.png").is_file()]
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        pixels = pipe.image_processor.preprocess([frames[i] for i in chunk])
        pixels = pixels.to(pipe.vae.device, pipe.vae.dtype)
        decoded = pipe.vae.decode(pipe.vae.encode(pixels).latent_dist.mode(), return_dict=False)[0]
        for i, image in zip(chunk, pipe.image_processor.postprocess(decoded.clamp(-1, 1), output_type="pil")):
            _save_png(image, folder / f"{stems[i]}.png")
