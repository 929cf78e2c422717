"""One builder for every component of MagicPose, from a model spec.

Each component comes from, in this order:
1. `paths.<name>`: a local folder in diffusers / transformers format (weights + config);
2. `pretrained/<name>`: the subfolder of a saved `MagicPosePipeline` folder;
3. the appearance UNet only: a copy of the main UNet (the original initialisation);
4. random initialisation from `components/<name>` (a folder of configs, e.g. `configs/models/tiny`), seeded.
The tokenizer and the scheduler have no weights: they always come from a folder (rules 1, 2 or 4).
Nothing is ever fetched from a hub: every path is local and a missing one is an error naming it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, ControlNetModel, SchedulerMixin, UNet2DConditionModel
from diffusers.schedulers import DDIMScheduler
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from magicpose.errors import UserError
from magicpose.paths import resolve_path

COMPONENT_NAMES = ("vae", "text_encoder", "tokenizer", "unet", "appearance_unet", "controlnet", "scheduler")
_DIFFUSERS_MODELS = {
    "vae": AutoencoderKL,
    "unet": UNet2DConditionModel,
    "appearance_unet": UNet2DConditionModel,
    "controlnet": ControlNetModel,
}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class ModelSpec:
    """Where the components come from (the `model:` section of a config)."""

    components: str | None = "configs/models/tiny"
    pretrained: str | None = None
    paths: dict[str, str | None] = field(default_factory=dict)
    seed: int = 0
    dtype: str = "float32"
    attention: str = "sdpa"
    with_controlnet: bool = True
    pixel_space: bool = False  # no VAE: the UNets denoise RGB pixels directly (the CPU toy world's choice)


def build_components(spec: ModelSpec, names: tuple[str, ...] = COMPONENT_NAMES) -> dict[str, Any]:
    """Build the named components (in `COMPONENT_NAMES` order, so the appearance UNet can copy the UNet)."""
    _check_spec(spec)
    built: dict[str, Any] = {}
    for index, name in enumerate(COMPONENT_NAMES):
        if name not in names and not (name == "unet" and "appearance_unet" in names):
            continue
        if (name == "controlnet" and not spec.with_controlnet) or (name == "vae" and spec.pixel_space):
            built[name] = None
            continue
        built[name] = _build_one(spec, name, index, built)
    dtype = DTYPES[spec.dtype]
    for component in built.values():
        if isinstance(component, torch.nn.Module) and component.dtype != dtype:
            component.to(dtype)
    return {name: built[name] for name in names}


def _check_spec(spec: ModelSpec) -> None:
    if spec.dtype not in DTYPES:
        raise UserError(f"model.dtype: unknown dtype {spec.dtype!r} (choose from {', '.join(DTYPES)})")
    if spec.attention not in ("sdpa", "xformers"):
        raise UserError(f"model.attention: unknown backend {spec.attention!r} (choose 'sdpa' or 'xformers')")
    if spec.attention == "xformers":
        try:
            import xformers.ops  # noqa: F401
        except ImportError as err:
            raise UserError("model.attention: xformers is not installed (pip install 'magicpose[xformers]', CUDA only)") from err
    unknown = sorted(set(spec.paths) - set(COMPONENT_NAMES))
    if unknown:
        raise UserError(f"model.paths: unknown component(s) {unknown} (valid: {', '.join(COMPONENT_NAMES)})")


def _build_one(spec: ModelSpec, name: str, index: int, built: dict[str, Any]) -> Any:
    source = _local_source(spec, name)
    if source is not None:
        return load_component(name, source)
    if name == "appearance_unet":
        return copy.deepcopy(built["unet"]).requires_grad_(True)
    if spec.components is None:
        raise UserError(f"model: no source for {name!r}: set model.pretrained, model.paths.{name} or model.components")
    config_dir = _existing_dir(resolve_path(spec.components) / name, f"model.components ({name} config)")
    if name in ("tokenizer", "scheduler"):
        return load_component(name, config_dir)
    torch.manual_seed(spec.seed + index)  # each component its own stream, independent of build order
    return random_component(name, config_dir)


def _local_source(spec: ModelSpec, name: str) -> Path | None:
    if spec.paths.get(name):
        return _existing_dir(resolve_path(spec.paths[name]), f"model.paths.{name}")
    if spec.pretrained:
        root = _existing_dir(resolve_path(spec.pretrained), "model.pretrained")
        sub = root / name
        if not sub.is_dir():
            raise UserError(f"{root}: pipeline folder has no '{name}/' subfolder")
        return sub
    return None


def _existing_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise UserError(f"{path}: no such folder ({what})")
    return path


def load_component(name: str, folder: Path) -> Any:
    """Load one component from a local folder, strictly (missing or unexpected weights are an error)."""
    try:
        if name in _DIFFUSERS_MODELS:
            cls = _DIFFUSERS_MODELS[name]
            model, info = cls.from_pretrained(folder, local_files_only=True, output_loading_info=True)
            return _strict(model, info, folder)
        if name == "text_encoder":
            model, info = CLIPTextModel.from_pretrained(folder, local_files_only=True, output_loading_info=True)
            return _strict(model, info, folder)
        if name == "tokenizer":
            return CLIPTokenizer.from_pretrained(folder, local_files_only=True)
        if name == "scheduler":
            return load_scheduler(folder)
    except (OSError, ValueError) as err:
        raise UserError(f"{folder}: cannot load {name} ({_first_line(err)})") from err
    raise ValueError(f"unknown component {name!r}")


def _strict(model: torch.nn.Module, info: dict[str, Any], folder: Path) -> torch.nn.Module:
    """Refuse a partial load: from_pretrained only warns about missing or unexpected weights."""
    problems = {kind: list(info.get(kind) or []) for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    problems = {kind: keys for kind, keys in problems.items() if keys}
    if problems:
        detail = "; ".join(f"{len(keys)} {kind.replace('_', ' ')} (e.g. {keys[0]})" for kind, keys in problems.items())
        raise UserError(f"{folder}: weights do not match the model: {detail}")
    return model


def random_component(name: str, config_dir: Path) -> torch.nn.Module:
    """A randomly initialised model from a config folder (the caller seeds the RNG)."""
    if name in _DIFFUSERS_MODELS:
        cls = _DIFFUSERS_MODELS[name]
        return cls.from_config(cls.load_config(config_dir))
    if name == "text_encoder":
        return CLIPTextModel(CLIPTextConfig.from_pretrained(config_dir))
    raise ValueError(f"component {name!r} has no weights to initialise")


def load_scheduler(folder: Path) -> SchedulerMixin:
    """Any diffusers scheduler, by the `_class_name` in its config (DDIM when absent)."""
    import diffusers

    config = DDIMScheduler.load_config(folder)
    cls = getattr(diffusers, config.get("_class_name", "DDIMScheduler"), None)
    if cls is None or not issubclass(cls, SchedulerMixin):
        raise UserError(f"{folder}: unknown scheduler class {config.get('_class_name')!r}")
    return cls.from_config(config)


def vae_scale_factor(vae: Any) -> int:
    """Pixels per latent side: 2 per VAE down block (8 on SD); 1 without a VAE (pixel-space models)."""
    return 1 if vae is None else 2 ** (len(vae.config.block_out_channels) - 1)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
