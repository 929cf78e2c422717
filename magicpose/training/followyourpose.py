"""Follow-Your-Pose training as a LightningModule (both stages; the stage is a config value).

Stage 1 (pose-conditioned text-to-image, never released by the original): pose-image pairs (TikTok-format folders),
captions = `data.prompt`; the pose adapter trains, everything else is frozen. Images run through the video UNet
as one-frame clips, which equals SD's 2D UNet while the temporal branches are at their zero init (and equals the
model that is sampled when they are not).

Stage 2 (text-to-video): clips + captions (`magicpose.data.video_caption`); the parameters of the modules whose names
end with `train.trainable_modules` train (the original: `attn1.to_q`, `attn2.to_q`, `attn_temp`, `conv_temporal`),
everything else is frozen. Pose is off by default, as in the original (`train.pose_in_stage2` adds the frozen
adapter's features of the clip's skeleton).

Fixes over the original recipe: every caption of a batch is used (it took the first one for the whole batch), the
pose addition survives gradient checkpointing (it lives outside the checkpointed blocks), resumable data order and
noise from (seed, step, rank), trained-only checkpoints.

Batches: stage 1 `pixel_values` b 3 H W in [-1, 1], `pose_pixel_values` b 3 H W in [0, 1]; stage 2 `pixel_values`
b f 3 H W, `caption` list of b str, optionally `pose_pixel_values` b f 3 H W.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from einops import rearrange
from safetensors.torch import save_file

from magicpose.config import to_container
from magicpose.errors import UserError
from magicpose.models.fyp_components import DELTA_FILE, FypModelSpec, build_fyp_components
from magicpose.models.pose_adapter import pose_features
from magicpose.models.video_unet import trainable_parameter_names
from magicpose.paths import resolve_path
from magicpose.pipelines.followyourpose import FollowYourPosePipeline
from magicpose.training.data import step_generator, training_loader
from magicpose.training.module import training_scheduler


class TrainableSubset:
    """The trained parameters of a module, saved as one safetensors file (what `TrainedWeights` writes per step)."""

    def __init__(self, module: torch.nn.Module, names: list[str]) -> None:
        self.module, self.names = module, names

    def save_pretrained(self, folder: str | Path, safe_serialization: bool = True) -> None:
        params = dict(self.module.named_parameters())
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({n: params[n].detach().contiguous().cpu() for n in self.names}, str(folder / DELTA_FILE),
                  metadata={"format": "pt"})


class FollowYourPoseTraining(pl.LightningModule):
    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        train = config.train
        if train.stage not in (1, 2):
            raise UserError(f"train.stage: {train.stage} is not 1 or 2")
        self.stage = train.stage
        self.use_pose = self.stage == 1 or train.pose_in_stage2
        spec = FypModelSpec(**to_container(config.model))
        spec.with_pose_adapter = spec.with_pose_adapter or self.use_pose
        parts = build_fyp_components(spec)
        self.vae = parts["vae"].requires_grad_(False).eval()
        self.text_encoder = parts["text_encoder"].requires_grad_(False).eval()
        self.tokenizer = parts["tokenizer"]
        self.sample_scheduler = parts["scheduler"]
        self.unet = parts["unet"]
        self.pose_adapter = parts["pose_adapter"]
        self.noise_scheduler = training_scheduler(parts["scheduler"], None)
        self.strict_loading = False  # checkpoints hold only the trained parameters; on_load_checkpoint checks them
        self.trained_names = self._freeze_all_but_trained(list(train.trainable_modules))
        if train.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        self.ema = None  # TrainedWeights looks for it

    def _freeze_all_but_trained(self, patterns: list[str]) -> list[str]:
        self.requires_grad_(False)
        if self.stage == 1:
            self.pose_adapter.requires_grad_(True)
            return sorted(f"pose_adapter.{n}" for n, _ in self.pose_adapter.named_parameters())
        names = trainable_parameter_names(self.unet, patterns)
        if not names:
            raise UserError(f"train.trainable_modules: {patterns} match no module of the video UNet")
        params = dict(self.unet.named_parameters())
        for name in names:
            params[name].requires_grad_(True)
        return [f"unet.{n}" for n in names]

    def train(self, mode: bool = True) -> FollowYourPoseTraining:
        super().train(mode)
        self.vae.eval()
        self.text_encoder.eval()
        return self

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # ----- data ------------------------------------------------------------------------------------------
    def train_dataloader(self):
        return make_fyp_loader(self.config, self.global_rank, self.trainer.world_size, self.global_step)

    # ----- loss ------------------------------------------------------------------------------------------
    def step_generator(self, batch_idx: int) -> torch.Generator:
        micro = batch_idx % self.config.train.accumulate_grad_batches
        return step_generator(self.config.train.seed, self.global_step, micro, self.global_rank, self.device)

    @torch.no_grad()
    def encode_text(self, captions: list[str]) -> torch.Tensor:
        ids = self.tokenizer(captions, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        return self.text_encoder(ids.to(self.device))[0]

    @torch.no_grad()
    def encode_video(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """`b f 3 H W` in [-1, 1] -> latents `b c f h w`."""
        b = pixels.shape[0]
        flat = rearrange(pixels, "b f c h w -> (b f) c h w").to(self.vae.dtype)
        latents = self.vae.encode(flat).latent_dist.sample(generator) * self.vae.config.scaling_factor
        return rearrange(latents, "(b f) c h w -> b c f h w", b=b)

    def compute_loss(self, batch: dict[str, Any], generator: torch.Generator) -> torch.Tensor:
        pixels = batch["pixel_values"]
        if self.stage == 1:  # images are one-frame clips
            pixels = pixels.unsqueeze(1)
        b, f = pixels.shape[:2]
        latents = self.encode_video(pixels, generator)
        noise = torch.randn(latents.shape, generator=generator, device=self.device, dtype=latents.dtype)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (b,), generator=generator,
                          device=self.device)
        noisy = self.noise_scheduler.add_noise(latents, noise, t)  # one timestep per clip
        text = self.encode_text(self._captions(batch, b, generator))
        feats = None
        if self.use_pose:
            poses = batch["pose_pixel_values"]
            poses = poses if self.stage == 1 else rearrange(poses, "b f c h w -> (b f) c h w")
            with torch.set_grad_enabled(self.stage == 1):  # the adapter trains in stage 1 only
                feats = pose_features(self.pose_adapter, poses)
        prediction = self.unet(noisy, t, text, pose_features=feats)
        return F.mse_loss(prediction.float(), self._target(latents, noise, t).float())

    def _captions(self, batch: dict[str, Any], b: int, generator: torch.Generator) -> list[str]:
        captions = list(batch["caption"]) if "caption" in batch else [self.config.data.prompt] * b
        drop = torch.rand(b, generator=generator, device=self.device) < self.config.train.text_dropout
        return ["" if d else c for c, d in zip(captions, drop.tolist())]

    def _target(self, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
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
        self.log("trained_steps", float(self.global_step + 1), batch_size=b)
        return loss

    def configure_optimizers(self):
        train = self.config.train
        optimizer = torch.optim.AdamW(self.trainable_parameters(), lr=train.lr, betas=tuple(train.betas),
                                      weight_decay=train.weight_decay)
        warmup = max(train.warmup_steps, 0)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # ----- checkpoints: only what trains -----------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keep = set(self.trained_names)
        state = checkpoint["state_dict"]
        for key in [k for k in state if k not in keep]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        have, expected = set(checkpoint["state_dict"]), set(self.trained_names)
        missing, unexpected = sorted(expected - have), sorted(have - expected)
        if missing or unexpected:
            raise UserError(f"checkpoint does not match this model: {len(missing)} missing (e.g. {missing[:1]}), "
                            f"{len(unexpected)} unexpected (e.g. {unexpected[:1]})")

    def trained_modules(self) -> dict[str, Any]:
        if self.stage == 1:
            return {"pose_adapter": self.pose_adapter}
        return {"unet": TrainableSubset(self.unet, [n.removeprefix("unet.") for n in self.trained_names])}

    def pipeline(self, use_ema: bool = True) -> FollowYourPosePipeline:
        """A pipeline on this module's components (sharing their weights)."""
        pipe = FollowYourPosePipeline(self.vae, self.text_encoder, self.tokenizer, self.unet, self.pose_adapter,
                                      copy.deepcopy(self.sample_scheduler))
        pipe.set_progress_bar_config(disable=True)
        return pipe


def make_fyp_loader(config: Any, rank: int, world_size: int, global_step: int):
    """This rank's loader, positioned after `global_step` optimizer steps."""
    data, train = config.data, config.train
    if train.stage == 1:
        from magicpose.data.tiktok import TikTokPairDataset

        dataset = TikTokPairDataset(data.root, data.train_split, size=data.size, resize_mode=data.resize_mode,
                                    seed=train.seed)
    else:
        from magicpose.data.video_caption import VideoCaptionDataset

        dataset = VideoCaptionDataset(data.captions, frames=data.frames, stride=data.stride, size=data.size,
                                      resize_mode=data.resize_mode, seed=train.seed, with_pose=train.pose_in_stage2)
    seen = global_step * data.batch_size * train.accumulate_grad_batches
    return training_loader(dataset, data.batch_size, data.num_workers, rank, world_size, train.seed, seen)


def _check_data(config: Any) -> None:
    data = config.data
    if config.train.stage == 1:
        root = resolve_path(data.root)
        if not root.is_dir():
            raise UserError(f"{root}: no such dataset folder (data.root: TikTok-format pose-image pairs)")
        data.root = str(root)
    else:
        captions = resolve_path(data.captions)
        if not captions.is_file():
            raise UserError(f"{captions}: no such captions file (data.captions; see docs/followyourpose.md)")
        data.captions = str(captions)


def run_fyp_fit(config: Any, resume: bool = False) -> Path:
    """Train one stage; the run folder gets config.yaml, checkpoints/, weights/step-N/, tb/ and pipeline/."""
    from magicpose.training.callbacks import Throughput, TrainedWeights
    from magicpose.training.fit import fit_and_export, prepare_run_dir

    _check_data(config)
    run_dir, ckpt = prepare_run_dir(config, resume)
    pl.seed_everything(config.train.seed, workers=True, verbose=False)
    module = FollowYourPoseTraining(config)
    callbacks = [TrainedWeights(run_dir / "weights", config.train.checkpoint_every, config.train.keep_last),
                 Throughput(config.train.log_every, config.data.batch_size)]
    return fit_and_export(config, module, run_dir, ckpt, callbacks)


def cli_fit(args: argparse.Namespace) -> int:
    """`magicpose fit -c CONFIG` for configs with `system: followyourpose`."""
    from magicpose.config import load_config
    from magicpose.config_fyp import FypFitConfig, check_system

    config = load_config(args.config, list(args.overrides), schema=FypFitConfig)
    check_system(config)
    run_dir = run_fyp_fit(config, resume=args.resume)
    print(f"trained; run folder {run_dir} (pipeline for `magicpose fyp-sample`: model.pretrained={run_dir / 'pipeline'})")
    return 0
