"""Config schema of Follow-Your-Pose (`system: followyourpose`): sampling and both training stages.

Plain dataclasses (no torch), loaded with the project's one config system (`magicpose.config.load_config`: YAML
files with `base:` chains, `key=value` overrides, unknown keys refused). The top-level `system` key tells
`magicpose fit` which trainer a config is for (`magicpose.config.config_system`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from magicpose.config.magicpose import ComponentSources, TrainerConfig
from magicpose.errors import UserError

SYSTEM = "followyourpose"
STAGE2_TRAINABLE = ("attn1.to_q", "attn2.to_q", "attn_temp", "conv_temporal")  # the original's stage-2 set


@dataclass
class VideoOptions:
    """How a 2D UNet is inflated (see `VideoUNet`); the defaults are the original's, except the zero-init."""

    temporal_attention: bool = True
    temporal_conv: bool = True
    temporal_heads: int | None = None  # null: as the block's attn1 (8 on SD)
    temporal_rank: int = 160
    temporal_kernel: int = 3
    frame_pooled_norm: bool = True
    sparse_causal_frames: list[str] = field(default_factory=lambda: ["first", "prev"])
    zero_init_temporal_attention: bool = True


@dataclass
class FypModelSpec(ComponentSources):
    """The `model:` section of a Follow-Your-Pose config."""

    components: str | None = "configs/models/fyp_tiny"
    video: VideoOptions = field(default_factory=VideoOptions)
    with_pose_adapter: bool = True
    # trained stage-2 parameters on top of the UNet: a `weights/step-N/unet/` folder of `magicpose fit` or its file
    unet_delta: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.video, dict):  # from a plain container (OmegaConf.to_container)
            self.video = VideoOptions(**self.video)


@dataclass
class FypInferenceConfig:
    """How `magicpose fyp-sample` (and validation sampling) makes a video. Defaults: the original's."""

    prompt: str = ""
    prompts: list[str] = field(default_factory=list)  # several videos per run, one per prompt (wins over prompt)
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
    """Stage 1: TikTok-format pose-image pairs (`root`, `train_split`), captioned per image (sidecar `<frame>.txt`,
    `image_captions`, else `prompt`; see `magicpose.data.image_captions`). Stage 2: `layout: captions` reads the
    `captions` file (`magicpose.data.video_caption`); `layout: hdvila` reads the original's HD-VILA layout, `csv`
    + videos under `root` (`magicpose.data.hdvila`)."""

    root: str = "dataset/TikTok-v4"
    train_split: str = "train_set"
    prompt: str = ""  # the caption of a stage-1 pair that has no caption of its own
    image_captions: str | None = None  # stage 1: JSON {"video/frame" or "video": caption}
    layout: str = "captions"  # stage 2: captions (our captions file) or hdvila (the original's CSV + part_N folders)
    captions: str = "dataset/videos/captions.jsonl"
    csv: str = "caption_rm2048_train.csv"  # layout hdvila: as given if it exists, else under root
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
    # Validation videos (rank 0, `<run_dir>/samples/step-N/`): every `sample_every` steps (0: never; the original:
    # 100), one per prompt, following `sample_skeleton` (a video or frame folder; null: pose-free, as stage 2
    # trains). Frames, stride, steps, guidance, size and seed come from the `inference:` section.
    sample_every: int = 0
    sample_prompts: list[str] = field(default_factory=list)
    sample_skeleton: str | None = None


@dataclass
class FypFitConfig(FypConfig):
    data: FypDataConfig = field(default_factory=FypDataConfig)
    train: FypTrainConfig = field(default_factory=FypTrainConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    run_dir: str = "runs/followyourpose"


def check_system(config: Any) -> None:
    if config.system != SYSTEM:
        raise UserError(f"system: {config.system!r}; this command needs a Follow-Your-Pose config "
                        f"(system: {SYSTEM}, e.g. configs/followyourpose/tiny.yaml)")
