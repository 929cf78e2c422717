"""Config schema of MagicPose: the model spec, sampling (`magicpose animate`, `infer-tiktok`) and both training stages.

Plain dataclasses (no torch): `magicpose.config.load_config` fills them from YAML; the builders in `magicpose.models`
take them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ComponentSources:
    """Where a system's components come from (see `magicpose.models.components`): `paths.<name>` (a local folder),
    else `pretrained/<name>` (a saved pipeline folder), else random init from `components/<name>` with `seed`.
    `paths.<name>` and `pretrained` may also name an original single-file checkpoint (`.ckpt`, `.pth`, `.th`,
    `.safetensors`, `.bin`), or a list of alternatives of which the first that exists is used."""

    components: str | None = None
    # a folder, an original single file (converted once into a cache, see magicpose.convert.cache), or a list of
    # such alternatives of which the first that exists is used
    pretrained: Any = None
    paths: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    dtype: str = "float32"


@dataclass
class ModelSpec(ComponentSources):
    """The `model:` section of a MagicPose config."""

    components: str | None = "configs/models/tiny"
    attention: str = "sdpa"
    with_controlnet: bool = True
    pixel_space: bool = False  # no VAE: the UNets denoise RGB pixels directly (the CPU toy world's choice)
    # the temporal motion module (stage 3, an AnimateDiff MotionAdapter): null (auto) uses one when paths.motion_adapter
    # or pretrained/motion_adapter/ has it; true requires one (fresh, zero-initialised, from components/ without
    # weights); false never
    motion_module: bool | None = None


@dataclass
class InferenceConfig:
    """How `magicpose animate` (and validation sampling) generates frames."""

    steps: int = 50
    guidance_scale: float = 7.0
    guidance_mode: str = "controlnet_important"  # or "balance"
    controlnet_conditioning_scale: float = 1.0
    frames_per_batch: int = 8
    # sliding window in frames (null: batches of frames_per_batch); without a motion module frames are independent,
    # so a window is a frame batch and the result equals the unwindowed one
    context_length: int | None = None
    context_overlap: int = 4  # frames shared by neighbouring windows
    size: int = 512  # frames are size x size pixels
    resize_mode: str = "crop"  # "crop": centre square crop (the original); "pad": pad to a square, keep everything
    prompt: str = ""
    negative_prompt: str | None = None
    shared_noise: bool = True  # one initial noise for all frames, as the original
    seed: int = 42
    fps: float = 8.0
    scheduler: str | None = None  # a diffusers scheduler class name to swap in, e.g. "DPMSolverMultistepScheduler"


@dataclass
class MagicPoseConfig:
    model: ModelSpec = field(default_factory=ModelSpec)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    device: str = "auto"  # "auto" (CUDA if available), "cpu", "cuda", "cuda:1", ...


@dataclass
class DataConfig:
    """TikTok-format training data (see magicpose.data.tiktok)."""

    root: str = "dataset/TikTok-v4"
    train_split: str = "train_set"
    # one clip of it is sampled during training; auto: disco_test_set (the released TikTok-v4's) else test_set;
    # null: none
    val_split: str | None = "auto"
    size: int = 512
    resize_mode: str = "crop"
    # reference within this many frames of the target (clips: of the clip's first or last frame); null: any frame
    max_frame_distance: int | None = None
    # [lo, hi] area fractions, shared by target and pose (clips: by every frame, pose map and the reference)
    random_resized_crop: list[float] | None = None
    face_dropout: float = 0.0
    hand_dropout: float = 0.0
    # Clip mode (stage 3, a temporal motion module; see magicpose.data.tiktok.TikTokClipDataset): items are clips of
    # num_frames frames every frame_stride paired frames, batches b f 3 H W; null: pairs (stages 1 and 2, b 3 H W)
    num_frames: int | None = None
    frame_stride: int = 1  # clips only: frames i, i+stride, ..., i+(num_frames-1)*stride of a video
    batch_size: int = 8  # per device
    num_workers: int = 4


@dataclass
class TrainConfig:
    """What trains and how. Stage 1: appearance UNet only, no pose. Stage 2: appearance UNet + pose ControlNet."""

    stage: int = 2
    max_steps: int = 100_000
    lr: float = 1e-5
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float | None = None
    accumulate_grad_batches: int = 1
    ema_decay: float | None = None  # e.g. 0.9999; null: no EMA
    min_snr_gamma: float | None = None  # e.g. 5.0; null: plain MSE
    prediction_type: str | None = None  # epsilon | v_prediction | sample; null: the scheduler config's
    reference_dropout: float = 0.0  # per batch: drop the appearance branch (for partial guidance)
    pose_dropout: float = 0.0  # per item: blank pose map
    reference_noise: bool = False  # false: clean reference latent at the target's timestep (the original)
    # stage 3: share of the noise variance common to a clip's frames (0: independent per frame, as AnimateDiff;
    # 1: one noise per clip, as the pipeline samples with shared_noise)
    clip_noise: float = 0.0
    gradient_checkpointing: bool = False
    # Also train the main UNet. MagicPose keeps it frozen (it is pretrained SD); this is for worlds with no pretrained
    # base, such as the CPU toy quickstart, where a frozen random UNet cannot produce a clean frame.
    train_unet: bool = False
    seed: int = 42
    checkpoint_every: int = 1000  # resume state + safetensors of the trained modules
    keep_last: int = 3
    sample_every: int = 1000  # validation grid + clip in TensorBoard; 0: never
    log_every: int = 50


@dataclass
class TrainerConfig:
    """Passed to Lightning's Trainer; the launcher (torchrun, SLURM) supplies ranks, nothing else changes."""

    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"  # auto: DDP when there is more than one device
    precision: str = "auto"  # auto: bf16-mixed on CUDA, 32-true on CPU


@dataclass
class FitConfig(MagicPoseConfig):
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    run_dir: str = "runs/magicpose"
