"""Released AnimateDiff motion modules (`mm_sd_v14.ckpt`, `mm_sd_v15.ckpt`, `mm_sd_v15_v2.ckpt`, ...) <-> a diffusers
`MotionAdapter` folder, strictly.

The original files hold the motion modules of AnimateDiff's UNet3D and nothing else:

    {down_blocks.N, up_blocks.N, mid_block}.motion_modules.M.temporal_transformer.
        norm.*  proj_in.*  proj_out.*
        transformer_blocks.T.attention_blocks.{0,1}.{to_q,to_k,to_v}.weight, .to_out.0.{weight,bias}, .pos_encoder.pe
        transformer_blocks.T.norms.{0,1}.*  ff.net.0.proj.*  ff.net.2.*  ff_norm.*

diffusers' `MotionAdapter` has the same tensors without `.temporal_transformer`, with `attention_blocks.0/1` ->
`attn1/attn2`, `norms.0/1` -> `norm1/norm2`, `ff_norm` -> `norm3`. The positional tables differ in kind, not only in
name: the original keeps one `pe` buffer per attention block, diffusers one persistent `pos_embed.pe` per transformer
block (`SinusoidalPositionalEmbedding`, added before both attentions, as the original adds its two equal tables). Both
compute the same table (`sin`/`cos` of `position * 10000^(-2i/dim)`); a file whose tables are not that table (learned
positions, a different formula) cannot be represented and is refused. The file's table is the one kept (so a round
trip is exact), and its length is `motion_max_seq_length` (24 for v1, 32 for v2/v3).

What the file cannot show, because no tensor's shape depends on it: the attention heads and the GroupNorm groups.
AnimateDiff used 8 heads and 32 groups everywhere; a config folder (`configs/models/sd15/motion_adapter`) may give
other values. Every other config value is read from the keys and shapes, and a given config must agree with them.

Key accounting is strict: every key is converted or dropped for a stated reason (the second copy of each positional
table); missing, unexpected or mis-shaped keys are named, with the file, in one `UserError` line. Pickles are read
only with `torch.load(weights_only=True)` (`magicpose.convert.safe_load`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from diffusers import MotionAdapter
from torch import Tensor

from magicpose.convert.magicdance import Report
from magicpose.convert.safe_load import open_checkpoint, save_tensors
from magicpose.errors import UserError
from magicpose.paths import resolve_path, staged_folder

# AnimateDiff's motion-module settings that no tensor shape shows (its `motion_module_kwargs` and
# TemporalTransformer3DModel's GroupNorm).
ANIMATEDIFF_HEADS = 8
ANIMATEDIFF_NORM_GROUPS = 32
DROP_PE_COPY = ("the second attention block's copy of the positional table (diffusers keeps one per transformer "
                "block and adds it before both attentions; checked equal to the sinusoidal table, like the first)")
# what the file's keys and shapes decide; a config given by the user must agree on these
SHOWN = ("block_out_channels", "motion_layers_per_block", "motion_transformer_layers_per_block",
         "use_motion_mid_block", "motion_mid_block_layers_per_block", "motion_transformer_layers_per_mid_block",
         "motion_max_seq_length", "conv_in_channels")
UNSHOWN = ("motion_num_attention_heads", "motion_norm_num_groups")

_MODULE = re.compile(r"^(down_blocks\.\d+|up_blocks\.\d+|mid_block)\.motion_modules\.(\d+)\.(.+)$")
_TRANSFORMER_BLOCK = re.compile(r"^transformer_blocks\.(\d+)\.(.+)$")
_PE = re.compile(r"^attention_blocks\.([01])\.pos_encoder\.pe$")
# inside one transformer block: original prefix -> diffusers prefix
_INNER = (("attention_blocks.0.", "attn1."), ("attention_blocks.1.", "attn2."), ("norms.0.", "norm1."),
          ("norms.1.", "norm2."), ("ff_norm.", "norm3."))
_MOTION_SUFFIX = ".temporal_transformer."


# --------------------------------------------------------------------------------------------------- key names

def diffusers_key(key: str) -> str | None:
    """The MotionAdapter name of an original key (both positional tables -> `pos_embed.pe`); None: not a motion-module
    key. Names that follow the grammar but name no tensor of the model are left for the strict check to name."""
    if key.startswith("conv_in."):  # PIA-style adapters with an input conv: the same name in both layouts
        return key
    match = _MODULE.match(key)
    if match is None or not match.group(3).startswith("temporal_transformer."):
        return None
    where, index, rest = match.group(1), match.group(2), match.group(3).removeprefix("temporal_transformer.")
    inner = _TRANSFORMER_BLOCK.match(rest)
    if inner is not None:
        block, name = inner.groups()
        if _PE.match(name):
            name = "pos_embed.pe"
        else:
            name = next((new + name[len(old):] for old, new in _INNER if name.startswith(old)), name)
        rest = f"transformer_blocks.{block}.{name}"
    return f"{where}.motion_modules.{index}.{rest}"


def original_keys(key: str) -> list[str]:
    """The original names of a MotionAdapter key: two for a positional table (one per attention block)."""
    if key.startswith("conv_in."):
        return [key]
    match = _MODULE.match(key)
    if match is None:
        raise UserError(f"{key}: not a MotionAdapter key (down_blocks / up_blocks / mid_block .motion_modules.*)")
    head = f"{match.group(1)}.motion_modules.{match.group(2)}.temporal_transformer."
    rest = match.group(3)
    inner = _TRANSFORMER_BLOCK.match(rest)
    if inner is None:
        return [head + rest]
    block, name = inner.groups()
    tail = f"{head}transformer_blocks.{block}."
    if name == "pos_embed.pe":
        return [f"{tail}attention_blocks.{i}.pos_encoder.pe" for i in (0, 1)]
    name = next((old + name[len(new):] for old, new in _INNER if name.startswith(new)), name)
    return [tail + name]


def looks_like_motion_module(keys: list[str]) -> bool:
    """Whether a state dict holds AnimateDiff motion modules (the original layout), by its key names."""
    return any(_MOTION_SUFFIX in k and _MODULE.match(k) for k in keys)


# --------------------------------------------------------------------------------------------------- reading

class _Tensors:
    """A dict of tensors with the accessors of `safe_load.Checkpoint` (keys, shape, get), for in-memory states."""

    def __init__(self, state: Mapping[str, Tensor], path: str = "the state dict") -> None:
        self._state, self.path, self.notes = state, path, []

    def keys(self) -> list[str]:
        return list(self._state)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._state[key].shape)

    def get(self, key: str) -> Tensor:
        return self._state[key]


def _rename(keys: list[str]) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """(ours -> original for the kept keys, ours -> original for the positional tables' second copies, strays)."""
    names: dict[str, str] = {}
    copies: dict[str, str] = {}
    strays: list[str] = []
    for key in keys:
        ours = diffusers_key(key)
        if ours is None:
            strays.append(key)
        elif ours.endswith(".pos_embed.pe") and ".attention_blocks.1." in key:
            copies[ours] = key
        else:
            names[ours] = key
    return names, copies, strays


def _position_table(dim: int, length: int) -> Tensor:
    """The table diffusers' MotionAdapter computes (its own `SinusoidalPositionalEmbedding`, float32)."""
    from diffusers.models.embeddings import SinusoidalPositionalEmbedding

    return SinusoidalPositionalEmbedding(dim, length).pe


def _check_positions(ckpt: Any, keys: list[str]) -> None:
    """Every positional table of the file is diffusers' sinusoidal table, up to the rounding of the file's dtype."""
    tables: dict[tuple[int, int], Tensor] = {}
    for key in keys:
        pe = ckpt.get(key)
        if pe.ndim != 3 or pe.shape[0] != 1:
            raise UserError(f"{ckpt.path}: {key} has shape {tuple(pe.shape)}, not (1, frames, channels)")
        size = (pe.shape[2], pe.shape[1])
        if size not in tables:
            tables[size] = _position_table(*size)
        tolerance = max(1e-5, 2 * torch.finfo(pe.dtype).eps) if pe.is_floating_point() else 0.0
        worst = (pe.float() - tables[size]).abs().max().item()
        if not worst <= tolerance:
            raise UserError(f"{ckpt.path}: {key} is not the sinusoidal position table that diffusers' MotionAdapter "
                            f"computes (largest difference {worst:.3g}); a motion module with other (e.g. learned) "
                            "positions cannot be represented as a MotionAdapter")


def motion_state_to_diffusers(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Original AnimateDiff motion-module keys -> MotionAdapter keys (tensors shared, not copied).

    Each transformer block's two positional tables become its one `pos_embed.pe` (the first copy; both are checked to
    be the sinusoidal table). A key outside the motion-module layout is a `UserError`; whether the keys fill a
    MotionAdapter is checked by `load_motion_checkpoint` (it needs the config).
    """
    tensors = _Tensors(state)
    names, copies, strays = _rename(tensors.keys())
    if strays:
        raise UserError(f"{len(strays)} key(s) are not AnimateDiff motion-module keys: {_few(sorted(strays))}")
    _check_positions(tensors, [names[k] for k in names if k.endswith(".pos_embed.pe")] + list(copies.values()))
    return {ours: state[key] for ours, key in names.items()}


# --------------------------------------------------------------------------------------------------- config

def _module_of(key: str) -> tuple[str, int, int, str] | None:
    """(`down` / `up` / `mid`, block index, module index, rest) of a MotionAdapter key."""
    match = _MODULE.match(key)
    if match is None:
        return None
    where = match.group(1)
    kind = where.split("_")[0]
    block = int(where.rsplit(".", 1)[1]) if kind != "mid" else 0
    return kind, block, int(match.group(2)), match.group(3)


def _width_clue(rest: str, shape: tuple[int, ...]) -> int | None:
    """The module's channel count as one tensor shows it."""
    if rest in ("norm.weight", "norm.bias", "proj_out.weight", "proj_out.bias") and shape:
        return shape[0]
    if rest == "proj_in.weight" and len(shape) == 2:
        return shape[1]
    if rest.endswith(".pos_embed.pe") and len(shape) == 3:
        return shape[2]
    return None


def _per_block(values: list[int]) -> int | list[int]:
    return values[0] if len(set(values)) == 1 else values


def _infer_shown(shapes: Mapping[str, tuple[int, ...]], where: Any) -> dict[str, Any]:
    """The config values that the keys and shapes decide (`SHOWN`), from MotionAdapter-named shapes.

    Each value is read from what most tensors say, so that one damaged tensor is named by the strict check that
    follows instead of skewing the whole config."""
    layers: dict[tuple[str, int], int] = {}
    depth: dict[tuple[str, int], int] = {}
    widths: dict[tuple[str, int], Counter] = {}
    frames: Counter = Counter()
    for key, shape in shapes.items():
        found = _module_of(key)
        if found is None:
            continue
        kind, block, module, rest = found
        layers[kind, block] = max(layers.get((kind, block), 0), module + 1)
        inner = _TRANSFORMER_BLOCK.match(rest)
        if inner is not None:
            depth[kind, block] = max(depth.get((kind, block), 0), int(inner.group(1)) + 1)
        if rest.endswith(".pos_embed.pe") and len(shape) == 3:
            frames[shape[1]] += 1
        clue = _width_clue(rest, shape)
        if clue is not None:
            widths.setdefault((kind, block), Counter())[clue] += 1
    downs = sorted(block for kind, block in layers if kind == "down")
    if not downs:
        raise UserError(f"{where}: no down_blocks.N.motion_modules.* keys: not an AnimateDiff motion module")
    if not frames:
        raise UserError(f"{where}: no positional tables (attention_blocks.*.pos_encoder.pe): diffusers' MotionAdapter "
                        "always adds sinusoidal positions, so a motion module trained without them cannot be "
                        "represented")
    count = downs[-1] + 1
    channels = []
    for i in range(count):  # down block i and up block count-1-i have the same width
        votes = widths.get(("down", i), Counter()) + widths.get(("up", count - 1 - i), Counter())
        if not votes:
            raise UserError(f"{where}: no tensor of down_blocks.{i} / up_blocks.{count - 1 - i} shows its width")
        channels.append(votes.most_common(1)[0][0])
    has_mid = ("mid", 0) in layers
    config: dict[str, Any] = {
        "block_out_channels": channels,
        "motion_layers_per_block": _per_block([layers.get(("down", i), 0) for i in range(count)]),
        "motion_transformer_layers_per_block": _per_block([depth.get(("down", i), 0) for i in range(count)]),
        "use_motion_mid_block": has_mid,
        "motion_mid_block_layers_per_block": layers.get(("mid", 0), 1),
        "motion_transformer_layers_per_mid_block": depth.get(("mid", 0), 1),
        "motion_max_seq_length": frames.most_common(1)[0][0],
        "conv_in_channels": shapes["conv_in.weight"][1] if len(shapes.get("conv_in.weight", ())) == 4 else None,
    }
    return config


def _read_config(config: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(config, Mapping):
        return dict(config)
    folder = resolve_path(config)
    path = folder / "config.json" if folder.is_dir() else folder
    if not path.is_file():
        raise UserError(f"{folder}: no config.json (a MotionAdapter config folder, e.g. "
                        "configs/models/sd15/motion_adapter)")
    return dict(MotionAdapter.load_config(path.parent))


def _as_list(value: Any, n: int) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


def _init_defaults() -> dict[str, Any]:
    import inspect

    params = inspect.signature(MotionAdapter.__init__).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def _disagreements(shown: dict[str, Any], config: dict[str, Any]) -> list[str]:
    n = len(shown["block_out_channels"])
    full = {**_init_defaults(), **config}
    wrong = []
    for name in SHOWN:
        if not shown["use_motion_mid_block"] and name in ("motion_mid_block_layers_per_block",
                                                           "motion_transformer_layers_per_mid_block"):
            continue
        ours, theirs = shown[name], full.get(name)
        if name in ("motion_layers_per_block", "motion_transformer_layers_per_block"):
            ours, theirs = _as_list(ours, n), _as_list(theirs, n)
        elif name == "block_out_channels":
            theirs = list(theirs or ())
        if ours != theirs:
            wrong.append(f"{name} {theirs} (the file: {ours})")
    return wrong


def _check_divisible(config: dict[str, Any], where: Any, given: bool) -> None:
    heads = _as_list(config["motion_num_attention_heads"], len(config["block_out_channels"]))
    groups = config["motion_norm_num_groups"]
    for width, head in zip(config["block_out_channels"], heads, strict=False):
        if width % head or width % groups:
            origin = "the config's" if given else "AnimateDiff's"
            raise UserError(f"{where}: {width} channels do not split into {head} heads and {groups} norm groups "
                            f"({origin} values); pass a MotionAdapter config folder that fits")


def motion_adapter_config(state: Mapping[str, Tensor], config: str | Path | Mapping[str, Any] | None = None, *,
                          defaults: str | Path | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The MotionAdapter config of an original motion-module state dict (keys and shapes only are read).

    block_out_channels (from the modules' widths), layers per block, the transformer depth, the mid block and
    `motion_max_seq_length` (the positional tables' length) come from the file. Heads and norm groups, which no
    shape shows, are AnimateDiff's (8, 32), or those of `defaults` (a config folder or dict) when given.
    `config` (a folder such as `configs/models/sd15/motion_adapter`, or a dict) is used instead, after checking that
    the file agrees with it (a `UserError` names each disagreeing value).
    """
    return _config_from_shapes(_shapes_by_ours(_Tensors(state)), "the state dict", config, defaults)


def _shapes_by_ours(ckpt: Any) -> dict[str, tuple[int, ...]]:
    names, _, _ = _rename(ckpt.keys())
    return {ours: ckpt.shape(key) for ours, key in names.items()}


def _config_from_shapes(shapes: Mapping[str, tuple[int, ...]], where: Any,
                        config: str | Path | Mapping[str, Any] | None,
                        defaults: str | Path | Mapping[str, Any] | None) -> dict[str, Any]:
    shown = _infer_shown(shapes, where)
    if config is not None:
        given = _read_config(config)
        wrong = _disagreements(shown, given)
        if wrong:
            named = "" if isinstance(config, Mapping) else f" {config}"
            raise UserError(f"{where}: does not fit the MotionAdapter config{named}: it says {'; '.join(wrong)}")
        result = {k: v for k, v in given.items() if not k.startswith("_")}
    else:
        unshown = {"motion_num_attention_heads": ANIMATEDIFF_HEADS, "motion_norm_num_groups": ANIMATEDIFF_NORM_GROUPS}
        if defaults is not None:
            fallback = _read_config(defaults)
            unshown.update({k: fallback[k] for k in UNSHOWN if k in fallback})
        result = {**shown, **unshown}
    _check_divisible(result, where, config is not None or defaults is not None)
    return result


# --------------------------------------------------------------------------------------------------- loading

def _account(expected: Mapping[str, torch.Size], got: Mapping[str, tuple[int, ...]], names: Mapping[str, str],
             strays: list[str], where: Any) -> None:
    """Missing, unexpected and mis-shaped keys, named by their original names, in one line."""
    missing = sorted(original_keys(k)[0] for k in set(expected) - set(got))
    unexpected = sorted(strays + [names[k] for k in set(got) - set(expected)])
    wrong = sorted((names[k], got[k], tuple(expected[k])) for k in set(expected) & set(got)
                   if tuple(expected[k]) != tuple(got[k]))
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing ({_few(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_few(unexpected)})")
    if wrong:
        parts.append(f"{len(wrong)} with the wrong shape ({_few([f'{k} {g} vs {e}' for k, g, e in wrong], 3)})")
    if parts:
        raise UserError(f"{where}: does not match the MotionAdapter it describes: {'; '.join(parts)}")


def _check_copies(names: Mapping[str, str], copies: Mapping[str, str], shapes: Mapping[str, tuple[int, ...]],
                  ckpt: Any) -> None:
    """Each transformer block's second positional table is there, with the first one's shape."""
    missing = sorted(original_keys(k)[1] for k in names if k.endswith(".pos_embed.pe") and k not in copies)
    lone = sorted(key for ours, key in copies.items() if ours not in names)
    if missing or lone:
        what = [f"{len(missing)} missing ({_few(missing)})"] if missing else []
        what += [f"{len(lone)} without the first attention block's table ({_few(lone)})"] if lone else []
        raise UserError(f"{ckpt.path}: the positional tables come in pairs (one per attention block): "
                        f"{'; '.join(what)}")
    for ours, key in copies.items():
        if ckpt.shape(key) != shapes[ours]:
            raise UserError(f"{ckpt.path}: {key} has shape {ckpt.shape(key)}, its pair {names[ours]} "
                            f"{shapes[ours]}")


def read_motion_checkpoint(path: str | Path, config: str | Path | Mapping[str, Any] | None = None, *,
                           defaults: str | Path | Mapping[str, Any] | None = None
                           ) -> tuple[dict[str, Tensor], dict[str, Any], Report]:
    """(MotionAdapter state dict, its config, a report) from an original file, checked completely before returning.

    Tensors keep the file's dtype and may be read lazily from it (memory-mapped)."""
    path = Path(path)
    ckpt = open_checkpoint(path)
    names, copies, strays = _rename(ckpt.keys())
    shapes = {ours: ckpt.shape(key) for ours, key in names.items()}
    if not looks_like_motion_module(list(names.values())):
        raise UserError(f"{path}: holds no AnimateDiff motion modules (*.motion_modules.N.temporal_transformer.*)")
    adapter_config = _config_from_shapes(shapes, path, config, defaults)
    with torch.device("meta"):
        expected = {k: v.shape for k, v in MotionAdapter.from_config(adapter_config).state_dict().items()}
    _account(expected, shapes, names, strays, path)
    _check_copies(names, copies, shapes, ckpt)
    _check_positions(ckpt, [names[k] for k in names if k.endswith(".pos_embed.pe")] + list(copies.values()))
    state = {ours: ckpt.get(key) for ours, key in names.items()}
    layout = (f"AnimateDiff motion module: {sum(1 for k in shapes if k.endswith('.proj_in.weight'))} motion modules, "
              f"{'a' if adapter_config['use_motion_mid_block'] else 'no'} mid block, "
              f"{adapter_config['motion_max_seq_length']} frames")
    report = Report(source=str(path), layout=layout, out="", notes=list(ckpt.notes))
    if copies:
        report.dropped[DROP_PE_COPY] = sorted(copies.values())
    heads, groups = adapter_config["motion_num_attention_heads"], adapter_config["motion_norm_num_groups"]
    origin = f"from {config}" if config is not None else f"from {defaults}" if defaults is not None else (
        "AnimateDiff's (the file cannot show them; pass a config folder for others)")
    report.notes.append(f"{heads} attention heads, {groups} norm groups: {origin}")
    return state, adapter_config, report


def _adapter(state: dict[str, Tensor], config: dict[str, Any]) -> MotionAdapter:
    with torch.device("meta"):
        adapter = MotionAdapter.from_config(config)
    adapter.load_state_dict(state, strict=True, assign=True)
    return adapter.eval()


def load_motion_checkpoint(path: str | Path, config: str | Path | Mapping[str, Any] | None = None, *,
                           defaults: str | Path | Mapping[str, Any] | None = None) -> MotionAdapter:
    """An original motion-module file (`.ckpt` / `.pth` / `.safetensors`; a `state_dict` wrapper is unwrapped) as a
    `MotionAdapter`, loaded strictly; its tensors are its own (copied out of the file) and keep the file's dtype."""
    state, adapter_config, _ = read_motion_checkpoint(path, config, defaults=defaults)
    return _adapter({k: v.clone() for k, v in state.items()}, adapter_config)


def convert_motion_module(path: str | Path, out_dir: str | Path, config: str | Path | Mapping[str, Any] | None = None,
                          *, defaults: str | Path | Mapping[str, Any] | None = None, overwrite: bool = False
                          ) -> Report:
    """An original motion-module file -> a MotionAdapter folder (`save_pretrained`, safetensors, and the report as
    `conversion.json`). The folder appears complete or not at all (written beside it and renamed); an existing
    non-empty folder is replaced only with `overwrite`."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out}: already exists and is not empty (pass --overwrite to replace it)")
    state, adapter_config, report = read_motion_checkpoint(path, config, defaults=defaults)
    report.out = str(out)
    adapter = _adapter(state, adapter_config)
    report.components["motion_adapter"] = f"{len(state)} tensors -> MotionAdapter"
    with staged_folder(out) as staging:
        adapter.save_pretrained(staging, safe_serialization=True)
        (staging / "conversion.json").write_text(json.dumps(report.__dict__, indent=2) + "\n")
    return report


# --------------------------------------------------------------------------------------------------- export

_ORDER = {"down": 0, "up": 1, "mid": 2}  # the original UNet3D registers mid_block after up_blocks
_WB = ("weight", "bias")
# the original's registration order (parameters before buffers, weight before bias)
_OUTER_ORDER = [f"{m}.{p}" for m in ("norm", "proj_in") for p in _WB]
_INNER_ORDER = [
    *(f"attention_blocks.{i}.{name}" for i in (0, 1) for name in (
        "to_q.weight", "to_q.bias", "to_k.weight", "to_k.bias", "to_v.weight", "to_v.bias", "to_out.0.weight",
        "to_out.0.bias", "pos_encoder.pe")),
    *(f"{m}.{p}" for m in ("norms.0", "norms.1", "ff.net.0.proj", "ff.net.2", "ff_norm") for p in _WB),
]


def _original_order(key: str) -> tuple[int, int, int, int, int, int, str]:
    """conv_in; then down, up, mid blocks; within a module norm, proj_in, the transformer blocks, proj_out."""
    found = _module_of(key.replace(_MOTION_SUFFIX, "."))
    if found is None:
        return (-1, 0, 0, 0, 0, 0, key)  # conv_in
    kind, block, module, rest = found
    inner = _TRANSFORMER_BLOCK.match(rest)
    if inner is None:
        outer = _OUTER_ORDER.index(rest) if rest in _OUTER_ORDER else 6 + (rest != "proj_out.weight")
        return (_ORDER[kind], block, module, outer, 0, 0, key)
    name = inner.group(2)
    rank = _INNER_ORDER.index(name) if name in _INNER_ORDER else len(_INNER_ORDER)
    return (_ORDER[kind], block, module, 5, int(inner.group(1)), rank, key)


def motion_state_to_original(adapter: MotionAdapter | Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A MotionAdapter (or its state dict) -> the original AnimateDiff motion-module state dict, in the original's
    key order: each `pos_embed.pe` becomes both attention blocks' `pos_encoder.pe` (tensors shared, not copied)."""
    state = adapter.state_dict() if isinstance(adapter, torch.nn.Module) else adapter
    out = {name: value for key, value in state.items() for name in original_keys(key)}
    return {key: out[key] for key in sorted(out, key=_original_order)}


def save_original_motion_checkpoint(adapter: MotionAdapter | Mapping[str, Tensor], path: str | Path, *,
                                    overwrite: bool = False) -> Path:
    """Write the original layout: `.safetensors` by that suffix, else a plain pickle of tensors (`torch.save`, like
    the released `.ckpt`). Written beside and renamed, so the file appears complete or not at all."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise UserError(f"{path}: already exists (pass --overwrite to replace it)")
    state = motion_state_to_original(adapter)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        if path.suffix == ".safetensors":
            save_tensors(partial, state)
        else:
            torch.save({k: v.contiguous() for k, v in state.items()}, partial)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def export_motion_module(folder: str | Path, path: str | Path, *, overwrite: bool = False) -> Path:
    """A MotionAdapter folder (ours or diffusers') -> an original-layout motion-module file (`--to-original`)."""
    from magicpose.models.components import load_strict

    return save_original_motion_checkpoint(load_strict(MotionAdapter, resolve_path(folder)), path,
                                           overwrite=overwrite)


def _few(items: list[str], n: int = 5) -> str:
    shown = ", ".join(items[:n])
    return shown + (f" (+{len(items) - n} more)" if len(items) > n else "")
