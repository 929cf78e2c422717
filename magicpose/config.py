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
