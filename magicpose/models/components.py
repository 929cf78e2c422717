"""One builder for every component of MagicPose, from a model spec, and the loading rules both systems share.

Each component comes from, in this order:
1. `paths.<name>`: a local folder in diffusers / transformers format (weights + config);
2. `pretrained/<name>`: the subfolder of a saved `MagicPosePipeline` folder;
3. the appearance UNet only: a copy of the main UNet (the original initialisation);
4. random initialisation from `components/<name>` (a folder of configs, e.g. `configs/models/tiny`), seeded.
The tokenizer and the scheduler have no weights: they always come from a folder (rules 1, 2 or 4).
The motion adapter (stage 3, optional) follows `model.motion_module`: `true` needs one (rule 4 builds it
zero-initialised, so it starts as the identity), `false` builds none, `null` (auto) uses one when rule 1 or 2 finds it.
Nothing is ever fetched from a hub: every path is local and a missing one is an error naming it. Loading is strict:
a missing, unexpected or mis-shaped weight is an error naming the folder (`load_strict`).
Follow-Your-Pose's builder (`fyp_components.py`) uses the same rules with its own components.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, ControlNetModel, MotionAdapter, SchedulerMixin, UNet2DConditionModel
from diffusers.schedulers import DDIMScheduler
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from magicpose.config.magicpose import ModelSpec
from magicpose.errors import UserError
from magicpose.models.motion import zero_init
from magicpose.paths import first_existing, resolve_path

COMPONENT_NAMES = ("vae", "text_encoder", "tokenizer", "unet", "appearance_unet", "controlnet", "scheduler",
                   "motion_adapter")
_DIFFUSERS_MODELS = {
    "vae": AutoencoderKL,
    "unet": UNet2DConditionModel,
    "appearance_unet": UNet2DConditionModel,
    "controlnet": ControlNetModel,
    "motion_adapter": MotionAdapter,
}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
ATTENTION_BACKENDS = ("sdpa", "xformers")


def build_components(spec: ModelSpec, names: tuple[str, ...] = COMPONENT_NAMES) -> dict[str, Any]:
    """Build the named components (in `COMPONENT_NAMES` order, so the appearance UNet can copy the UNet)."""
    check_spec(spec, COMPONENT_NAMES)
    _check_attention(spec.attention)
    built: dict[str, Any] = {}
    for index, name in enumerate(COMPONENT_NAMES):
        if name not in names and not (name == "unet" and "appearance_unet" in names):
            continue
        if (name == "controlnet" and not spec.with_controlnet) or (name == "vae" and spec.pixel_space):
            built[name] = None
            continue
        built[name] = _build_one(spec, name, index, built)
    cast_components(built, spec.dtype)
    return {name: built[name] for name in names}


def _build_one(spec: ModelSpec, name: str, index: int, built: dict[str, Any]) -> Any:
    if name == "motion_adapter":
        return _motion_adapter(spec, index)
    source = local_source(spec, name)
    if source is not None:
        return load_component(name, source)
    if name == "appearance_unet":
        return copy.deepcopy(built["unet"]).requires_grad_(True)
    config_dir = component_config_dir(spec, name)
    if name in ("tokenizer", "scheduler"):
        return load_component(name, config_dir)
    torch.manual_seed(spec.seed + index)  # each component its own stream, independent of build order
    return random_component(name, config_dir)


def _motion_adapter(spec: ModelSpec, index: int) -> MotionAdapter | None:
    """The stage-3 motion adapter by `model.motion_module` (see the module docstring)."""
    if spec.motion_module is False:
        return None
    source = local_source(spec, "motion_adapter", optional=True)
    if source is not None:
        return load_component("motion_adapter", source)
    if not spec.motion_module:
        return None
    torch.manual_seed(spec.seed + index)
    return zero_init(random_component("motion_adapter", component_config_dir(spec, "motion_adapter")))


# ----- shared by both systems' builders ----------------------------------------------------------------------
def check_spec(spec: Any, valid_names: Sequence[str]) -> None:
    """`model.dtype` is a known dtype and `model.paths` names only components of this system."""
    if spec.dtype not in DTYPES:
        raise UserError(f"model.dtype: unknown dtype {spec.dtype!r} (choose from {', '.join(DTYPES)})")
    unknown = sorted(set(spec.paths) - set(valid_names))
    if unknown:
        raise UserError(f"model.paths: unknown component(s) {unknown} (valid: {', '.join(valid_names)})")


def _check_attention(attention: str) -> None:
    if attention not in ATTENTION_BACKENDS:
        raise UserError(f"model.attention: unknown backend {attention!r} (choose 'sdpa' or 'xformers')")
    if attention == "xformers":
        try:
            import xformers.ops  # noqa: F401
        except ImportError as err:
            raise UserError("model.attention: xformers is not installed (pip install 'magicpose[xformers]', CUDA only)") from err


def cast_components(built: dict[str, Any], dtype: str) -> None:
    """Cast every built network to `dtype` (a `DTYPES` name), in place."""
    for component in built.values():
        if isinstance(component, torch.nn.Module) and component.dtype != DTYPES[dtype]:
            component.to(DTYPES[dtype])


def local_source(spec: Any, name: str, optional: bool = False) -> Path | None:
    """`paths.<name>`, else `pretrained/<name>`; None when neither is set (or, with `optional`, when the pipeline
    folder simply has no such subfolder). Either may be a list of alternatives (the first that exists wins). A path
    that is set but missing is a `UserError` naming it; so is an original single-file checkpoint, which the
    commands convert first (`magicpose.convert.cache.convert_sources`)."""
    if spec.paths.get(name):
        return _existing_dir(first_existing(spec.paths[name], f"model.paths.{name}"), f"model.paths.{name}")
    if spec.pretrained:
        root = _existing_dir(first_existing(spec.pretrained, "model.pretrained"), "model.pretrained")
        sub = root / name
        if not sub.is_dir():
            if optional:
                return None
            raise UserError(f"{root}: pipeline folder has no '{name}/' subfolder")
        return sub
    return None


def require_components(spec: Any, name: str) -> None:
    """A component without weights is built from scratch, which `model.components: null` forbids."""
    if spec.components is None:
        raise UserError(f"model: no source for {name!r}: set model.pretrained, model.paths.{name} or model.components")


def component_config_dir(spec: Any, name: str) -> Path:
    """`components/<name>`: the config folder a component is built from when no weights are given."""
    require_components(spec, name)
    return _existing_dir(resolve_path(spec.components) / name, f"model.components ({name} config)")


def _existing_dir(path: Path, what: str) -> Path:
    if path.is_file():
        raise UserError(f"{path}: an original checkpoint file ({what}); the magicpose commands convert it on first "
                        "use; from Python call magicpose.convert.cache.convert_sources(spec) first, or convert it "
                        "once with `magicpose convert`")
    if not path.is_dir():
        raise UserError(f"{path}: no such folder ({what})")
    return path


def load_component(name: str, folder: Path) -> Any:
    """Load one component from a local folder, strictly (missing or unexpected weights are an error)."""
    if name in _DIFFUSERS_MODELS:
        return load_strict(_DIFFUSERS_MODELS[name], folder)
    if name == "text_encoder":
        return load_strict(CLIPTextModel, folder)
    try:
        if name == "tokenizer":
            return CLIPTokenizer.from_pretrained(folder, local_files_only=True)
        if name == "scheduler":
            return load_scheduler(folder)
    except (OSError, ValueError) as err:
        raise UserError(f"{folder}: cannot load {name} ({_first_line(err)})") from err
    raise ValueError(f"unknown component {name!r}")


def load_strict(cls: type, folder: Path) -> torch.nn.Module:
    """`cls.from_pretrained(folder)` that refuses missing, unexpected or mis-shaped weights (from_pretrained only
    warns about them)."""
    try:
        model, info = cls.from_pretrained(folder, local_files_only=True, output_loading_info=True)
    except (OSError, ValueError) as err:
        raise UserError(f"{folder}: cannot load {cls.__name__} ({_first_line(err)})") from err
    problems = {kind: list(info.get(kind) or []) for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    problems = {kind: keys for kind, keys in problems.items() if keys}
    if problems:
        detail = "; ".join(f"{len(keys)} {kind.replace('_', ' ')} (e.g. {keys[0]})" for kind, keys in problems.items())
        raise UserError(f"{folder}: weights do not match {cls.__name__}: {detail}")
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


def unet_scale_factor(unet: Any) -> int:
    """How many times a UNet halves its input side (2 per down block but the last): latent sides must divide by it."""
    return 2 ** (len(unet.config.block_out_channels) - 1)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
