"""One config system: OmegaConf YAML files merged in order, `key=value` overrides, a typed schema.

A YAML file may start from others with `base: other.yaml` (or a list), resolved relative to the file, so a
training stage or an inference preset is a short diff over a base. Every key is checked against the schema: an
unknown key is a `UserError` naming the file, the key and the nearest valid key. The result is an instance of the
schema (a plain dataclass), not a dict: what a module is given says what it holds.

The top-level `system:` key names the system a config is for (absent: `magicpose`); `schema_for(system, purpose)`
maps it to its schema, so `magicpose fit` reads the right one.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from magicpose.config import followyourpose, magicpose, original_fyp
from magicpose.errors import UserError
from magicpose.original_names import original_name_hint
from magicpose.paths import resolve_path

BASE_KEY = "base"
SYSTEM_KEY = "system"
DEFAULT_SYSTEM = "magicpose"
Purpose = Literal["inference", "fit"]
SCHEMAS: dict[str, dict[str, type]] = {
    "magicpose": {"inference": magicpose.MagicPoseConfig, "fit": magicpose.FitConfig},
    followyourpose.SYSTEM: {"inference": followyourpose.FypConfig, "fit": followyourpose.FypFitConfig},
}
Schema = TypeVar("Schema")


def load_config(
    files: list[str | Path], overrides: list[str] | None = None, schema: type[Schema] = magicpose.MagicPoseConfig
) -> Schema:
    """Merge YAML files (each with its `base:` chain) and `a.b=value` overrides onto the schema's defaults;
    return an instance of `schema`."""
    merged = OmegaConf.structured(schema)
    for file in files:
        merged = _merge_checked(merged, _load_yaml_with_bases(resolve_path(file), ()), str(file))
    if overrides:
        merged = _merge_checked(merged, _parse_overrides(overrides), "command line")
    return OmegaConf.to_object(merged)


def config_system(files: list[str | Path]) -> str:
    """The `system:` of the merged files (each with its `base:` chain; later files win), `magicpose` if none sets it."""
    found = DEFAULT_SYSTEM
    for file in files:
        found = str(_load_yaml_with_bases(resolve_path(file), ()).get(SYSTEM_KEY, found))
    return found


def schema_for(system: str, purpose: Purpose) -> type:
    """The schema of `system` (`magicpose`, `followyourpose`) for sampling (`inference`) or training (`fit`)."""
    if system not in SCHEMAS:
        raise UserError(f"system: unknown system {system!r} (choose from {', '.join(SCHEMAS)})")
    return SCHEMAS[system][purpose]


def to_yaml(config: Any) -> str:
    """A loaded config (or any part of it) as YAML, every key resolved."""
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def to_container(config: Any) -> dict:
    """A loaded config (or any part of it) as plain dicts and lists, e.g. for JSON records."""
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True)


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
    signature = original_fyp.original_signature(data)
    if signature:  # the original's pose_train.yaml / pose_sample.yaml: one conversion, then it loads
        raise UserError(f"{path}: an original Follow-Your-Pose config ({', '.join(signature)}); convert it once: "
                        f"magicpose convert fyp-config {path} --out ours.yaml")
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
            original = original_name_hint(full)
            if original:
                raise UserError(f"{source}: unknown key '{full}': {original}")
            raise UserError(f"{source}: unknown key '{full}'{_suggest(str(key), valid, prefix)}")
        _check_keys(schema_node[key], data[key], source, prefix=f"{full}.")


def _suggest(key: str, valid: list[str], prefix: str) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    if close:
        return f" (did you mean '{prefix}{close[0]}'?)"
    return f" (valid keys here: {', '.join(prefix + v for v in valid)})"
