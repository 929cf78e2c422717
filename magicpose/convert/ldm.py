"""LDM (CompVis / ControlNet / MagicDance) layout <-> our diffusers/transformers components, one component at a time.

LDM -> diffusers uses diffusers' own converters (`diffusers.loaders.single_file_utils`). diffusers -> LDM is the
inverse written out here (`ldm_key`); it also tells, for a component config, exactly which LDM keys (and shapes) a
checkpoint must hold, so every key is accounted for before anything is converted.

Kinds: `unet` (SD UNet), `appearance` (MagicDance's appearance control model: a UNet without the final `out` conv),
`controlnet`, `vae`, `clip` (the CLIP text tower). Keys here are relative to the component's prefix
(`model.diffusion_model.`, `first_stage_model.`, ...).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from magicpose.errors import UserError
from magicpose.paths import resolve_path

SD15 = "configs/models/sd15"
KINDS = ("unet", "appearance", "controlnet", "vae", "clip")
CONFIG_OF_KIND = {"unet": "unet", "appearance": "unet", "controlnet": "controlnet", "vae": "vae", "clip": "text_encoder"}
LDM_PREFIX = {  # what diffusers' converters expect in front of each component's keys
    "unet": "model.diffusion_model.",
    "appearance": "model.diffusion_model.",
    "controlnet": "control_model.",
    "vae": "first_stage_model.",
    "clip": "cond_stage_model.transformer.",
}
# The LDM ControlNet's hint encoder is fixed (`cldm.py`): 8 convs 3x3, channels hint -> 16,16,32,32,96,96,256 -> model
# channels, at Sequential indices 0, 2, ..., 14 (SiLUs between them).
LDM_HINT_CHANNELS = (16, 32, 96, 256)
LDM_SCHEDULE_BUFFERS = (
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
    "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
)
CLIP_POSITION_IDS = "text_model.embeddings.position_ids"

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
           "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}


# ------------------------------------------------------------------------------------------ diffusers -> LDM keys

def ldm_key(kind: str, key: str, config: dict[str, Any]) -> str | None:
    """The LDM name of one diffusers/transformers state-dict key (None: the LDM component has no such weight)."""
    if kind in ("unet", "appearance"):
        if kind == "appearance" and key.split(".")[0] in ("conv_norm_out", "conv_out"):
            return None  # MagicDance's appearance model has no final `out` conv
        return _unet_key(key, config)
    if kind == "controlnet":
        return _controlnet_key(key, config)
    if kind == "vae":
        return _vae_key(key, config)
    if kind == "clip":
        return key if key.startswith("text_model.") else "text_model." + key
    raise ValueError(f"unknown kind {kind!r}")


def ldm_shape(kind: str, key: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """LDM's VAE attention uses 1x1 convs where diffusers has linear layers."""
    if kind == "vae" and ".mid_block.attentions." in key and key.endswith("weight") and len(shape) == 2:
        return (*shape, 1, 1)
    return tuple(shape)


def _layers(config: dict[str, Any]) -> int:
    per_block = config["layers_per_block"]
    if not isinstance(per_block, int):
        if len(set(per_block)) != 1:
            raise UserError(f"layers_per_block {per_block}: only one value for all blocks has an LDM layout")
        per_block = per_block[0]
    return per_block


def _resnet(rest: list[str]) -> str:
    return ".".join([_RESNET.get(rest[0], rest[0]), *rest[1:]])


def _unet_key(key: str, config: dict[str, Any]) -> str:
    parts = key.split(".")
    n = _layers(config) + 1
    head = parts[0]
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    for ours, theirs in fixed.items():
        if key.startswith(ours + "."):
            return theirs + key[len(ours):]
    if head == "down_blocks":
        block, sub, j, rest = int(parts[1]), parts[2], int(parts[3]), parts[4:]
        if sub == "resnets":
            return f"input_blocks.{1 + block * n + j}.0.{_resnet(rest)}"
        if sub == "attentions":
            return f"input_blocks.{1 + block * n + j}.1.{'.'.join(rest)}"
        if sub == "downsamplers":  # downsamplers.0.conv.<p>
            return f"input_blocks.{(block + 1) * n}.0.op.{'.'.join(rest[1:])}"
    if head == "mid_block":
        sub, j, rest = parts[1], int(parts[2]), parts[3:]
        if sub == "resnets":
            return f"middle_block.{2 * j}.{_resnet(rest)}"
        if sub == "attentions":
            return f"middle_block.1.{'.'.join(rest)}"
    if head == "up_blocks":
        block, sub, j, rest = int(parts[1]), parts[2], int(parts[3]), parts[4:]
        if sub == "resnets":
            return f"output_blocks.{block * n + j}.0.{_resnet(rest)}"
        if sub == "attentions":
            return f"output_blocks.{block * n + j}.1.{'.'.join(rest)}"
        if sub == "upsamplers":
            has_attention = "CrossAttn" in config["up_block_types"][block]
            return f"output_blocks.{block * n + n - 1}.{2 if has_attention else 1}.{'.'.join(rest)}"
    raise ValueError(f"no LDM name for UNet key {key!r}")


def _controlnet_key(key: str, config: dict[str, Any]) -> str:
    parts = key.split(".")
    if parts[0] == "controlnet_down_blocks":
        return f"zero_convs.{parts[1]}.0.{parts[2]}"
    if parts[0] == "controlnet_mid_block":
        return f"middle_block_out.0.{parts[1]}"
    if parts[0] == "controlnet_cond_embedding":
        blocks = 2 * (len(config["conditioning_embedding_out_channels"]) - 1)
        index = {"conv_in": 0, "conv_out": 2 * blocks + 2}.get(parts[1])
        if index is None:  # blocks.<k>.<p>
            return f"input_hint_block.{2 * int(parts[2]) + 2}.{parts[3]}"
        return f"input_hint_block.{index}.{parts[2]}"
    return _unet_key(key, config)


def _vae_key(key: str, config: dict[str, Any]) -> str:
    parts = key.split(".")
    coder, head = parts[0], parts[1] if len(parts) > 1 else ""
    if coder in ("quant_conv", "post_quant_conv"):
        return key
    if head in ("conv_in", "conv_out"):
        return key
    if head == "conv_norm_out":
        return f"{coder}.norm_out.{parts[2]}"
    if head == "mid_block":
        sub, j, rest = parts[2], int(parts[3]), parts[4:]
        if sub == "resnets":
            return f"{coder}.mid.block_{j + 1}.{_vae_resnet(rest)}"
        if sub == "attentions":  # group_norm | to_q | to_k | to_v | to_out.0 , then weight/bias
            return f"{coder}.mid.attn_1.{_VAE_ATTN[rest[0]]}.{rest[-1]}"
    if head in ("down_blocks", "up_blocks"):
        i, sub, rest = int(parts[2]), parts[3], parts[4:]
        level = i if head == "down_blocks" else len(config["up_block_types"]) - 1 - i
        name = "down" if head == "down_blocks" else "up"
        if sub == "resnets":
            return f"{coder}.{name}.{level}.block.{rest[0]}.{_vae_resnet(rest[1:])}"
        if sub in ("downsamplers", "upsamplers"):  # <sampler>.0.conv.<p>
            return f"{coder}.{name}.{level}.{name}sample.conv.{rest[-1]}"
    raise ValueError(f"no LDM name for VAE key {key!r}")


def _vae_resnet(rest: list[str]) -> str:
    return ".".join(["nin_shortcut" if rest[0] == "conv_shortcut" else rest[0], *rest[1:]])


# ---------------------------------------------------------------------------------------------- component configs

@dataclass
class TargetConfigs:
    """The configs the converted components get (diffusers/transformers config dicts) and where they came from."""

    configs: dict[str, dict[str, Any]]  # unet, appearance_unet, controlnet, vae, text_encoder
    origin: str

    def for_component(self, name: str) -> dict[str, Any]:
        return self.configs[name]


def load_target_configs(components: str | Path | None = None, original_config: str | Path | None = None
                        ) -> TargetConfigs:
    """Configs from a folder of component configs (default SD-1.5), overridden by an LDM model YAML when given."""
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig

    folder = resolve_path(components or SD15)
    configs: dict[str, dict[str, Any]] = {}
    for name, cls in (("unet", UNet2DConditionModel), ("controlnet", ControlNetModel), ("vae", AutoencoderKL)):
        if (folder / name / "config.json").is_file():
            configs[name] = dict(cls.load_config(folder / name))
    if (folder / "text_encoder" / "config.json").is_file():
        configs["text_encoder"] = CLIPTextConfig.from_pretrained(folder / "text_encoder").to_dict()
    if "unet" in configs:
        configs["appearance_unet"] = dict(configs["unet"])
    origin = str(components or SD15)
    if original_config is not None:
        configs.update(configs_from_ldm_yaml(original_config))
        origin = f"{original_config} (text encoder: {origin})"
    return TargetConfigs(configs, origin)


def configs_from_ldm_yaml(path: str | Path) -> dict[str, dict[str, Any]]:
    """unet / appearance_unet / controlnet / vae configs from an LDM-style model YAML (ControlNet / MagicDance)."""
    from omegaconf import OmegaConf

    path = Path(path)
    try:
        original = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        params = original["model"]["params"]
        params["first_stage_config"]["params"]["ddconfig"]["ch_mult"]  # noqa: B018 (the helpers need it)
    except Exception as err:  # a YAML error, or not an LDM model config
        raise UserError(f"{path}: not an LDM model config (model.params.unet_config / first_stage_config): "
                        f"{type(err).__name__}: {err}") from None
    cond = (params.get("cond_stage_config") or {}).get("target", "")
    if cond and not cond.endswith("FrozenCLIPEmbedder"):
        raise UserError(f"{path}: text encoder {cond!r} is not supported (only FrozenCLIPEmbedder, CLIP ViT-L/14)")
    return _configs_from_params(original, path)


def _configs_from_params(original: dict[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    from diffusers.loaders.single_file_utils import (
        create_unet_diffusers_config_from_ldm,
        create_vae_diffusers_config_from_ldm,
    )

    params = original["model"]["params"]
    vae_factor = 2 ** (len(params["first_stage_config"]["params"]["ddconfig"]["ch_mult"]) - 1)
    image_size = int(params.get("image_size", 64)) * vae_factor

    def unet_config(section: str) -> dict[str, Any]:
        unet_params = dict(params[section]["params"])
        unet_params.setdefault("out_channels", unet_params["in_channels"])
        fake = copy.deepcopy(original)
        fake["model"]["params"]["unet_config"] = {"params": unet_params}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = create_unet_diffusers_config_from_ldm(fake, None, image_size=image_size)
        heads, head_channels = unet_params.get("num_heads", -1), unet_params.get("num_head_channels", -1)
        if (heads is None or heads == -1) and head_channels and head_channels > 0:
            config["attention_head_dim"] = [c // head_channels for c in config["block_out_channels"]]
        return config

    out: dict[str, dict[str, Any]] = {}
    if params.get("unet_config"):
        out["unet"] = unet_config("unet_config")
    acm = "appearance_control_stage_config"
    if params.get(acm):
        out["appearance_unet"] = unet_config(acm)
    elif "unet" in out:
        out["appearance_unet"] = dict(out["unet"])
    for section in ("pose_control_stage_config", "control_stage_config"):
        if params.get(section):
            unet = unet_config(section)
            keep = ("in_channels", "down_block_types", "block_out_channels", "layers_per_block", "cross_attention_dim",
                    "attention_head_dim", "use_linear_projection", "class_embed_type", "addition_embed_type",
                    "addition_time_embed_dim", "projection_class_embeddings_input_dim",
                    "transformer_layers_per_block")
            out["controlnet"] = {key: unet[key] for key in keep if key in unet}
            out["controlnet"]["conditioning_channels"] = params[section]["params"].get("hint_channels", 3)
            out["controlnet"]["conditioning_embedding_out_channels"] = list(LDM_HINT_CHANNELS)
            break
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["vae"] = create_vae_diffusers_config_from_ldm(original, {}, image_size=image_size)
    if "unet" not in out:
        raise UserError(f"{path}: no model.params.unet_config")
    return out


# ---------------------------------------------------------------------------------------------------- checking

_MODEL_CLASSES = {"unet": "UNet2DConditionModel", "appearance": "UNet2DConditionModel",
                  "controlnet": "ControlNetModel", "vae": "AutoencoderKL"}


def meta_model(kind: str, config: dict[str, Any]) -> torch.nn.Module:
    """The component built on the meta device: its state-dict names and shapes, no memory."""
    import diffusers
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "clip":
            return CLIPTextModel(CLIPTextConfig.from_dict(config))
        cls = getattr(diffusers, _MODEL_CLASSES[kind])
        return cls.from_config(config)


def expected_keys(kind: str, config: dict[str, Any]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """LDM key -> (diffusers key, LDM shape) for every weight of the component."""
    model = meta_model(kind, config)
    expected = {}
    for key, value in model.state_dict().items():
        name = ldm_key(kind, key, config)
        if name is not None:
            expected[name] = (key, ldm_shape(kind, key, tuple(value.shape)))
    return expected


def check_component(what: str, prefix: str, given: dict[str, tuple[int, ...]],
                    expected: dict[str, tuple[str, tuple[int, ...]]], source: Path, origin: str) -> None:
    """Missing or unexpected keys, or a wrong shape, are a `UserError` naming the keys (and both shapes)."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if unexpected and missing:
        raise UserError(f"{source}: the {what} ({prefix}*) does not match its config ({origin}): "
                        f"{len(unexpected)} unexpected key(s) ({_few([prefix + k for k in unexpected], 2)}) and "
                        f"{len(missing)} missing ({_few([prefix + k for k in missing], 2)}); a model of another size? "
                        "pass --original-config or --components")
    if unexpected:
        raise UserError(f"{source}: {len(unexpected)} unexpected key(s) in the {what} ({prefix}*): "
                        f"{_few([prefix + k for k in unexpected])}")
    if missing:
        raise UserError(f"{source}: {len(missing)} key(s) of the {what} missing: {_few([prefix + k for k in missing])}")
    for key, shape in given.items():
        want = expected[key][1]
        if tuple(shape) != tuple(want):
            raise UserError(f"{source}: {prefix}{key} has shape {tuple(shape)}, the {what} config ({origin}) expects "
                            f"{tuple(want)} (checkpoints of another size: pass --original-config or --components)")


# ---------------------------------------------------------------------------------------------- LDM -> diffusers

def convert_from_ldm(kind: str, tensors: dict[str, torch.Tensor], config: dict[str, Any],
                     model_keys: set[str]) -> dict[str, torch.Tensor]:
    """One component's LDM tensors (keys without prefix, already checked) -> its diffusers/transformers state dict.

    The data is not copied: the result holds the same tensors (or views of them).
    """
    from diffusers.loaders import single_file_utils as sfu

    prefix = LDM_PREFIX[kind]
    if kind in ("unet", "appearance"):
        out = sfu.convert_ldm_unet_checkpoint({prefix + k: v for k, v in tensors.items()}, config)
    elif kind == "controlnet":
        # diffusers hard-codes the SD hint encoder's last index (14); the hint block is mapped here instead.
        hint = {k: v for k, v in tensors.items() if k.startswith("input_hint_block.")}
        rest = {prefix + k: v for k, v in tensors.items() if k not in hint}
        out = sfu.convert_controlnet_checkpoint(rest, config)
        for key in model_keys:
            if key.startswith("controlnet_cond_embedding."):
                out[key] = hint[_controlnet_key(key, config)]
    elif kind == "vae":
        out = sfu.convert_ldm_vae_checkpoint({prefix + k: v for k, v in tensors.items()}, config)
    elif kind == "clip":
        out = sfu.convert_ldm_clip_checkpoint({prefix + k: v for k, v in tensors.items()})
        if not any(k.startswith("text_model.") for k in model_keys):  # transformers >= 5 drops the prefix
            out = {k.removeprefix("text_model."): v for k, v in out.items()}
    else:
        raise ValueError(f"unknown kind {kind!r}")
    if set(out) != model_keys or any(v is None for v in out.values()):
        wrong = sorted(set(out) ^ model_keys) or sorted(k for k, v in out.items() if v is None)
        raise RuntimeError(f"diffusers' {kind} converter disagrees with the key accounting: {_few(wrong)}")
    return out


# ---------------------------------------------------------------------------------------------- diffusers -> LDM

def to_ldm(kind: str, state: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A component's diffusers/transformers state dict -> LDM keys (without prefix), tensors shared."""
    out = {}
    for key, value in state.items():
        name = ldm_key(kind, key, config)
        if name is not None:
            out[name] = value.reshape(ldm_shape(kind, key, tuple(value.shape)))
    return out


def ldm_schedule_buffers(scheduler_config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The noise-schedule buffers an LDM model registers (`ddpm.py: register_schedule`, plus `logvar`)."""
    import numpy as np

    n = int(scheduler_config.get("num_train_timesteps", 1000))
    start, end = float(scheduler_config.get("beta_start", 0.00085)), float(scheduler_config.get("beta_end", 0.012))
    schedule = scheduler_config.get("beta_schedule", "scaled_linear")
    if schedule == "scaled_linear":  # LDM's "linear"
        betas = np.linspace(start ** 0.5, end ** 0.5, n, dtype=np.float64) ** 2
    elif schedule == "linear":
        betas = np.linspace(start, end, n, dtype=np.float64)
    else:
        raise UserError(f"scheduler beta_schedule {schedule!r} has no LDM equivalent (scaled_linear or linear)")
    alphas = 1.0 - betas
    acp = np.cumprod(alphas, axis=0)
    acp_prev = np.append(1.0, acp[:-1])
    posterior_variance = betas * (1.0 - acp_prev) / (1.0 - acp)
    values = {
        "betas": betas, "alphas_cumprod": acp, "alphas_cumprod_prev": acp_prev,
        "sqrt_alphas_cumprod": np.sqrt(acp), "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - acp),
        "log_one_minus_alphas_cumprod": np.log(1.0 - acp), "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / acp),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / acp - 1), "posterior_variance": posterior_variance,
        "posterior_log_variance_clipped": np.log(np.maximum(posterior_variance, 1e-20)),
        "posterior_mean_coef1": betas * np.sqrt(acp_prev) / (1.0 - acp),
        "posterior_mean_coef2": (1.0 - acp_prev) * np.sqrt(alphas) / (1.0 - acp),
    }
    buffers = {k: torch.tensor(v, dtype=torch.float32) for k, v in values.items()}
    buffers["logvar"] = torch.zeros(n)
    return buffers


def ldm_hint_block_placeholder(hint_channels: int, model_channels: int) -> dict[str, torch.Tensor]:
    """Zeros in the shape of the LDM hint encoder (the appearance model carries one it never uses)."""
    channels = [hint_channels, 16, 16, 32, 32, 96, 96, 256, model_channels]
    out = {}
    for i in range(8):
        out[f"input_hint_block.{2 * i}.weight"] = torch.zeros(channels[i + 1], channels[i], 3, 3)
        out[f"input_hint_block.{2 * i}.bias"] = torch.zeros(channels[i + 1])
    return out


def _few(items: list[str], n: int = 5) -> str:
    shown = ", ".join(items[:n])
    return shown + (f" (+{len(items) - n} more)" if len(items) > n else "")
