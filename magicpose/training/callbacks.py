"""Callbacks: safetensors of the trained modules, validation samples, throughput."""

from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image


class TrainedWeights(pl.Callback):
    """Every `every` steps (and at the end): `weights/step-NNNNNNN/<module>/` as safetensors, last `keep` kept.

    Written into a temporary folder and renamed, so a killed run never leaves a half-written step folder.
    """

    def __init__(self, folder: Path, every: int, keep: int) -> None:
        self.folder, self.every, self.keep = Path(folder), every, keep

    def on_train_batch_end(self, trainer: pl.Trainer, module: Any, *args: Any) -> None:
        step = trainer.global_step
        if self.every and step % self.every == 0 and step > 0 and trainer.is_global_zero:
            self.save(module, step)

    def on_train_end(self, trainer: pl.Trainer, module: Any) -> None:
        if trainer.is_global_zero and not (self.folder / f"step-{trainer.global_step:07d}").exists():
            self.save(module, trainer.global_step)

    def save(self, module: Any, step: int) -> Path:
        target = self.folder / f"step-{step:07d}"
        partial = self.folder / f".partial-step-{step:07d}"
        shutil.rmtree(partial, ignore_errors=True)
        for name, part in module.trained_modules().items():
            part.save_pretrained(partial / name, safe_serialization=True)
        if module.ema is not None:
            ema = module.pipeline(use_ema=True)
            for name in module.trained_modules():
                getattr(ema, name).save_pretrained(partial / "ema" / name, safe_serialization=True)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        for old in sorted(self.folder.glob("step-*"))[: -self.keep] if self.keep > 0 else []:
            shutil.rmtree(old)
        return target


class SampleWarning(UserWarning):
    """Validation samples during training are off (no sample split) or failed (the run goes on)."""


class PeriodicSamples(pl.Callback):
    """Every `every` steps on rank 0: `sample(trainer, module, step)` with the module in eval mode (its mode is
    restored after). A sample is a by-product: a failure is one `SampleWarning` with the reason, sampling stops for
    the rest of the run (it would fail again), and training goes on. Subclasses name what they make in `what`."""

    what = "samples"

    def __init__(self, every: int) -> None:
        self.every = every

    def on_train_batch_end(self, trainer: pl.Trainer, module: Any, *args: Any) -> None:
        step = trainer.global_step
        if not (self.every and step > 0 and step % self.every == 0 and trainer.is_global_zero):
            return
        was_training = module.training
        module.eval()
        try:
            self.sample(trainer, module, step)
        except Exception as err:  # noqa: BLE001 - whatever it is: say why once, keep training
            self.every = 0
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            reason = (str(err).strip().splitlines() or [""])[0]
            warnings.warn(f"{self.what} at step {step} failed ({type(err).__name__}: {reason}); sampling is off for "
                          "the rest of this run", SampleWarning, stacklevel=1)
        finally:
            module.train(was_training)

    def sample(self, trainer: pl.Trainer, module: Any, step: int) -> None:
        raise NotImplementedError


class SampleClip(PeriodicSamples):
    """Every `every` steps on rank 0: animate the first frames of one held-out clip and log a grid
    (reference | pose | generated | ground truth) to TensorBoard and an mp4 to `samples/`."""

    what = "sample clip"

    def __init__(self, clip: dict[str, Any], folder: Path, every: int, inference: Any) -> None:
        super().__init__(every)
        self.clip, self.folder, self.inference = clip, Path(folder), inference

    @torch.no_grad()
    def sample(self, trainer: pl.Trainer, module: Any, step: int) -> None:
        from magicpose.media import write_video

        pipe = module.pipeline()
        clip, inf = self.clip, self.inference
        poses = clip["pose_pixel_values"].to(module.device)
        side = clip["pixel_values"].shape[-1]  # data.size: the model's default size may differ
        generated = pipe(
            _to_pil(clip["ref_pixel_values"], signed=True),
            poses if module.model.controlnet is not None else None,
            num_frames=None if module.model.controlnet is not None else poses.shape[0],
            num_inference_steps=inf.steps, guidance_scale=inf.guidance_scale, guidance_mode=inf.guidance_mode,
            height=side, width=side, frames_per_batch=inf.frames_per_batch,
            generator=torch.Generator(module.device).manual_seed(inf.seed),
            output_type="np",
        ).frames[0]
        rows = [
            np.concatenate([_np(clip["ref_pixel_values"], True), _np(pose, False), gen, _np(gt, True)], axis=1)
            for pose, gen, gt in zip(clip["pose_pixel_values"], generated, clip["pixel_values"])
        ]
        grid = np.concatenate(rows, axis=0)
        experiment = getattr(trainer.logger, "experiment", None)
        if experiment is not None and hasattr(experiment, "add_image"):
            experiment.add_image("val/ref_pose_generated_gt", grid, step, dataformats="HWC")
        frames = [(row * 255).round().astype(np.uint8) for row in rows]
        write_video(self.folder / f"step-{step:07d}.mp4", frames, fps=inf.fps)


class Throughput(pl.Callback):
    """Logs samples per second (all ranks together) every `every` steps."""

    def __init__(self, every: int, batch_size: int) -> None:
        self.every, self.batch_size = every, batch_size
        self.start: float | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, module: Any, batch: Any, batch_idx: int) -> None:
        if self.start is None:
            self.start, self.first_step = time.perf_counter(), trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, module: Any, *args: Any) -> None:
        steps = trainer.global_step - self.first_step
        if self.start is None or steps == 0 or trainer.global_step % self.every:
            return
        seconds = time.perf_counter() - self.start
        samples = steps * self.batch_size * trainer.world_size * trainer.accumulate_grad_batches
        module.log("train/samples_per_s", samples / seconds, rank_zero_only=True)


def _np(tensor: torch.Tensor, signed: bool) -> np.ndarray:
    image = tensor.float().cpu()
    image = (image + 1) / 2 if signed else image
    return image.clamp(0, 1).permute(1, 2, 0).numpy()


def _to_pil(tensor: torch.Tensor, signed: bool) -> Image.Image:
    return Image.fromarray((_np(tensor, signed) * 255).round().astype(np.uint8))
