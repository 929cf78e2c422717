"""Validation videos during Follow-Your-Pose training (the original's `validation_data` loop), as a callback.

Every `train.sample_every` steps, rank 0 samples one video per `train.sample_prompts` prompt with the module's current
weights and writes `<run_dir>/samples/step-NNNNNNN/NN_slug.mp4`. The skeleton `train.sample_skeleton` (a video or a
folder of pose images; frames `inference.start + k * inference.stride`, `inference.frames` of them) conditions every
sample; without one the samples are pose-free, as stage 2 trains. Steps, guidance, size, seed and fps come from the
`inference:` section; each prompt starts from `inference.seed`, so steps compare like for like.

Sampling never stops training: a problem (an unreadable skeleton, a model without a pose adapter, out of memory) is
one `SampleWarning` with the reason. A skeleton problem makes the samples pose-free; a failure while sampling turns
sampling off for the rest of the run (it would fail again), and the warning says so.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from PIL import Image

from magicpose.config import FypInferenceConfig
from magicpose.errors import UserError
from magicpose.paths import prompt_file_stem, resolve_path
from magicpose.training.callbacks import PeriodicSamples, SampleWarning

__all__ = ["FypSamples", "SampleWarning", "read_sample_skeleton", "sample_callbacks"]


def read_sample_skeleton(path: str, frames: int, stride: int, start: int) -> list[Image.Image]:
    """Frames `start, start + stride, ...` (`frames` of them) of a skeleton video or image folder; decoding stops at
    the last one needed. A `UserError` when the path is missing or too short."""
    from magicpose.media import iter_video_frames, list_images, load_image

    if frames < 1 or stride < 1 or start < 0:
        raise UserError(f"inference: need frames >= 1, stride >= 1, start >= 0 (got {frames}, {stride}, {start})")
    source = resolve_path(path)
    if not source.exists():
        raise UserError(f"{source}: no such file or folder")
    wanted = list(range(start, start + (frames - 1) * stride + 1, stride))
    if source.is_dir():
        files = list_images(source)
        if len(files) <= wanted[-1]:
            raise UserError(f"{source}: has {len(files)} frames; {frames} at stride {stride} need {wanted[-1] + 1}")
        return [load_image(files[i]) for i in wanted]
    picked: dict[int, Image.Image] = {}
    for index, frame in enumerate(iter_video_frames(source)):
        if index in wanted:
            picked[index] = Image.fromarray(frame)
        if index >= wanted[-1]:
            break
    if len(picked) < frames:
        raise UserError(f"{source}: too short; {frames} frames at stride {stride} need {wanted[-1] + 1}")
    return [picked[i] for i in wanted]


class FypSamples(PeriodicSamples):
    """One video per prompt every `every` steps (see the module docstring)."""

    what = "validation samples"

    def __init__(self, folder: Path, every: int, prompts: list[str], skeleton: str | None,
                 inference: FypInferenceConfig) -> None:
        super().__init__(every)
        self.folder, self.prompts = Path(folder), list(prompts)
        self.skeleton_path, self.inference = skeleton, inference
        self.skeleton: list[Image.Image] | None = None

    def on_fit_start(self, trainer: pl.Trainer, module: Any) -> None:
        if trainer.is_global_zero and self.skeleton_path:
            self.skeleton = self._load_skeleton(module)

    def _load_skeleton(self, module: Any) -> list[Image.Image] | None:
        """The resized skeleton frames, or None (pose-free samples) with a warning saying why."""
        from magicpose.media import to_square

        inf = self.inference
        if module.pose_adapter is None:
            return _warn_none("train.sample_skeleton: the model has no pose adapter (model.with_pose_adapter is "
                              "false); validation samples are pose-free")
        try:
            frames = read_sample_skeleton(self.skeleton_path, inf.frames, inf.stride, inf.start)
            return [to_square(frame, inf.size, inf.resize_mode) for frame in frames]
        except Exception as err:  # noqa: BLE001 - whatever it is, training goes on (pose-free)
            return _warn_none(f"train.sample_skeleton: {err}; validation samples are pose-free")

    @torch.no_grad()
    def sample(self, trainer: pl.Trainer, module: Any, step: int) -> Path:
        """One video per prompt into `samples/step-NNNNNNN/` (written aside, then renamed: never half a folder)."""
        from magicpose.media import write_video

        inf = self.inference
        target = self.folder / f"step-{step:07d}"
        partial = self.folder / f".partial-step-{step:07d}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            pipe = module.pipeline()
            for index, prompt in enumerate(self.prompts):
                frames = pipe(
                    prompt, self.skeleton, num_frames=None if self.skeleton else inf.frames, height=inf.size,
                    width=inf.size, num_inference_steps=inf.steps, guidance_scale=inf.guidance_scale,
                    negative_prompt=inf.negative_prompt, pose_scale=inf.pose_scale, pose_on_uncond=inf.pose_on_uncond,
                    context_length=inf.context_length, context_overlap=inf.context_overlap,
                    generator=torch.Generator(module.device).manual_seed(inf.seed),
                ).frames[0]
                write_video(partial / f"{prompt_file_stem(index, prompt)}.mp4", frames, inf.fps)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        return target


def _warn_none(message: str) -> None:
    warnings.warn(message, SampleWarning, stacklevel=3)
    return None


def sample_callbacks(run_dir: str, train: Any, inference: FypInferenceConfig) -> list[pl.Callback]:
    """The validation-sample callback of a Follow-Your-Pose fit config (none when `train.sample_every` is 0)."""
    if not train.sample_every:
        return []
    if not train.sample_prompts:
        warnings.warn("train.sample_every is set but train.sample_prompts is empty: no validation samples",
                      SampleWarning, stacklevel=2)
        return []
    return [FypSamples(Path(run_dir) / "samples", train.sample_every, train.sample_prompts, train.sample_skeleton,
                       inference)]
