"""Original checkpoints (SD-1.5, ControlNet, MagicDance) -> our component folders, and our folders -> the original.

Layouts read (prefixes of the flat state dict):

| file | prefixes | what we make of it |
|---|---|---|
| SD-1.5 `.ckpt` / `.safetensors` | `model.diffusion_model.` `first_stage_model.` `cond_stage_model.transformer.` | unet, vae, text_encoder |
| `control_v11p_sd15_openpose.pth` | `control_model.` (a ControlNet) | controlnet |
| `control_sd15_ini.ckpt` | SD-1.5 + `control_model.` (the ControlNet init) | SD parts, controlnet, and the appearance model the original builds from it for stage 1 (`control_model.` encoder + the UNet's `output_blocks`) |
| `model_state-10000.th` (stage 1) | SD-1.5 + `control_model.` (the appearance model, with output blocks) | SD parts, appearance_unet |
| `model_state-110000.th` (stage 2) | SD-1.5 + `appearance_control_model.` + `pose_control_model.` | everything |

Key accounting: every key of the file is converted or dropped for a reason written in the report
(`DROP_REASONS`); anything else is an error that lists the keys. Memory: one component's tensors at a time.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from magicpose.convert import ldm
from magicpose.convert.safe_load import (
    Checkpoint,
    LazyTensor,
    load_pickle,
    open_checkpoint,
    save_tensors,
    write_safetensors_streaming,
)
from magicpose.errors import UserError
from magicpose.paths import resolve_path, staged_folder

UNET, ACM, POSE = "model.diffusion_model.", "appearance_control_model.", "pose_control_model."
CONTROL, VAE, CLIP = "control_model.", "first_stage_model.", "cond_stage_model.transformer."
KIND = {"unet": "unet", "appearance_unet": "appearance", "controlnet": "controlnet", "vae": "vae",
        "text_encoder": "clip"}
WHAT = {"unet": "UNet", "appearance_unet": "appearance control model", "controlnet": "ControlNet", "vae": "VAE",
        "text_encoder": "text encoder"}
SD_PARTS = ("unet", "vae", "text_encoder")
DTYPES = {"keep": None, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

DROP_SCHEDULE = "LDM noise-schedule buffers (our scheduler config holds the schedule)"
DROP_POSITION_IDS = "CLIP position_ids (a constant buffer that transformers rebuilds)"
DROP_ACM_HINT = "the appearance model's input_hint_block (the original carries it, its forward never calls it)"
DROP_EMA = "the UNet's EMA copy (model_ema.*; the non-EMA weights are converted)"
DROP_VAE_LOSS = "the VAE's training loss (LPIPS / discriminator), not part of the model"
DROP_NOT_SD = "not Stable Diffusion weights (convert them with `magicpose convert controlnet` / `magicdance`)"
DROP_NOT_CONTROLNET = "outside the ControlNet"
DROP_REASONS = (DROP_SCHEDULE, DROP_POSITION_IDS, DROP_ACM_HINT, DROP_EMA, DROP_VAE_LOSS, DROP_NOT_SD,
                DROP_NOT_CONTROLNET)
OUT_CONV = ("conv_norm_out.weight", "conv_norm_out.bias", "conv_out.weight", "conv_out.bias")


@dataclass
class Part:
    """One output component read from one checkpoint: LDM key (no prefix) -> key in the file."""

    name: str
    keys: dict[str, str]
    label: str
    note: str = ""

    @property
    def kind(self) -> str:
        return KIND[self.name]


@dataclass
class Plan:
    checkpoint: Checkpoint
    layout: str
    parts: list[Part]
    dropped: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))


# ------------------------------------------------------------------------------------------------------- planning

def _take(keys: list[str], prefix: str, subs: tuple[str, ...] = ("",)) -> dict[str, str]:
    return {k[len(prefix):]: k for k in keys if k.startswith(prefix) and k[len(prefix):].startswith(subs)}


def _has(keys: list[str], prefix: str) -> bool:
    return any(k.startswith(prefix) for k in keys)


def plan_checkpoint(ckpt: Checkpoint, target: str, prefix: str | None = None) -> Plan:
    """Which keys make which component (`target`: magicdance, sd or controlnet); unclaimed keys are an error."""
    keys = ckpt.keys()
    plan = Plan(ckpt, "", [])
    if target == "controlnet":
        _plan_controlnet(plan, keys, prefix)
    else:
        for name, pre in (("unet", UNET), ("vae", VAE), ("text_encoder", CLIP)):
            part = _take(keys, pre)
            if name == "vae":
                part = {k: v for k, v in part.items() if not k.startswith("loss.")}
            if name == "text_encoder":
                part.pop(ldm.CLIP_POSITION_IDS, None)
            if part:
                plan.parts.append(Part(name, part, pre + "*"))
        if target == "sd":
            plan.layout = "Stable Diffusion checkpoint"
        else:
            _plan_magicdance(plan, keys)
    _account(plan, keys, target)
    return plan


def _plan_magicdance(plan: Plan, keys: list[str]) -> None:
    path = plan.checkpoint.path
    control_is_controlnet = _has(keys, CONTROL + "zero_convs.") or _has(keys, CONTROL + "middle_block_out.")
    if _has(keys, ACM):
        plan.layout = "MagicDance stage-2 checkpoint"
        acm, pose = ACM, POSE if _has(keys, POSE) else None
    elif _has(keys, CONTROL + "output_blocks.") and not control_is_controlnet:
        plan.layout, acm, pose = "MagicDance stage-1 checkpoint", CONTROL, None
    elif control_is_controlnet and _has(keys, UNET):
        plan.layout = "SD + ControlNet init (control_sd15_ini)"
        acm, pose = None, CONTROL
        encoder = _take(keys, CONTROL, ("time_embed.", "input_blocks.", "middle_block."))  # not middle_block_out.
        plan.parts.append(Part("appearance_unet", {**encoder, **_take(keys, UNET, ("output_blocks.",))},
                               f"{CONTROL}encoder + {UNET}output_blocks.*",
                               "built as the original's stage 1 does (load_state_dict_reference_only)"))
    elif control_is_controlnet:
        raise UserError(f"{path}: a ControlNet checkpoint ({CONTROL}*), no MagicDance model: "
                        "use `magicpose convert controlnet`")
    else:
        raise UserError(f"{path}: no MagicDance appearance model ({ACM}* or {CONTROL}*); for a plain Stable "
                        "Diffusion checkpoint use `magicpose convert sd`")
    if acm is not None:
        part = _take(keys, acm)
        hint = [k for k in part if k.startswith("input_hint_block.")]
        plan.dropped[DROP_ACM_HINT] += [part.pop(k) for k in hint]
        plan.parts.append(Part("appearance_unet", part, acm + "*",
                               "conv_norm_out/conv_out copied from the UNet (the original model has no final out "
                               "conv; ours is never used)"))
    if pose is not None:
        plan.parts.append(Part("controlnet", _take(keys, pose), pose + "*"))


def _plan_controlnet(plan: Plan, keys: list[str], prefix: str | None) -> None:
    path = plan.checkpoint.path
    if prefix is None:
        found = [p for p in (POSE, CONTROL) if _has(keys, p + "zero_convs.")]
        if not found and "zero_convs.0.0.weight" in keys:
            found = [""]
        if len(found) != 1:
            what = "several" if found else "no"
            raise UserError(f"{path}: {what} ControlNet found ({', '.join(found) or 'no *zero_convs.* keys'}); "
                            "name the one to convert with --prefix")
        prefix = found[0]
    part = _take(keys, prefix)
    if not part:
        raise UserError(f"{path}: no keys under the prefix {prefix!r}")
    plan.layout = "ControlNet checkpoint"
    plan.parts.append(Part("controlnet", part, (prefix or "(no prefix)") + "*"))


def _account(plan: Plan, keys: list[str], target: str) -> None:
    claimed = {v for part in plan.parts for v in part.keys.values()} | {k for ks in plan.dropped.values() for k in ks}
    unexpected = []
    for key in keys:
        if key in claimed:
            continue
        reason = _drop_reason(key, target)
        if reason:
            plan.dropped[reason].append(key)
        else:
            unexpected.append(key)
    if unexpected:
        raise UserError(f"{plan.checkpoint.path}: {len(unexpected)} key(s) belong to no component of a {plan.layout}: "
                        f"{ldm._few(sorted(unexpected))}")


def _drop_reason(key: str, target: str) -> str | None:
    if target == "controlnet":
        return DROP_NOT_CONTROLNET
    if key in ldm.LDM_SCHEDULE_BUFFERS or key in ("logvar", "scale_factor"):
        return DROP_SCHEDULE
    if key == CLIP + ldm.CLIP_POSITION_IDS:
        return DROP_POSITION_IDS
    if key.startswith("model_ema."):
        return DROP_EMA
    if key.startswith(VAE + "loss."):
        return DROP_VAE_LOSS
    if target == "sd" and key.startswith((CONTROL, ACM, POSE)):
        return DROP_NOT_SD
    return None


def check_plan(plan: Plan, targets: ldm.TargetConfigs) -> dict[str, dict[str, tuple[str, tuple[int, ...]]]]:
    """Every part's keys and shapes against its config, before anything is converted."""
    expected = {}
    for part in plan.parts:
        config = _config(targets, part.name)
        expected[part.name] = ldm.expected_keys(part.kind, config)
        given = {k: plan.checkpoint.shape(v) for k, v in part.keys.items()}
        ldm.check_component(WHAT[part.name], part.label.removesuffix("*"), given, expected[part.name],
                            plan.checkpoint.path, targets.origin)
    return expected


def _config(targets: ldm.TargetConfigs, name: str) -> dict[str, Any]:
    if name not in targets.configs:
        raise UserError(f"{targets.origin}: no {name} config")
    return targets.configs[name]


# ------------------------------------------------------------------------------------------------------- writing

def write_part(plan: Plan, part: Part, config: dict[str, Any], folder: Path, dtype: torch.dtype | None,
               extra: dict[str, torch.Tensor] | None = None) -> int:
    """Convert one component and write it as a diffusers/transformers folder; returns its tensor count."""
    model = ldm.meta_model(part.kind, config)
    model_keys = set(model.state_dict())
    if part.kind == "appearance":
        model_keys -= set(OUT_CONV)
    tensors = {k: plan.checkpoint.get(v) for k, v in part.keys.items()}
    state = ldm.convert_from_ldm(part.kind, tensors, config, model_keys)
    state.update(extra or {})
    del tensors
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    write_model_folder(folder, part.kind, model, state)
    return len(state)


def write_model_folder(folder: Path, kind: str, model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "clip":
        model.config.save_pretrained(folder)
        save_tensors(folder / "model.safetensors", state)
    else:
        model.save_config(folder)
        save_tensors(folder / "diffusion_pytorch_model.safetensors", state)


def _release_after(plan: Plan, index: int) -> None:
    """Drop the tensors of part `index` that no later part needs."""
    later = {v for part in plan.parts[index + 1:] for v in part.keys.values()}
    plan.checkpoint.release(v for v in plan.parts[index].keys.values() if v not in later)


@dataclass
class Report:
    """What a conversion did: printed as a summary and written as `conversion.json` in the output folder."""

    source: str
    layout: str
    out: str
    components: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"converted {self.source} ({self.layout}) -> {self.out}"]
        out += [f"  {name:<16} {text}" for name, text in self.components.items()]
        for reason, keys in self.dropped.items():
            out.append(f"  dropped {len(keys)} key(s): {reason}: {ldm._few(sorted(keys), 3)}")
        out += [f"  note: {note}" for note in self.notes]
        return out


def convert_checkpoint(checkpoint: str | Path, out: str | Path, target: str = "magicdance", *,
                       components: str | Path | None = None, original_config: str | Path | None = None,
                       sd: str | Path | None = None, controlnet: str | Path | None = None, prefix: str | None = None,
                       dtype: str = "keep", overwrite: bool = False) -> Report:
    """Convert `checkpoint` into a folder: a MagicPosePipeline (magicdance), an SD pipeline (sd) or a ControlNet.

    Everything is checked (keys, shapes, missing parts) before anything is written; the folder appears complete or
    not at all (it is written next to `out` and renamed at the end).
    """
    if dtype not in DTYPES:
        raise UserError(f"--dtype: unknown dtype {dtype!r} (choose from {', '.join(DTYPES)})")
    out = Path(out)
    _check_out(out, overwrite)
    targets = ldm.load_target_configs(components, original_config)
    ckpt = open_checkpoint(checkpoint)
    plan = plan_checkpoint(ckpt, target, prefix)
    check_plan(plan, targets)
    report = Report(str(checkpoint), plan.layout, str(out), notes=list(ckpt.notes))
    have = {part.name for part in plan.parts}

    extra_plans: list[Plan] = []
    sd_path = resolve_path(sd) if sd is not None else None
    if sd_path is not None and not sd_path.exists():
        raise UserError(f"{sd_path}: no such file or folder (--sd)")
    sd_folder = sd_path if sd_path is not None and sd_path.is_dir() else None  # also gives the tokenizer
    if target in ("magicdance", "sd"):
        missing = [name for name in SD_PARTS if name not in have]
        if missing and sd_path is None:
            labels = {"unet": UNET, "vae": VAE, "text_encoder": CLIP}
            hint = ("not a complete Stable Diffusion checkpoint" if target == "sd" else
                    "pass --sd with a Stable Diffusion 1.5 folder or single file to take them from")
            raise UserError(f"{checkpoint}: holds no {', '.join(f'{WHAT[m]} ({labels[m]}*)' for m in missing)}; "
                            f"{hint}")
        if not missing and sd_path is not None:
            report.notes.append(f"--sd {sd}: only its tokenizer is used (the checkpoint holds the UNet, VAE and "
                                "text encoder)")
        for name in missing if sd_folder is not None else ():
            if not (sd_folder / name).is_dir():
                raise UserError(f"{sd_folder}: no '{name}/' subfolder (needed: the checkpoint has no {WHAT[name]})")
        if missing and sd_folder is None:
            sd_plan = plan_checkpoint(open_checkpoint(sd_path), "sd")
            sd_plan.parts = [p for p in sd_plan.parts if p.name in missing]
            absent = set(missing) - {p.name for p in sd_plan.parts}
            if absent:
                raise UserError(f"{sd_path}: holds no {', '.join(WHAT[a] for a in sorted(absent))} either")
            check_plan(sd_plan, targets)
            extra_plans.append(sd_plan)
    cn_folder = None
    if controlnet is not None:
        if target != "magicdance":
            raise UserError("--controlnet only applies to `convert magicdance`")
        if "controlnet" in have:
            raise UserError(f"{checkpoint}: already holds a pose ControlNet; leave out --controlnet")
        cn_path = resolve_path(controlnet)
        if cn_path.is_dir():
            cn_folder = cn_path
        else:
            cn_plan = plan_checkpoint(open_checkpoint(cn_path), "controlnet")
            check_plan(cn_plan, targets)
            extra_plans.append(cn_plan)

    with staged_folder(out) as partial:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _write_all(plan, extra_plans, targets, partial, DTYPES[dtype], report, sd_folder, cn_folder)
            if target != "controlnet":
                _write_tokenizer_scheduler(partial, components, sd_folder, report)
                _write_index(partial, target)
        if target == "magicdance" and "controlnet" not in report.components:
            report.notes.append("no pose ControlNet: a stage-1 pipeline (use model.with_controlnet=false, or add "
                                "one with --controlnet control_v11p_sd15_openpose.pth)")
        for reason in _reasons_in_order(plan.dropped):
            report.dropped[reason] = plan.dropped[reason]
        for extra in extra_plans:
            for reason, keys in extra.dropped.items():
                report.dropped.setdefault(f"{reason} [{extra.checkpoint.path.name}]", []).extend(keys)
        _schedule_note(ckpt, partial, report)
        (partial / "conversion.json").write_text(json.dumps(report.__dict__, indent=2) + "\n")
        ckpt.close()
    return report


def _reasons_in_order(dropped: dict[str, list[str]]) -> list[str]:
    return [r for r in DROP_REASONS if dropped.get(r)] + [r for r in dropped if r not in DROP_REASONS and dropped[r]]


def _write_all(plan: Plan, extra_plans: list[Plan], targets: ldm.TargetConfigs, root: Path,
               dtype: torch.dtype | None, report: Report, sd_folder: Path | None, cn_folder: Path | None) -> None:
    single = plan.layout == "ControlNet checkpoint"
    plans = [plan, *extra_plans]
    # the UNet first: the appearance model takes its final conv from it
    ordered = sorted(((p, i, part) for p in plans for i, part in enumerate(p.parts)),
                     key=lambda item: item[2].name != "unet")
    if sd_folder is not None:
        for name in SD_PARTS:
            if not any(part.name == name for p in plans for part in p.parts):
                _copy_component(name, sd_folder / name, root / name, dtype)
                report.components[name] = f"from {sd_folder / name}"
    if cn_folder is not None:
        _copy_component("controlnet", cn_folder, root / "controlnet", dtype)
        report.components["controlnet"] = f"from {cn_folder}"
    for p, index, part in ordered:
        folder = root if single else root / part.name
        extra = None
        if part.kind == "appearance":
            extra = _read_tensors(root / "unet", OUT_CONV)
            if dtype is not None:
                extra = {k: v.to(dtype) for k, v in extra.items()}
        count = write_part(p, part, _config(targets, part.name), folder, dtype, extra)
        source = "" if p is plan else f" of {p.checkpoint.path}"
        report.components[part.name] = f"{count} tensors from {part.label}{source}" + (
            f"; {part.note}" if part.note else "")
        _release_after(p, index)


def _copy_component(name: str, source: Path, dest: Path, dtype: torch.dtype | None) -> None:
    """A component already in diffusers/transformers format: loaded strictly, written back as safetensors."""
    from magicpose.models.components import load_component

    model = load_component(name if name != "appearance_unet" else "unet", source)
    if dtype is not None:
        model.to(dtype)
    model.save_pretrained(dest, safe_serialization=True)
    del model


def _write_tokenizer_scheduler(root: Path, components: str | Path | None, sd_folder: Path | None,
                               report: Report) -> None:
    sd15 = resolve_path(ldm.SD15)
    comps = resolve_path(components) if components else sd15
    tokenizer = next(p for p in (sd_folder / "tokenizer" if sd_folder else None, comps / "tokenizer",
                                 sd15 / "tokenizer") if p is not None and p.is_dir())
    # the SD folder's own scheduler when it has one (a user's choice of sampler travels with their weights)
    scheduler = next(p for p in (sd_folder / "scheduler" if sd_folder else None, comps / "scheduler",
                                 sd15 / "scheduler") if p is not None and p.is_dir())
    shutil.copytree(tokenizer, root / "tokenizer")
    shutil.copytree(scheduler, root / "scheduler")
    report.components["tokenizer"] = f"copied from {tokenizer}"
    report.components["scheduler"] = f"copied from {scheduler}"


def _write_index(root: Path, target: str) -> None:
    import diffusers

    entries = {
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", json.loads((root / "scheduler" / "scheduler_config.json").read_text()).get(
            "_class_name", "DDIMScheduler")],
    }
    if target == "magicdance":
        entries["appearance_unet"] = ["diffusers", "UNet2DConditionModel"]
        has_cn = (root / "controlnet").is_dir()
        entries["controlnet"] = ["diffusers", "ControlNetModel"] if has_cn else [None, None]
        head = {"_class_name": "MagicPosePipeline"}
    else:
        entries.update(safety_checker=[None, None], feature_extractor=[None, None])
        head = {"_class_name": "StableDiffusionPipeline", "requires_safety_checker": False}
    index = {**head, "_diffusers_version": diffusers.__version__, **dict(sorted(entries.items()))}
    (root / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


def _schedule_note(ckpt: Checkpoint, root: Path, report: Report) -> None:
    """Say so when the checkpoint's noise schedule is not the one of the scheduler we wrote."""
    if "betas" not in ckpt or not (root / "scheduler").is_dir():
        return
    config = json.loads((root / "scheduler" / "scheduler_config.json").read_text())
    try:
        ours = ldm.ldm_schedule_buffers(config)["betas"]
        theirs = ckpt.get("betas").float()
        same = ours.shape == theirs.shape and torch.allclose(ours, theirs, rtol=1e-4, atol=1e-7)
    except UserError:
        same = False
    if not same:
        report.notes.append("the checkpoint's noise schedule (betas) differs from the scheduler config written to "
                            "scheduler/: check beta_start/beta_end/num_train_timesteps")


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise UserError(f"{out}: already exists (pass --overwrite to replace it)")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")


# ------------------------------------------------------------------------------------------------------- reading ours

def component_files(folder: Path) -> list[Path]:
    """The weight files of a diffusers/transformers component folder (safetensors preferred, shards included)."""
    for pattern in ("*.safetensors", "*.bin"):
        files = sorted(p for p in folder.glob(pattern) if ".index." not in p.name)
        if files:
            return files
    raise UserError(f"{folder}: no weights (*.safetensors or *.bin)")


def open_component(folder: Path) -> dict[str, tuple[Checkpoint, str]]:
    """key -> (open file, key in file) over every weight file of a component folder."""
    index: dict[str, tuple[Checkpoint, str]] = {}
    for path in component_files(folder):
        ckpt = open_checkpoint(path)
        for key in ckpt:
            index[key] = (ckpt, key)
    return index


def _read_tensors(folder: Path, keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    index = open_component(folder)
    return {k: index[k][0].get(k).clone() for k in keys}


# ------------------------------------------------------------------------------------------------------- export

def export_original(pipeline: str | Path, out: str | Path, *, pickle_out: str | Path | None = None,
                    layout: str = "auto", overwrite: bool = False) -> dict[str, Any]:
    """A MagicPosePipeline folder -> one state dict in the original's layout (`model_state-*.th`-compatible).

    stage 2 (a controlnet/ folder present): `model.diffusion_model.`, `appearance_control_model.`,
    `pose_control_model.`, `first_stage_model.`, `cond_stage_model.transformer.` + the LDM buffers; stage 1:
    `control_model.` is the appearance model. Written as safetensors one tensor at a time; `pickle_out` also
    writes a weights-only pickle (that one holds the whole state dict in memory once).
    """
    root = resolve_path(pipeline)
    out = Path(out)
    for path in (out, pickle_out):
        if path is not None and Path(path).exists() and not overwrite:
            raise UserError(f"{path}: already exists (pass --overwrite to replace it)")
    if not (root / "unet").is_dir():
        raise UserError(f"{root}: not a pipeline folder (no unet/)")
    has_cn = (root / "controlnet").is_dir()
    if layout == "auto":
        layout = "stage2" if has_cn else "stage1"
    if layout == "stage2" and not has_cn:
        raise UserError(f"{root}: no controlnet/ folder, so no stage-2 layout (use --layout stage1)")
    names = [("unet", UNET), ("appearance_unet", ACM if layout == "stage2" else CONTROL)]
    if layout == "stage2":
        names.append(("controlnet", POSE))
    names += [("vae", VAE), ("text_encoder", CLIP)]

    entries: dict[str, LazyTensor] = {}
    counts = {}
    for name, prefix in names:
        folder = root / name
        if not folder.is_dir():
            raise UserError(f"{root}: no {name}/ folder")
        config = _folder_config(folder, name)
        index = open_component(folder)
        kind = KIND[name]
        ours = {k.removeprefix("text_model.") if kind == "clip" else k for k in index}
        expected = {k.removeprefix("text_model.") for k in ldm.meta_model(kind, config).state_dict()}
        if ours != expected:
            wrong = sorted(ours ^ expected)
            raise UserError(f"{folder}: weights do not match its config.json: {ldm._few(wrong)}")
        counts[name] = 0
        for key, (ckpt, file_key) in index.items():
            model_key = key.removeprefix("text_model.") if kind == "clip" else key
            name_ldm = ldm.ldm_key(kind, model_key, config)
            if name_ldm is None:
                continue  # the appearance UNet's final conv: the original has none
            shape = ldm.ldm_shape(kind, model_key, ckpt.shape(file_key))
            dtype = _dtype_of(ckpt, file_key)
            entries[prefix + name_ldm] = LazyTensor(dtype, shape, _loader(ckpt, file_key, shape),
                                                    done=lambda c=ckpt, k=file_key: c.release([k]))
            counts[name] += 1
        if name == "appearance_unet":
            hint_channels = 3
            if has_cn:
                hint_channels = _folder_config(root / "controlnet", "controlnet").get("conditioning_channels", 3)
            for key, value in ldm.ldm_hint_block_placeholder(hint_channels, config["block_out_channels"][0]).items():
                entries[prefix + key] = LazyTensor(value.dtype, tuple(value.shape), lambda v=value: v)
    scheduler = root / "scheduler" / "scheduler_config.json"
    scheduler_config = json.loads(scheduler.read_text()) if scheduler.is_file() else {}
    for key, value in ldm.ldm_schedule_buffers(scheduler_config).items():
        entries[key] = LazyTensor(value.dtype, tuple(value.shape), lambda v=value: v)
    max_len = _folder_config(root / "text_encoder", "text_encoder").get("max_position_embeddings", 77)
    position_ids = torch.arange(max_len).unsqueeze(0)
    entries[CLIP + ldm.CLIP_POSITION_IDS] = LazyTensor(torch.int64, (1, max_len), lambda: position_ids)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    write_safetensors_streaming(tmp, entries, {"format": "pt", "layout": f"magicdance-{layout}"})
    tmp.replace(out)
    if pickle_out is not None:
        from safetensors.torch import load_file

        state = load_file(str(out))
        tmp = Path(pickle_out).with_name(Path(pickle_out).name + ".partial")
        torch.save(state, tmp)
        del state
        tmp.replace(pickle_out)
    return {"layout": layout, "tensors": len(entries), "components": counts, "out": str(out),
            "pickle": str(pickle_out) if pickle_out else None}


def _folder_config(folder: Path, name: str) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise UserError(f"{folder}: no config.json")
    config = json.loads(path.read_text())
    if KIND.get(name) == "clip":
        from transformers import CLIPTextConfig

        return CLIPTextConfig.from_dict(config).to_dict()
    return config


def _dtype_of(ckpt: Checkpoint, key: str) -> torch.dtype:
    if ckpt._tensors is not None:
        return ckpt.get(key).dtype
    names = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
             "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
             "BOOL": torch.bool}
    return names[ckpt._file.get_slice(key).get_dtype()]


def _loader(ckpt: Checkpoint, key: str, shape: tuple[int, ...]):
    return lambda: ckpt.get(key).reshape(shape)


__all__ = ["convert_checkpoint", "export_original", "plan_checkpoint", "check_plan", "load_pickle", "Report"]
