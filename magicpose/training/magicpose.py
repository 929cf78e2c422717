"""MagicPose training as a LightningModule (all three stages; the stage is a config value, not a copied script).

Stage 1 (appearance control pretraining): the appearance UNet trains; the frozen UNet sees no pose; the target is
another frame of the reference's video. Stage 2 (appearance-disentangled pose control): the appearance UNet and the
pose ControlNet train jointly. The main UNet, the VAE and the text encoder are frozen, in eval mode, with
`requires_grad=False`; appearance-UNet parameters that no loss can reach (its output head and what follows the last
recorded `attn1` input) are frozen too, so the trainable set is exactly what the loss reaches and DDP runs with
`find_unused_parameters=False`. Stage 3 (temporal): only the motion module (an AnimateDiff `MotionAdapter`, fresh
and zero-initialised or loaded) trains, on clips; the UNet, the appearance UNet and the ControlNet of stage 2 are
frozen, and the bank of a clip's reference serves all its frames.

Batch (see `magicpose.data.tiktok.TikTokPairDataset`): `pixel_values` b 3 H W in [-1, 1] (targets),
`ref_pixel_values` b 3 H W in [-1, 1], `pose_pixel_values` b 3 H W in [0, 1]. Stage 3 (`TikTokClipDataset`):
`pixel_values` and `pose_pixel_values` are `b f 3 H W` clips, one reference `b 3 H W` per clip.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from diffusers.training_utils import EMAModel, compute_snr
from einops import rearrange
from pytorch_lightning.utilities.rank_zero import rank_zero_only, rank_zero_warn

from magicpose.config import FitConfig
from magicpose.data.tiktok import TikTokPairDataset, TikTokVideoDataset, test_split
from magicpose.errors import UserError
from magicpose.models.components import build_components, unet_scale_factor, vae_scale_factor
from magicpose.models.magicpose import MagicPoseModel
from magicpose.paths import resolve_path
from magicpose.pipelines.magicpose import MagicPosePipeline
from magicpose.training.base import DiffusionTraining, frozen, training_scheduler
from magicpose.training.data import training_loader

TRAINED_PREFIXES = ("model.appearance_unet.", "model.controlnet.")  # + "model.unet." with train.train_unet
TEMPORAL_PREFIXES = ("model.motion_adapter.",)  # stage 3


class MagicPoseTraining(DiffusionTraining):
    stages = (1, 2, 3)

    def __init__(self, config: FitConfig) -> None:
        super().__init__(config)
        train = config.train
        temporal = train.stage == 3
        check_stage(config)
        parts = build_components(replace(config.model, with_controlnet=train.stage >= 2, motion_module=temporal))
        self.vae = frozen(parts["vae"])
        self.text_encoder = frozen(parts["text_encoder"])
        self.tokenizer = parts["tokenizer"]
        self.sample_scheduler = parts["scheduler"]
        self.model = MagicPoseModel(parts["unet"], parts["appearance_unet"], parts["controlnet"],
                                    parts["motion_adapter"])
        self.model.prepare(config.model.attention)
        # MagicPose keeps the pretrained main UNet frozen; `train_unet` is for worlds with no pretrained base (the
        # CPU toy quickstart), where a frozen random UNet could never produce a clean frame.
        self.model.unet.requires_grad_(train.train_unet)
        if temporal:  # stage 3 trains the motion module alone
            for frozen_part in (self.model.appearance_unet, self.model.controlnet):
                frozen_part.requires_grad_(False).eval()
        self.model.train()
        self.trained_prefixes = TEMPORAL_PREFIXES if temporal else (
            TRAINED_PREFIXES + (("model.unet.",) if train.train_unet else ()))
        self.noise_scheduler = training_scheduler(parts["scheduler"], train.prediction_type)
        self.register_buffer("empty_text", self._encode_empty_prompt(), persistent=False)
        self.vae_scale_factor = vae_scale_factor(self.vae)
        self.unreached = [] if temporal else freeze_unreached_parameters(self.model, self.vae_scale_factor)
        if train.gradient_checkpointing and temporal:
            self.model.main_unet.enable_gradient_checkpointing()  # the loss reaches the module through the UNet
        elif train.gradient_checkpointing:
            self.model.appearance_unet.enable_gradient_checkpointing()
            if self.model.controlnet is not None:
                self.model.controlnet.enable_gradient_checkpointing()
        self.ema = EMAModel(self.trainable_parameters(), decay=train.ema_decay) if train.ema_decay else None

    @torch.no_grad()
    def _encode_empty_prompt(self) -> torch.Tensor:
        """CLIP("") once: every MagicPose prompt is empty (the original trained without text)."""
        ids = self.tokenizer("", padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        return self.text_encoder(ids)[0]

    def train(self, mode: bool = True) -> MagicPoseTraining:
        super().train(mode)
        frozen_parts = [self.vae, self.text_encoder]
        if self.config.train.stage == 3:
            frozen_parts += [self.model.appearance_unet, self.model.controlnet]
        for part in frozen_parts:
            if part is not None:
                part.eval()
        return self

    # ----- data ------------------------------------------------------------------------------------------
    @staticmethod
    def check_data(config: FitConfig) -> None:
        root = resolve_path(config.data.root)
        if not root.is_dir():
            raise UserError(f"{root}: no such dataset folder (data.root); make a toy one with `magicpose toy-data`")
        config.data.root = str(root)

    def loader(self, rank: int, world_size: int, global_step: int) -> torch.utils.data.DataLoader:
        return make_train_loader(self.config, rank, world_size, global_step)

    def configure_callbacks(self) -> list[pl.Callback]:
        """A sample clip of the validation split every `train.sample_every` steps (none without that split)."""
        from magicpose.training.callbacks import SampleClip

        clip = sample_clip(self.config)
        if clip is None:
            return []
        return [SampleClip(clip, Path(self.config.run_dir) / "samples", self.config.train.sample_every,
                           self.config.inference)]

    # ----- loss ------------------------------------------------------------------------------------------
    def encode(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.vae is None:
            return pixels
        with torch.no_grad():
            posterior = self.vae.encode(pixels.to(self.vae.dtype)).latent_dist
            return posterior.sample(generator) * self.vae.config.scaling_factor

    def compute_loss(self, batch: dict[str, Any], generator: torch.Generator) -> torch.Tensor:
        """The loss of one batch of pairs (stages 1, 2) or clips (stage 3: frames flattened `(b f)`, one timestep and
        one reference per clip)."""
        train = self.config.train
        pixels, pose = batch["pixel_values"], batch.get("pose_pixel_values")
        clips = pixels.ndim == 5  # stage 3 (`check_stage` made the data and the stage agree)
        frames = pixels.shape[1] if clips else None
        if clips:
            pixels = rearrange(pixels, "b f c h w -> (b f) c h w")
            pose = rearrange(pose, "b f c h w -> (b f) c h w")
        latents = self.encode(pixels, generator)
        reference = self.encode(batch["ref_pixel_values"], generator)
        b = latents.shape[0]
        noise = torch.randn(latents.shape, generator=generator, device=self.device, dtype=latents.dtype)
        if clips and train.clip_noise:
            noise = mix_clip_noise(noise, frames, train.clip_noise, generator)
        steps = self.noise_scheduler.config.num_train_timesteps
        t = torch.randint(0, steps, (reference.shape[0],), generator=generator, device=self.device)
        if clips:
            t = t.repeat_interleave(frames)  # a clip is denoised at one noise level
        noisy = self.noise_scheduler.add_noise(latents, noise, t)
        if train.reference_noise:
            reference = self.noise_scheduler.add_noise(reference, noise[:: frames or 1], t[:: frames or 1])
        if torch.rand((), generator=generator, device=self.device) < train.reference_dropout:
            reference = None
        if self.model.controlnet is None:
            pose = None
        elif train.pose_dropout > 0:
            keep = torch.rand(b // (frames or 1), generator=generator, device=self.device) >= train.pose_dropout
            pose = pose * keep.repeat_interleave(frames or 1).view(b, 1, 1, 1).to(pose.dtype)
        text = self.empty_text.expand(b, -1, -1)
        prediction = self.model(noisy, t, text, reference, pose, num_frames=frames)
        return self._weighted_mse(prediction.float(), self.target(latents, noise, t).float(), t)

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

    # ----- what is saved ---------------------------------------------------------------------------------
    def trained_state_keys(self) -> set[str]:
        return {k for k in self.state_dict() if k.startswith(self.trained_prefixes)}

    def trained_modules(self) -> dict[str, torch.nn.Module]:
        if self.config.train.stage == 3:
            return {"motion_adapter": self.model.motion_adapter}
        modules = {"appearance_unet": self.model.appearance_unet}
        if self.model.controlnet is not None:
            modules["controlnet"] = self.model.controlnet
        if self.config.train.train_unet:
            modules["unet"] = self.model.unet
        return modules

    def pipeline(self, use_ema: bool = True) -> MagicPosePipeline:
        """A MagicPosePipeline around this module's MagicPoseModel (EMA weights, in a copy, if enabled). The model is
        shared as it is: sampling changes neither what trains nor the attention backend."""
        model = self.model
        if use_ema and self.ema is not None:
            model = copy.deepcopy(model)  # processors (and their backend) come along
            # same order as trainable_parameters(): model.unet, model.appearance_unet, model.controlnet,
            # model.motion_adapter
            self.ema.copy_to([p for p in model.parameters() if p.requires_grad])
        pipe = MagicPosePipeline.from_model(model, self.vae, self.text_encoder, self.tokenizer, self.sample_scheduler)
        pipe.set_progress_bar_config(disable=True)
        return pipe


def mix_clip_noise(noise: torch.Tensor, frames: int, shared: float, generator: torch.Generator) -> torch.Tensor:
    """`(b f) c h w` unit-variance noise whose share `shared` of the variance is common to a clip's frames (PYoCo's
    mixed noise prior): 0 leaves it independent per frame (AnimateDiff), 1 gives every frame of a clip one noise,
    as the pipeline samples with `shared_noise` (its default)."""
    clips = noise.shape[0] // frames
    common = torch.randn((clips, *noise.shape[1:]), generator=generator, device=noise.device, dtype=noise.dtype)
    common = common.repeat_interleave(frames, dim=0)
    return shared**0.5 * common + (1.0 - shared) ** 0.5 * noise


def check_stage(config: FitConfig) -> None:
    """Stage 3 needs clips and a motion module; stages 1 and 2 neither."""
    train, data, model = config.train, config.data, config.model
    if train.stage == 3:
        if not data.num_frames:
            raise UserError("train.stage=3 trains the motion module on clips: set data.num_frames (e.g. 16)")
        if model.motion_module is False:
            raise UserError("train.stage=3 trains the motion module: model.motion_module must not be false")
        if train.train_unet:
            raise UserError("train.stage=3 trains the motion module alone: set train.train_unet=false")
    elif data.num_frames:
        raise UserError(f"train.stage={train.stage} trains on frame pairs: data.num_frames is for stage 3 (clips)")


def make_train_loader(config: FitConfig, rank: int, world_size: int, global_step: int) -> torch.utils.data.DataLoader:
    """This rank's training loader, positioned after `global_step` optimizer steps: pairs, or clips (`b f 3 H W`,
    `TikTokClipDataset`) when `data.num_frames` is set."""
    from magicpose.data.tiktok import TikTokClipDataset

    data, train = config.data, config.train
    options = dict(
        size=data.size, resize_mode=data.resize_mode, max_frame_distance=data.max_frame_distance,
        random_resized_crop=tuple(data.random_resized_crop) if data.random_resized_crop else None,
        face_dropout=data.face_dropout, hand_dropout=data.hand_dropout, seed=train.seed,
    )
    if data.num_frames is None:
        dataset = TikTokPairDataset(data.root, data.train_split, **options)
    else:
        dataset = TikTokClipDataset(data.root, data.train_split, num_frames=data.num_frames,
                                    frame_stride=data.frame_stride, **options)
    seen = global_step * data.batch_size * train.accumulate_grad_batches
    return training_loader(dataset, data.batch_size, data.num_workers, rank, world_size, train.seed, seen)


def sample_clip(config: FitConfig) -> dict[str, Any] | None:
    """The first frames of the sample split's first video, or None: sampling off, or no such split (said once, at
    fit start, with the reason; training still runs)."""
    from magicpose.training.callbacks import SampleWarning

    data = config.data
    if not data.val_split or not config.train.sample_every:
        return None
    try:
        split, found = test_split(data.root, data.val_split)
        videos = TikTokVideoDataset(data.root, split, size=data.size, resize_mode=data.resize_mode, max_frames=8)
    except UserError as err:
        rank_zero_warn(f"no sample clips during training (data.val_split={data.val_split}): {err}; set "
                       "data.val_split=null to train without them", category=SampleWarning)
        return None
    if found and rank_zero_only.rank == 0:
        print(f"sample clips: {found}", file=sys.stderr)
    return videos[0]


def freeze_unreached_parameters(model: MagicPoseModel, vae_scale_factor: int) -> list[str]:
    """Freeze the appearance-UNet parameters that no loss can reach; return their names.

    The appearance UNet only contributes through the `attn1` inputs it records, so everything computed after
    the last recording (the rest of that transformer block, the output norm and conv) gets no gradient. Found by
    one probe forward/backward at the smallest valid size, so it holds for any UNet layout.
    """
    unet = model.appearance_unet
    side = unet_scale_factor(unet)
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

