"""The two models behind the web demo, each loaded once, generating one request at a time (no gradio here).

A session holds a config, its pipeline and a lock: a request becomes the config with the page's settings written into
its `inference:` section, runs through the command-line code path (`magicpose.commands.animate.animate` /
`write_outputs`, `magicpose.commands.fyp_sample.sample_videos` / `write_results`), and leaves its results in a fresh
folder `OUT/<system>/<run>/`, plus `frames.zip`. So a run in the page is the run `magicpose animate` would make with
the same settings, and its `run.json` says so. Progress is reported after each denoising step (the pipeline's
`callback_on_step_end`), which is also where a cancel request stops the run.
"""

from __future__ import annotations

import dataclasses
import itertools
import shutil
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from magicpose.demo.uploads import extract_poses, load_reference, pose_source, raw_video
from magicpose.errors import UserError
from magicpose.paths import prompt_file_stem

# progress(steps done, steps in all, what is happening)
Progress = Callable[[int, int, str], None]


def _no_progress(done: int, total: int, what: str) -> None:
    pass


class Cancelled(UserError):
    """The person pressed cancel: the run stopped after its current denoising step."""


@dataclass
class Limits:
    """What one request may ask for."""

    max_frames: int = 300  # frames of an uploaded video or pose set, and of a generated video


@dataclass
class AnimateSettings:
    """The controls of the "Animate a person" tab (None: the config's value)."""

    steps: int | None = None
    guidance_scale: float | None = None
    guidance_mode: str | None = None
    seed: int | None = None
    frames: int | None = None  # the first N poses (None: all)
    size: int | None = None
    prompt: str | None = None
    resize_mode: str | None = None
    temporal: bool = True  # use the motion module, where the model has one
    context_length: int | None = None  # a window of frames (with a motion module)
    context_overlap: int | None = None


@dataclass
class FypSettings:
    """The controls of the "Text + skeleton to video" tab (None: the config's value)."""

    frames: int | None = None
    stride: int | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    seed: int | None = None


@dataclass
class Result:
    """What a run leaves: its folder, the files the page shows, the run record and a one-line summary."""

    folder: Path
    video: Path
    grid: Path
    frames_zip: Path
    record: dict[str, Any]
    summary: str

    @property
    def run_json(self) -> Path:
        return self.folder / "run.json"


class Session:
    """One model, loaded once; `run` lets one request at a time in and tells it about progress and cancels."""

    system = ""

    def __init__(self, config: Any, out: Path, pipe: Any = None, limits: Limits | None = None) -> None:
        from magicpose.device import resolve_device

        self.config = config
        self.out = Path(out)
        self.limits = limits or Limits()
        self.device = resolve_device(config.device)
        self.pipe = pipe if pipe is not None else self.build_pipeline()
        if hasattr(self.pipe, "set_progress_bar_config"):
            self.pipe.set_progress_bar_config(disable=True)  # the page shows progress; keep the server log quiet
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._runs = itertools.count(1)

    def build_pipeline(self) -> Any:
        raise NotImplementedError

    # ----- one request at a time -------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Stop the running request after its current denoising step (nothing happens when none runs)."""
        if self._lock.locked():
            self._cancel.set()

    @property
    def busy(self) -> bool:
        """A request of this model is running."""
        return self._lock.locked()

    def _one_at_a_time(self, generate: Callable[..., Result], *args: Any) -> Result:
        """`generate(folder, *args)` once the previous request of this model has finished, in a fresh run folder
        (removed again when the request fails: only finished runs stay)."""
        with self._lock:
            self._cancel.clear()
            folder = self.out / self.system / f"{datetime.now():%Y%m%d-%H%M%S}-{next(self._runs):03d}"
            folder.mkdir(parents=True)
            try:
                return generate(folder, *args)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise

    def _step_callback(self, progress: Progress, total: int) -> Callable:
        """The pipeline's `callback_on_step_end` (for every pipeline call of a request): progress after each of the
        request's `total` denoising steps, and the place a cancel takes effect."""
        done = 0

        def callback(pipe: Any, step: int, timestep: Any, tensors: dict) -> dict:
            nonlocal done
            if self._cancel.is_set():
                raise Cancelled("cancelled: the generation stopped before it finished")
            done += 1
            progress(done, total, f"denoising step {done}/{total}")
            return tensors

        return callback

    def _with_inference(self, **values: Any) -> Any:
        """The config with the given `inference:` values (None: keep the config's)."""
        given = {key: value for key, value in values.items() if value is not None}
        return dataclasses.replace(self.config, inference=dataclasses.replace(self.config.inference, **given))


class AnimateSession(Session):
    """MagicPose: a reference image + pose maps -> an animation."""

    system = "animate"

    def build_pipeline(self) -> Any:
        from magicpose.commands.outputs import build_pipeline

        return build_pipeline(self.config.model, self.device, self.config.inference.scheduler)

    @property
    def size_multiple(self) -> int:
        from magicpose.commands.outputs import size_multiple

        return size_multiple(self.pipe)

    @property
    def motion_limit(self) -> int | None:
        """Frame positions of the model's motion module (None: the model has none, so no temporal controls)."""
        adapter = getattr(self.pipe, "motion_adapter", None)
        return None if adapter is None else int(adapter.config.motion_max_seq_length)

    def _per_frame_pipe(self) -> Any:
        """The same networks without the motion module (shared, not copied): frames generated independently."""
        if not hasattr(self, "_frame_pipe"):
            components = {**self.pipe.components, "motion_adapter": None}
            self._frame_pipe = type(self.pipe)(**components)
            self._frame_pipe.set_progress_bar_config(disable=True)
        return self._frame_pipe

    def config_for(self, settings: AnimateSettings) -> Any:
        """The config of one request: the page's settings in `inference:`."""
        temporal = self.motion_limit is not None and settings.temporal
        return self._with_inference(
            steps=settings.steps, guidance_scale=settings.guidance_scale, guidance_mode=settings.guidance_mode,
            seed=settings.seed, size=settings.size, resize_mode=settings.resize_mode, prompt=settings.prompt,
            context_length=settings.context_length if temporal else None,
            context_overlap=settings.context_overlap if temporal else None,
        )

    def generate(self, reference: Any, poses: Any, settings: AnimateSettings, raw: bool = False,
                 progress: Progress = _no_progress) -> Result:
        """Check the uploads, then animate; `raw`: `poses` is a raw video of a person, whose poses are extracted
        first. Waits while another request of this model runs."""
        return self._one_at_a_time(self._generate, reference, poses, settings, raw, progress)

    def _generate(self, folder: Path, reference: Any, poses: Any, settings: AnimateSettings, raw: bool,
                  progress: Progress) -> Result:
        from magicpose.commands.animate import OUTPUT_NAMES, animate, write_outputs
        from magicpose.commands.outputs import publish, run_record
        from magicpose.media import read_frames

        limit = self.limits.max_frames
        if settings.frames is not None and not 1 <= settings.frames <= limit:
            raise UserError(f"Frames: {settings.frames} is not between 1 and {limit}")
        image = load_reference(reference)
        config = self.config_for(settings)
        if raw:
            video = raw_video(poses, limit, field="Poses")
            progress(0, 1, "extracting poses (mediapipe)")
            source = extract_poses(video, folder, "openpose", field="Poses")
            described = f"{video.name} (raw video, poses extracted)"
        else:
            source, _, described = pose_source(poses, folder / "inputs", limit)
        frames_in = read_frames(source)
        used = frames_in[: settings.frames] if settings.frames else frames_in
        temporal = self.motion_limit is not None and settings.temporal  # else the same networks, frame by frame
        pipe = self.pipe if temporal or self.motion_limit is None else self._per_frame_pipe()
        total = config.inference.steps
        started = time.perf_counter()
        squared, pose_maps, frames = animate(pipe, config, image, used, self.device,
                                             callback_on_step_end=self._step_callback(progress, total))
        seconds = time.perf_counter() - started
        inputs = {"reference": Path(str(reference)).name, "poses": described, "pose_frames": len(frames_in),
                  "frames_used": len(used), "temporal_module": temporal}
        record = run_record("demo animate", inputs, len(frames), config, self.device, seconds)
        fps = config.inference.fps
        publish(folder, OUTPUT_NAMES, lambda staging: write_outputs(staging, squared, pose_maps, frames, fps, record))
        zipped = _zip_frames(folder)
        inf = config.inference
        summary = (f"{len(frames)} frames at {inf.size} px, {inf.steps} steps, in {seconds:.1f} s "
                   f"(of {len(frames_in)} poses; {folder})")
        return Result(folder, folder / "animation.mp4", folder / "grid.mp4", zipped, record, summary)


class FypSession(Session):
    """Follow-Your-Pose: prompt(s) + a skeleton video -> a video per prompt."""

    system = "followyourpose"

    def build_pipeline(self) -> Any:
        from magicpose.commands.fyp_sample import build_fyp_pipeline

        return build_fyp_pipeline(self.config, self.device)

    def config_for(self, settings: FypSettings) -> Any:
        return self._with_inference(frames=settings.frames, stride=settings.stride, steps=settings.steps,
                                    guidance_scale=settings.guidance_scale, seed=settings.seed)

    def generate(self, prompts: str, skeleton: Any, settings: FypSettings, raw: bool = False,
                 progress: Progress = _no_progress) -> Result:
        """`prompts`: one per line (one video each). `raw`: `skeleton` is a raw video of a person, whose
        mmpose-style skeleton is extracted first."""
        return self._one_at_a_time(self._generate, prompts, skeleton, settings, raw, progress)

    def _generate(self, folder: Path, prompts: str, skeleton: Any, settings: FypSettings, raw: bool,
                  progress: Progress) -> Result:
        from magicpose.commands.fyp_sample import read_skeleton, sample_videos, write_results
        from magicpose.commands.outputs import run_record

        lines = [line.strip() for line in (prompts or "").splitlines() if line.strip()]
        if not lines:
            raise UserError("Prompts: write what the video shows (one prompt per line, one video each)")
        config = self.config_for(settings)
        inf = config.inference
        if not 1 <= inf.frames <= self.limits.max_frames:
            raise UserError(f"Frames: {inf.frames} is not between 1 and {self.limits.max_frames}")
        limit = self.limits.max_frames
        if raw:
            video = raw_video(skeleton, limit, field="Skeleton")
            progress(0, 1, "extracting poses (mediapipe)")
            source, name = extract_poses(video, folder, "mmpose", field="Skeleton"), video.name
            described = f"{name} (raw video, skeleton extracted)"
        else:
            source, _, described = pose_source(skeleton, folder / "inputs", limit, field="Skeleton")
            name = source.name if source.is_file() else "the uploaded images"
        try:
            images, indices = read_skeleton(source, inf.frames, inf.stride, inf.start)
        except UserError as err:  # "...: has 16 frames; 8 frames at stride 5 ... need 36 (use --frames 4 ...)"
            text = str(err).replace(str(source), name).replace("--frames", "Frames").replace("--stride", "Stride")
            raise UserError(f"Skeleton: {text}") from None
        total = inf.steps * len(lines)
        started = time.perf_counter()
        squared, videos = sample_videos(self.pipe, config, lines, images, self.device,
                                        callback_on_step_end=self._step_callback(progress, total))
        seconds = time.perf_counter() - started
        prompt = lines[0] if len(lines) == 1 else lines
        inputs = {"prompt" if len(lines) == 1 else "prompts": prompt, "skeleton": described,
                  "skeleton_frames": indices}
        record = run_record("demo fyp-sample", inputs, len(indices), config, self.device, seconds)
        write_results(folder, prompt, squared, videos, inf.fps, record)
        video = folder / ("video.mp4" if len(lines) == 1 else f"{prompt_file_stem(0, lines[0])}.mp4")
        zipped = _zip_frames(folder)
        summary = (f"{len(lines)} video{'s' if len(lines) > 1 else ''} of {len(indices)} frames at {inf.size} px, "
                   f"{inf.steps} steps, in {seconds:.1f} s ({folder})")
        return Result(folder, video, folder / "grid.mp4", zipped, record, summary)


def _zip_frames(folder: Path) -> Path:
    """`folder/frames.zip`: every PNG under `folder/frames/`, with paths relative to it."""
    target = folder / "frames.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zipped:  # PNGs are compressed already
        for path in sorted((folder / "frames").rglob("*.png")):
            zipped.write(path, path.relative_to(folder / "frames").as_posix())
    return target
