"""Follow-Your-Pose training as a LightningModule (both stages; the stage is a config value).

Stage 1 (pose-conditioned text-to-image, never released by the original): pose-image pairs (TikTok-format folders),
captioned per image (`magicpose.data.image_captions`: sidecar `<frame>.txt`, `data.image_captions`, else
`data.prompt`); the pose adapter trains, everything else is frozen. Images run through the video UNet
as one-frame clips, which equals SD's 2D UNet while the temporal branches are at their zero init (and equals the
model that is sampled when they are not).

Stage 2 (text-to-video): clips + captions (`magicpose.data.video_caption`, or the original's HD-VILA CSV layout,
`magicpose.data.hdvila`, with `data.layout: hdvila`); the parameters of the modules whose names
end with `train.trainable_modules` train (the original: `attn1.to_q`, `attn2.to_q`, `attn_temp`, `conv_temporal`),
everything else is frozen. Pose is off by default, as in the original (`train.pose_in_stage2` adds the frozen
adapter's features of the clip's skeleton).

Fixes over the original recipe: every caption of a batch is used (it took the first one for the whole batch), the
pose addition survives gradient checkpointing (it lives outside the checkpointed blocks), resumable data order and
noise from (seed, step, rank), trained-only checkpoints. Validation videos (`train.sample_every`, the original's
`validation_steps`) come from a callback that never stops training (`magicpose.training.fyp_samples`).

Batches: stage 1 `pixel_values` b 3 H W in [-1, 1], `pose_pixel_values` b 3 H W in [0, 1] (images are run as
one-frame clips); stage 2 `pixel_values` b f 3 H W, `caption` list of b str, optionally `pose_pixel_values` b f 3 H W.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from einops import rearrange
from safetensors.torch import save_file

from magicpose.config import FypFitConfig
from magicpose.errors import UserError
from magicpose.models.fyp_components import DELTA_FILE, build_fyp_components
from magicpose.models.pose_adapter import pose_features
from magicpose.models.video_unet import trainable_parameter_names
from magicpose.paths import resolve_path
from magicpose.pipelines.followyourpose import FollowYourPosePipeline
from magicpose.training.base import DiffusionTraining, frozen, training_scheduler
from magicpose.training.data import training_loader


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


class FollowYourPoseTraining(DiffusionTraining):
    def __init__(self, config: FypFitConfig) -> None:
        super().__init__(config)
        train = config.train
        self.use_pose = train.stage == 1 or train.pose_in_stage2
        parts = build_fyp_components(replace(config.model,
                                             with_pose_adapter=config.model.with_pose_adapter or self.use_pose))
        self.vae = frozen(parts["vae"])
        self.text_encoder = frozen(parts["text_encoder"])
        self.tokenizer = parts["tokenizer"]
        self.sample_scheduler = parts["scheduler"]
        self.unet = parts["unet"]
        self.pose_adapter = parts["pose_adapter"]
        self.noise_scheduler = training_scheduler(parts["scheduler"], None)
        # module name -> names of its parameters that train (relative to the module)
        self.trained = self._trained_parameters(train.stage, list(train.trainable_modules))
        self.requires_grad_(False)
        for module_name, names in self.trained.items():
            params = dict(getattr(self, module_name).named_parameters())
            for name in names:
                params[name].requires_grad_(True)
        if train.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()

    def _trained_parameters(self, stage: int, patterns: list[str]) -> dict[str, list[str]]:
        """Stage 1: the whole pose adapter. Stage 2: the video UNet's modules whose names end with `patterns`."""
        if stage == 1:
            return {"pose_adapter": sorted(n for n, _ in self.pose_adapter.named_parameters())}
        names = trainable_parameter_names(self.unet, patterns)
        if not names:
            raise UserError(f"train.trainable_modules: {patterns} match no module of the video UNet")
        return {"unet": names}

    def train(self, mode: bool = True) -> FollowYourPoseTraining:
        super().train(mode)
        self.vae.eval()
        self.text_encoder.eval()
        return self

    # ----- data ------------------------------------------------------------------------------------------
    @staticmethod
    def check_data(config: FypFitConfig) -> None:
        data = config.data
        if config.train.stage == 1:
            data.root = str(_existing(data.root, "data.root: TikTok-format pose-image pairs", folder=True))
            if data.image_captions:
                data.image_captions = str(_existing(data.image_captions, "data.image_captions: per-image captions"))
        elif data.layout == "hdvila":
            data.root = str(_existing(data.root, "data.root: the folder holding part_<id>/video_clips/", folder=True))
            csv = resolve_path(data.csv)
            data.csv = str(_existing(csv if csv.is_file() else Path(data.root) / data.csv,
                                     "data.csv: the HD-VILA caption CSV, as given or under data.root"))
            if config.train.pose_in_stage2:
                raise UserError("train.pose_in_stage2: the HD-VILA layout has no skeletons (data.layout: hdvila)")
        elif data.layout == "captions":
            data.captions = str(_existing(data.captions, "data.captions; see docs/followyourpose.md"))
        else:
            raise UserError(f"data.layout: {data.layout!r} is not 'captions' or 'hdvila'")

    def loader(self, rank: int, world_size: int, global_step: int) -> torch.utils.data.DataLoader:
        return make_fyp_loader(self.config, rank, world_size, global_step)

    def configure_callbacks(self) -> list[pl.Callback]:
        """Validation videos every `train.sample_every` steps (`magicpose.training.fyp_samples`)."""
        from magicpose.training.fyp_samples import sample_callbacks

        return sample_callbacks(self.config.run_dir, self.config.train, self.config.inference)

    # ----- loss ------------------------------------------------------------------------------------------
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
        pixels = _as_clips(batch["pixel_values"])
        b = pixels.shape[0]
        latents = self.encode_video(pixels, generator)
        noise = torch.randn(latents.shape, generator=generator, device=self.device, dtype=latents.dtype)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (b,), generator=generator,
                          device=self.device)
        noisy = self.noise_scheduler.add_noise(latents, noise, t)  # one timestep per clip
        text = self.encode_text(self._captions(batch, b, generator))
        feats = None
        if self.use_pose:  # a frozen adapter (stage 2) records no graph: its parameters need no gradient
            poses = rearrange(_as_clips(batch["pose_pixel_values"]), "b f c h w -> (b f) c h w")
            feats = pose_features(self.pose_adapter, poses)
        prediction = self.unet(noisy, t, text, pose_features=feats)
        return F.mse_loss(prediction.float(), self.target(latents, noise, t).float())

    def _captions(self, batch: dict[str, Any], b: int, generator: torch.Generator) -> list[str]:
        captions = list(batch["caption"]) if "caption" in batch else [self.config.data.prompt] * b
        drop = torch.rand(b, generator=generator, device=self.device) < self.config.train.text_dropout
        return ["" if d else c for c, d in zip(captions, drop.tolist())]

    # ----- what is saved ---------------------------------------------------------------------------------
    def trained_state_keys(self) -> set[str]:
        return {f"{module}.{name}" for module, names in self.trained.items() for name in names}

    def trained_modules(self) -> dict[str, Any]:
        """The pose adapter as a model folder; the video UNet as its trained parameters only (`model.unet_delta`)."""
        if "unet" in self.trained:
            return {"unet": TrainableSubset(self.unet, self.trained["unet"])}
        return {"pose_adapter": self.pose_adapter}

    def pipeline(self, use_ema: bool = True) -> FollowYourPosePipeline:
        """A pipeline on this module's components (sharing their weights)."""
        pipe = FollowYourPosePipeline(self.vae, self.text_encoder, self.tokenizer, self.unet, self.pose_adapter,
                                      copy.deepcopy(self.sample_scheduler))
        pipe.set_progress_bar_config(disable=True)
        return pipe


def _as_clips(pixels: torch.Tensor) -> torch.Tensor:
    """`b 3 H W` images as one-frame clips `b 1 3 H W`; clips `b f 3 H W` as they are."""
    return pixels.unsqueeze(1) if pixels.ndim == 4 else pixels


def make_fyp_loader(config: FypFitConfig, rank: int, world_size: int, global_step: int) -> torch.utils.data.DataLoader:
    """This rank's loader, positioned after `global_step` optimizer steps."""
    data, train = config.data, config.train
    seen = global_step * data.batch_size * train.accumulate_grad_batches
    return training_loader(fyp_dataset(config), data.batch_size, data.num_workers, rank, world_size, train.seed, seen)


def fyp_dataset(config: FypFitConfig) -> torch.utils.data.Dataset:
    """Stage 1: captioned pose-image pairs; stage 2: clips of the configured layout."""
    data, train = config.data, config.train
    if train.stage == 1:
        from magicpose.data.image_captions import CaptionedPairs
        from magicpose.data.tiktok import TikTokPairDataset

        pairs = TikTokPairDataset(data.root, data.train_split, size=data.size, resize_mode=data.resize_mode,
                                  seed=train.seed)
        return CaptionedPairs(pairs, data.prompt, data.image_captions)
    if data.layout == "hdvila":
        from magicpose.data.hdvila import HdVilaDataset

        return HdVilaDataset(data.csv, data.root, frames=data.frames, stride=data.stride, size=data.size,
                             resize_mode=data.resize_mode, seed=train.seed)
    from magicpose.data.video_caption import VideoCaptionDataset

    return VideoCaptionDataset(data.captions, frames=data.frames, stride=data.stride, size=data.size,
                               resize_mode=data.resize_mode, seed=train.seed, with_pose=train.pose_in_stage2)


def _existing(path: str | Path, what: str, folder: bool = False) -> Path:
    """`path` resolved (see `resolve_path`), or a `UserError` saying which key names it."""
    resolved = resolve_path(path)
    if not (resolved.is_dir() if folder else resolved.is_file()):
        raise UserError(f"{resolved}: no such {'folder' if folder else 'file'} ({what})")
    return resolved
