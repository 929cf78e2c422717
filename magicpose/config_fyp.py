"""Config schema of Follow-Your-Pose (`system: followyourpose`): sampling and both training stages.

Loaded with the project's one config system (`magicpose.config.load_config`: YAML files with `base:` chains,
`key=value` overrides, unknown keys refused). The top-level `system` key tells `magicpose fit` which trainer a
config is for; `config_system` reads it without knowing the schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from magicpose.config import TrainerConfig
from magicpose.errors import UserError
from magicpose.models.fyp_components import FypModelSpec
from magicpose.models.video_unet import STAGE2_TRAINABLE
from magicpose.paths import resolve_path

SYSTEM = "followyourpose"


@dataclass
class FypInferenceConfig:
    """How `magicpose fyp-sample` (and validation sampling) makes a video. Defaults: the original's."""

    prompt: str = ""
    negative_prompt: str | None = None
    frames: int = 32  # video_length
    stride: int = 5  # skeleton frames 0, 5, 10, ... (the original's frame_skeleton_stride)
    start: int = 0  # first skeleton frame used
    steps: int = 50
    guidance_scale: float = 12.5
    pose_scale: float = 1.0
    pose_on_uncond: bool = True  # the original adds the pose in both CFG halves
    context_length: int | None = None  # sliding window in frames; null: all frames in one pass
    context_overlap: int = 4
    size: int = 512  # square frames of this side
    resize_mode: str = "crop"  # crop (the original's centre crop) or pad
    seed: int = 33
    fps: float = 8.0
    scheduler: str | None = None  # a diffusers scheduler class name to swap in; null: the folder's (DDIM)


@dataclass
class FypConfig:
    system: str = SYSTEM
    model: FypModelSpec = field(default_factory=FypModelSpec)
    inference: FypInferenceConfig = field(default_factory=FypInferenceConfig)
    device: str = "auto"


@dataclass
class FypDataConfig:
    """Stage 1: TikTok-format pose-image pairs (`root`, `train_split`). Stage 2: `captions` (see
    `magicpose.data.video_caption`)."""

    root: str = "dataset/TikTok-v4"
    train_split: str = "train_set"
    prompt: str = ""  # the caption of every stage-1 pair (TikTok-format data has no captions)
    captions: str = "dataset/videos/captions.jsonl"
    frames: int = 8  # frames per training clip (the paper: 8 consecutive; the released config: 12 at stride 4)
    stride: int = 1
    size: int = 512
    resize_mode: str = "crop"
    batch_size: int = 1  # per device
    num_workers: int = 4


@dataclass
class FypTrainConfig:
    """Stage 1: the pose adapter trains on pose-image pairs, the (2D) UNet is frozen. Stage 2: the modules named by
    `trainable_modules` (suffixes of module names; the original's four by default) train on video clips."""

    stage: int = 2
    max_steps: int = 5000
    lr: float = 3.0e-5
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 1.0e-2
    warmup_steps: int = 0
    grad_clip: float | None = 1.0
    accumulate_grad_batches: int = 1
    trainable_modules: list[str] = field(default_factory=lambda: list(STAGE2_TRAINABLE))
    pose_in_stage2: bool = False  # the original trains stage 2 without pose; true needs pose clips in the data
    text_dropout: float = 0.0  # per item: empty caption (for classifier-free guidance)
    gradient_checkpointing: bool = False
    seed: int = 33
    checkpoint_every: int = 1000
    keep_last: int = 3
    log_every: int = 50


@dataclass
class FypFitConfig(FypConfig):
    data: FypDataConfig = field(default_factory=FypDataConfig)
    train: FypTrainConfig = field(default_factory=FypTrainConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    run_dir: str = "runs/followyourpose"


def config_system(files: list[str | Path]) -> str | None:
    """The `system:` of the last config file (following `base:` chains) that sets one; None if none does."""
    found = None
    for file in files:
        found = _system_of(resolve_path(file), ()) or found
    return found


def _system_of(path: Path, seen: tuple[Path, ...]) -> str | None:
    if not path.is_file() or path.resolve() in seen:
        return None  # load_config reports missing files and loops with a proper message
    try:
        data = OmegaConf.load(path)
    except Exception:  # broken YAML: load_config says where
        return None
    if not isinstance(data, DictConfig):
        return None
    if "system" in data:
        return str(data.system)
    bases = data.get("base")
    base_list = list(bases) if isinstance(bases, ListConfig) else ([bases] if bases else [])
    found = None
    for base in base_list:
        base_path = Path(str(base)) if Path(str(base)).is_absolute() else path.parent / str(base)
        found = _system_of(base_path, (*seen, path.resolve())) or found
    return found


def check_system(config: Any) -> None:
    if config.system != SYSTEM:
        raise UserError(f"system: {config.system!r}; this command needs a Follow-Your-Pose config "
                        f"(system: {SYSTEM}, e.g. configs/followyourpose/tiny.yaml)")
