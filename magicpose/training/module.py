"""MagicPose training as a LightningModule (both stages; the stage is a config value, not a copied script).

Stage 1 (appearance control pretraining): the appearance UNet trains; the frozen UNet sees no pose; the target is
another frame of the reference's video. Stage 2 (appearance-disentangled pose control): the appearance UNet and the
pose ControlNet train jointly. The main UNet, the VAE and the text encoder are frozen, in eval mode, with
`requires_grad=False`; appearance-UNet parameters that no loss can reach (its output head and what follows the last
recorded `attn1` input) are frozen too, so the trainable set is exactly what the loss reaches and DDP runs with
`find_unused_parameters=False`.

Batch (see `magicpose.data.tiktok.TikTokPairDataset`): `pixel_values` b 3 H W in [-1, 1] (targets),
`ref_pixel_values` b 3 H W in [-1, 1], `pose_pixel_values` b 3 H W in [0, 1].
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.training_utils import EMAModel, compute_snr

from magicpose.config import to_container
from magicpose.data.tiktok import TikTokPairDataset
from magicpose.errors import UserError
from magicpose.models.components import ModelSpec, build_components
from magicpose.models.magicpose import MagicPoseModel
from magicpose.pipelines.magicpose import MagicPosePipeline
from magicpose.training.data import step_generator, training_loader

TRAINED_PREFIXES = ("model.appearance_unet.", "model.controlnet.")  # + "model.unet." with train.train_unet
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


class MagicPoseTraining(pl.LightningModule):
    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        train = config.train
        if train.stage not in (1, 2):
            raise UserError(f"train.stage: {train.stage} is not 1 or 2")
        spec = ModelSpec(**to_container(config.model))
        spec.with_controlnet = train.stage == 2
        parts = build_components(spec)
        self.vae = _frozen(parts["vae"])
        self.text_encoder = _frozen(parts["text_encoder"])
        self.tokenizer = parts["tokenizer"]
        self.sample_scheduler = parts["scheduler"]
        self.model = MagicPoseModel(parts["unet"], parts["appearance_unet"], parts["controlnet"]).prepare(spec.attention)
        # MagicPose keeps the pretrained main UNet frozen; `train_unet` is for worlds with no pretrained base (the
        # CPU toy quickstart), where a frozen random UNet could never produce a clean frame.
        self.model.unet.requires_grad_(train.train_unet)
        self.model.train()
        self.trained_prefixes = TRAINED_PREFIXES + (("model.unet.",) if train.train_unet else ())
        self.noise_scheduler = training_scheduler(parts["scheduler"], train.prediction_type)
        self.register_buffer("empty_text", self._encode_empty_prompt(), persistent=False)
        self.strict_loading = False  # checkpoints hold only the trained modules; on_load_checkpoint checks them
        self.unreached = freeze_unreached_parameters(self.model, self.vae_scale_factor)
        if train.gradient_checkpointing:
            self.model.appearance_unet.enable_gradient_checkpointing()
            if self.model.controlnet is not None:
                self.model.controlnet.enable_gradient_checkpointing()
        self.ema = EMAModel(self.trainable_parameters(), decay=train.ema_decay) if train.ema_decay else None

    # ----- structure -------------------------------------------------------------------------------------
    @property
    def vae_scale_factor(self) -> int:
        return 1 if self.vae is None else 2 ** (len(self.vae.config.block_out_channels) - 1)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    @torch.no_grad()
    def _encode_empty_prompt(self) -> torch.Tensor:
        """CLIP("") once: every MagicPose prompt is empty (the original trained without text)."""
        ids = self.tokenizer("", padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        return self.text_encoder(ids)[0]

    def train(self, mode: bool = True) -> MagicPoseTraining:
        super().train(mode)
        for frozen in (self.vae, self.text_encoder):
            if frozen is not None:
                frozen.eval()
        return self

    # ----- data ------------------------------------------------------------------------------------------
    def train_dataloader(self):
        # Called after a checkpoint is restored, so global_step tells where this rank's stream continues.
        return make_train_loader(self.config, self.global_rank, self.trainer.world_size, self.global_step)

    # ----- loss ------------------------------------------------------------------------------------------
    def _step_generator(self, batch_idx: int) -> torch.Generator:
        micro = batch_idx % self.config.train.accumulate_grad_batches
        return step_generator(self.config.train.seed, self.global_step, micro, self.global_rank, self.device)

    def encode(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.vae is None:
            return pixels
        with torch.no_grad():
            posterior = self.vae.encode(pixels.to(self.vae.dtype)).latent_dist
            return posterior.sample(generator) * self.vae.config.scaling_factor

    def compute_loss(self, batch: dict[str, Any], generator: torch.Generator) -> torch.Tensor:
        train = self.config.train
        latents = self.encode(batch["pixel_values"], generator)
        reference = self.encode(batch["ref_pixel_values"], generator)
        b = latents.shape[0]
        noise = torch.randn(latents.shape, generator=generator, device=self.device, dtype=latents.dtype)
        steps = self.noise_scheduler.config.num_train_timesteps
        t = torch.randint(0, steps, (b,), generator=generator, device=self.device)
        noisy = self.noise_scheduler.add_noise(latents, noise, t)
        if train.reference_noise:
            reference = self.noise_scheduler.add_noise(reference, noise, t)
        if torch.rand((), generator=generator, device=self.device) < train.reference_dropout:
            reference = None
        pose = None
        if self.model.controlnet is not None:
            pose = batch["pose_pixel_values"]
            if train.pose_dropout > 0:
                keep = torch.rand(b, generator=generator, device=self.device) >= train.pose_dropout
                pose = pose * keep.view(b, 1, 1, 1).to(pose.dtype)
        text = self.empty_text.expand(b, -1, -1)
        prediction = self.model(noisy, t, text, reference, pose)
        return self._weighted_mse(prediction.float(), self._target(latents, noise, t).float(), t)

    def _target(self, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        kind = self.noise_scheduler.config.prediction_type
        if kind == "epsilon":
            return noise
        if kind == "v_prediction":
            return self.noise_scheduler.get_velocity(latents, noise, t)
        return latents

    def _weighted_mse(self, prediction: torch.Tensor, target: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        per_item = F.mse_loss(prediction, target, reduction="none").mean(dim=(1, 2, 3))
        gamma = self.config.train.min_snr_gamma
        if gamma:
            snr = compute_snr(self.noise_scheduler, t)
            weight = torch.minimum(snr, torch.full_like(snr, gamma))
            # Min-SNR-gamma weights the x0 error by min(SNR, gamma); an epsilon error is SNR times the x0 error
            # and a v error (SNR + 1) times, so divide those out.
            divisor = {"epsilon": snr, "v_prediction": snr + 1, "sample": torch.ones_like(snr)}
            per_item = per_item * weight / divisor[self.noise_scheduler.config.prediction_type]
        return per_item.mean()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.compute_loss(batch, self._step_generator(batch_idx))
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

    def configure_optimizers(self):
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
        state = checkpoint["state_dict"]
        for key in [k for k in state if not k.startswith(self.trained_prefixes)]:
            del state[key]
        if self.ema is not None:
            checkpoint["ema"] = self.ema.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        expected = {k for k in self.state_dict() if k.startswith(self.trained_prefixes)}
        have = set(checkpoint["state_dict"])
        missing, unexpected = sorted(expected - have), sorted(have - expected)
        if missing or unexpected:
            detail = f"{len(missing)} missing (e.g. {missing[:1]}), {len(unexpected)} unexpected (e.g. {unexpected[:1]})"
            raise UserError(f"checkpoint does not match this model: {detail}")
        if self.ema is not None:
            if "ema" not in checkpoint:
                raise UserError("checkpoint has no EMA state but train.ema_decay is set")
            self.ema.load_state_dict(checkpoint["ema"])

    def trained_modules(self) -> dict[str, torch.nn.Module]:
        modules = {"appearance_unet": self.model.appearance_unet}
        if self.model.controlnet is not None:
            modules["controlnet"] = self.model.controlnet
        if self.config.train.train_unet:
            modules["unet"] = self.model.unet
        return modules

    def pipeline(self, use_ema: bool = True) -> MagicPosePipeline:
        """A MagicPosePipeline on this module's components (sharing their weights; EMA weights if enabled)."""
        model = self.model
        if use_ema and self.ema is not None:
            import copy

            model = copy.deepcopy(model)  # processors (and their backend) come along
            # same order as trainable_parameters(): model.unet, model.appearance_unet, model.controlnet
            self.ema.copy_to([p for p in model.parameters() if p.requires_grad])
        pipe = MagicPosePipeline.from_model(model, self.vae, self.text_encoder, self.tokenizer, self.sample_scheduler)
        pipe.set_progress_bar_config(disable=True)
        return pipe


def make_train_loader(config: Any, rank: int, world_size: int, global_step: int):
    """This rank's training loader, positioned after `global_step` optimizer steps."""
    data, train = config.data, config.train
    dataset = TikTokPairDataset(
        data.root, data.train_split, size=data.size, resize_mode=data.resize_mode,
        max_frame_distance=data.max_frame_distance,
        random_resized_crop=tuple(data.random_resized_crop) if data.random_resized_crop else None,
        face_dropout=data.face_dropout, hand_dropout=data.hand_dropout, seed=train.seed,
    )
    seen = global_step * data.batch_size * train.accumulate_grad_batches
    return training_loader(dataset, data.batch_size, data.num_workers, rank, world_size, train.seed, seen)


def _frozen(module: torch.nn.Module | None) -> torch.nn.Module | None:
    if module is not None:
        module.requires_grad_(False).eval()
    return module


def training_scheduler(sample_scheduler: Any, prediction_type: str | None) -> DDPMScheduler:
    config = dict(sample_scheduler.config)
    if prediction_type is not None:
        if prediction_type not in PREDICTION_TYPES:
            raise UserError(f"train.prediction_type: {prediction_type!r} is not one of {', '.join(PREDICTION_TYPES)}")
        config["prediction_type"] = prediction_type
        sample_scheduler.register_to_config(prediction_type=prediction_type)  # sampling must agree
    return DDPMScheduler.from_config(config)


def freeze_unreached_parameters(model: MagicPoseModel, vae_scale_factor: int) -> list[str]:
    """Freeze the appearance-UNet parameters that no loss can reach; return their names.

    The appearance UNet only contributes through the `attn1` inputs it records, so everything computed after
    the last recording (the rest of that transformer block, the output norm and conv) gets no gradient. Found by
    one probe forward/backward at the smallest valid size, so it holds for any UNet layout.
    """
    unet = model.appearance_unet
    side = 2 ** (len(unet.config.block_out_channels) - 1)
    channels, dim = unet.config.in_channels, unet.config.cross_attention_dim
    device, dtype = unet.device, unet.dtype
    sample = torch.zeros(1, channels, side, side, device=device, dtype=dtype)
    text = torch.zeros(1, 1, dim, device=device, dtype=dtype)
    pose = None
    if model.controlnet is not None:
        pose = torch.zeros(1, 3, side * vae_scale_factor, side * vae_scale_factor, device=device, dtype=dtype)
    unet.zero_grad(set_to_none=True)
    with torch.enable_grad():
        model(sample, torch.tensor([1], device=device), text, sample, pose).sum().backward()
    names = [n for n, p in unet.named_parameters() if p.requires_grad and p.grad is None]
    for name, param in unet.named_parameters():
        param.grad = None
        if name in names:
            param.requires_grad_(False)
    if model.controlnet is not None:
        model.controlnet.zero_grad(set_to_none=True)
    return names

