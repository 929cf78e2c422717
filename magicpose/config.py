"""One config system: OmegaConf YAML files merged in order, `key=value` overrides, a typed schema.

A YAML file may start from others with `base: other.yaml` (or a list), resolved relative to the file, so a
training stage or an inference preset is a short diff over a base. Every key is checked against the schema: an
unknown key is a `UserError` naming the file, the key and the nearest valid key.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from magicpose.errors import UserError
from magicpose.models.components import ModelSpec
from magicpose.paths import resolve_path

BASE_KEY = "base"


@dataclass
class InferenceConfig:
    """How `magicpose animate` (and validation sampling) generates frames."""

    steps: int = 50
    guidance_scale: float = 7.0
    guidance_mode: str = "controlnet_important"  # or "balance"
    controlnet_conditioning_scale: float = 1.0
    frames_per_batch: int = 8
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
    val_split: str | None = "test_set"  # one clip of it is sampled during training; null: none
    size: int = 512
    resize_mode: str = "crop"
    max_frame_distance: int | None = None  # reference within this many frames of the target (null: any)
    random_resized_crop: list[float] | None = None  # [lo, hi] area fractions, shared by target and pose
    face_dropout: float = 0.0
    hand_dropout: float = 0.0
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


def load_config(files: list[str | Path], overrides: list[str] | None = None, schema: type = MagicPoseConfig) -> Any:
    """Merge YAML files (each with its `base:` chain) and `a.b=value` overrides onto the schema's defaults."""
    merged = OmegaConf.structured(schema)
    for file in files:
        merged = _merge_checked(merged, _load_yaml_with_bases(resolve_path(file), ()), str(file))
    if overrides:
        merged = _merge_checked(merged, _parse_overrides(overrides), "command line")
    return merged


def to_yaml(config: Any) -> str:
    return OmegaConf.to_yaml(config)


def to_container(config: Any) -> dict:
    return OmegaConf.to_container(config, resolve=True)


def _load_yaml_with_bases(path: Path, seen: tuple[Path, ...]) -> DictConfig:
    if not path.is_file():
        raise UserError(f"{path}: no such config file")
    if path.resolve() in seen:
        raise UserError(f"{path}: 'base' chain loops back to itself")
    try:
        data = OmegaConf.load(path)
    except Exception as err:  # yaml.YAMLError and friends: the file is broken, say where
        raise UserError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from err
    if not isinstance(data, DictConfig):
        raise UserError(f"{path}: a config must be a mapping of keys, got {type(data).__name__}")
    bases = data.pop(BASE_KEY, None)
    if bases is None:
        return data
    base_list = list(bases) if isinstance(bases, ListConfig) else [bases]
    merged = OmegaConf.create()
    for base in base_list:
        base_path = (path.parent / str(base)) if not Path(str(base)).is_absolute() else Path(str(base))
        merged = OmegaConf.merge(merged, _load_yaml_with_bases(base_path, (*seen, path.resolve())))
    return OmegaConf.merge(merged, data)


def _parse_overrides(overrides: list[str]) -> DictConfig:
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise UserError(f"command line: override {bad[0]!r} is not of the form key=value")
    try:
        return OmegaConf.from_dotlist(overrides)
    except OmegaConfBaseException as err:
        raise UserError(f"command line: cannot parse overrides ({str(err).splitlines()[0]})") from err


def _merge_checked(schema_config: DictConfig, data: DictConfig, source: str) -> DictConfig:
    _check_keys(schema_config, data, source, prefix="")
    try:
        return OmegaConf.merge(schema_config, data)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        reason = str(err).splitlines()[0]
        raise UserError(f"{source}: bad value for '{key}' ({reason})") from err


def _check_keys(schema_node: Any, data: Any, source: str, prefix: str) -> None:
    """Every key of `data` must exist in the schema; free-form dicts (e.g. `model.paths`) accept any key."""
    if not isinstance(data, DictConfig) or not isinstance(schema_node, DictConfig):
        return
    if OmegaConf.get_type(schema_node) is dict:  # a plain Dict[str, ...] field: keys are data, not schema
        return
    valid = [str(k) for k in schema_node]
    for key in data:
        full = f"{prefix}{key}"
        if key not in schema_node:
            raise UserError(f"{source}: unknown key '{full}'{_suggest(str(key), valid, prefix)}")
        _check_keys(schema_node[key], data[key], source, prefix=f"{full}.")


def _suggest(key: str, valid: list[str], prefix: str) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    if close:
        return f" (did you mean '{prefix}{close[0]}'?)"
    return f" (valid keys here: {', '.join(prefix + v for v in valid)})"
