"""What both systems' LightningModules share, and the interface the callbacks and `fit` rely on.

A subclass builds its networks, freezes what does not train and implements:

* `compute_loss(batch, generator)`: the loss of one micro-batch, every random draw from `generator`;
* `trained_state_keys()`: the `state_dict` keys a resume checkpoint holds (only what trains);
* `trained_modules()`: name -> object with `save_pretrained(folder)`, what `TrainedWeights` writes per step;
* `pipeline(use_ema)`: an inference pipeline on the module's networks (sample clips, the exported folder);
* `loader(rank, world_size, global_step)`: this rank's training loader, resumed after `global_step` steps;
* `check_data(config)` (static): resolve and check the data paths before anything is built.

The base supplies the rest: the per-(seed, step, micro-batch, rank) RNG, the diffusion target, `training_step`,
AdamW with linear warm-up, optional EMA (stepped once per optimizer step), trained-only checkpoints checked on load.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from diffusers import DDPMScheduler
from diffusers.training_utils import EMAModel

from magicpose.errors import UserError
from magicpose.training.data import step_generator

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


class DiffusionTraining(pl.LightningModule):
    noise_scheduler: DDPMScheduler
    stages: tuple[int, ...] = (1, 2)  # the stages a system has

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        if config.train.stage not in self.stages:
            raise UserError(f"train.stage: {config.train.stage} is not one of {', '.join(map(str, self.stages))}")
        self.ema: EMAModel | None = None  # set by subclasses that keep one (after their trainable set is final)
        self.strict_loading = False  # checkpoints hold only the trained modules; on_load_checkpoint checks them

    # ----- the subclass's part ---------------------------------------------------------------------------
    def compute_loss(self, batch: dict[str, Any], generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def trained_state_keys(self) -> set[str]:
        raise NotImplementedError

    def trained_modules(self) -> dict[str, Any]:
        raise NotImplementedError

    def pipeline(self, use_ema: bool = True) -> Any:
        raise NotImplementedError

    def loader(self, rank: int, world_size: int, global_step: int) -> torch.utils.data.DataLoader:
        raise NotImplementedError

    @staticmethod
    def check_data(config: Any) -> None:
        raise NotImplementedError

    # ----- shared ----------------------------------------------------------------------------------------
    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        # Called after a checkpoint is restored, so global_step tells where this rank's stream continues.
        return self.loader(self.global_rank, self.trainer.world_size, self.global_step)

    def step_generator(self, batch_idx: int) -> torch.Generator:
        micro = batch_idx % self.config.train.accumulate_grad_batches
        return step_generator(self.config.train.seed, self.global_step, micro, self.global_rank, self.device)

    def target(self, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network predicts, by the training scheduler's `prediction_type`."""
        kind = self.noise_scheduler.config.prediction_type
        if kind == "epsilon":
            return noise
        if kind == "v_prediction":
            return self.noise_scheduler.get_velocity(latents, noise, t)
        return latents

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.compute_loss(batch, self.step_generator(batch_idx))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {self.global_step}")
        b = batch["pixel_values"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=b)
        # "trained_steps" (not "step", which Lightning takes as the logger x-axis) names and ranks checkpoints
        self.log("trained_steps", float(self.global_step + 1), batch_size=b)
        return loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        # Here rather than in on_train_batch_end, which runs *after* the callbacks' hooks: the weights a callback
        # saves at step N must hold N EMA updates. Lightning calls this once per real (accumulated) step.
        if self.ema is not None:
            self.ema.step(self.trainable_parameters())

    def configure_optimizers(self) -> dict[str, Any]:
        train = self.config.train
        optimizer = torch.optim.AdamW(
            self.trainable_parameters(), lr=train.lr, betas=tuple(train.betas), weight_decay=train.weight_decay
        )
        warmup = max(train.warmup_steps, 0)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # ----- checkpoints: only what trains -----------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keep = self.trained_state_keys()
        state = checkpoint["state_dict"]
        for key in [k for k in state if k not in keep]:
            del state[key]
        if self.ema is not None:
            checkpoint["ema"] = self.ema.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        have, expected = set(checkpoint["state_dict"]), self.trained_state_keys()
        missing, unexpected = sorted(expected - have), sorted(have - expected)
        if missing or unexpected:
            detail = f"{len(missing)} missing (e.g. {missing[:1]}), {len(unexpected)} unexpected (e.g. {unexpected[:1]})"
            raise UserError(f"checkpoint does not match this model: {detail}")
        if self.ema is not None:
            if "ema" not in checkpoint:
                raise UserError("checkpoint has no EMA state but train.ema_decay is set")
            self.ema.load_state_dict(checkpoint["ema"])


def frozen(module: torch.nn.Module | None) -> torch.nn.Module | None:
    """No gradients and eval mode, for the networks that only encode (VAE, text encoder)."""
    if module is not None:
        module.requires_grad_(False).eval()
    return module


def training_scheduler(sample_scheduler: Any, prediction_type: str | None) -> DDPMScheduler:
    """DDPM on the sampling scheduler's betas; `prediction_type` (if given) is set on both, so sampling agrees."""
    config = dict(sample_scheduler.config)
    if prediction_type is not None:
        if prediction_type not in PREDICTION_TYPES:
            raise UserError(f"train.prediction_type: {prediction_type!r} is not one of {', '.join(PREDICTION_TYPES)}")
        config["prediction_type"] = prediction_type
        sample_scheduler.register_to_config(prediction_type=prediction_type)  # sampling must agree
    return DDPMScheduler.from_config(config)
