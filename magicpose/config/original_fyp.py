"""The original Follow-Your-Pose YAMLs (`configs/pose_train.yaml`, `configs/pose_sample.yaml`) -> our configs.

The original's scripts pass a YAML's keys to `main(**config)`: `pretrained_model_path`, `output_dir`, `train_data.*`,
`validation_data.*`, `learning_rate`, `max_train_steps`, ... (the reference report, §3.2 and §4.2). Our configs say the
same in sections (`model`, `data`, `train`, `inference`, `trainer`) over a shipped base, so a converted training YAML is
`base: .../configs/followyourpose/stage2.yaml` plus what the original set, and a converted sampling YAML is over
`inference.yaml`. A key that cannot be mapped is listed with the reason (`Conversion.unmapped`); a key whose value is
already our behaviour (`scale_lr: False`, `use_8bit_adam: False`, `lr_scheduler: constant`) maps to nothing.

The loader refuses an original YAML with a pointer to `magicpose convert fyp-config` (`original_signature`).
Pure data in, data out: no torch, no file system apart from `read_original`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from magicpose.errors import UserError
from magicpose.paths import REPO_ROOT

DEFAULT_PIPELINE = "pretrained_weights/FollowYourPose"
SIGNATURE = ("pretrained_model_path", "validation_data", "train_data")  # keys no config of ours has
TRAIN_MARKERS = ("train_data", "max_train_steps", "learning_rate", "trainable_modules", "checkpointing_steps")
BASES = {"train": REPO_ROOT / "configs/followyourpose/stage2.yaml",
         "sample": REPO_ROOT / "configs/followyourpose/inference.yaml"}
HDVILA_CSVS = {"train": "caption_rm2048_train.csv", "val": "caption_2048_val_new.csv"}
SD_PARTS = ("unet", "vae", "text_encoder", "tokenizer")
CHECKPOINT_NAME = "followyourpose_checkpoint-1000"
SECTIONS = ("base", "system", "model", "data", "train", "inference", "trainer", "device", "run_dir")  # written order
PRECISION = {"no": ("32-true", "float32"), "fp16": ("16-mixed", "float16"), "bf16": ("bf16-mixed", "bfloat16")}
NO_INVERSION = "DDIM inversion is not built (the original's crashes without a skeleton and is off by default)"
NOT_AT_INFERENCE = "no effect when sampling (also in the original)"

# original key -> (our key(s), type) for keys that map one to one
TRAIN_DIRECT: dict[str, tuple[tuple[str, ...], Callable]] = {
    "output_dir": (("run_dir",), lambda v: _clean(v)),
    "learning_rate": (("train.lr",), float),
    "max_train_steps": (("train.max_steps",), int),
    "checkpointing_steps": (("train.checkpoint_every",), int),
    "validation_steps": (("train.sample_every",), int),
    "train_batch_size": (("data.batch_size",), int),
    "gradient_accumulation_steps": (("train.accumulate_grad_batches",), int),
    "max_grad_norm": (("train.grad_clip",), float),
    "adam_weight_decay": (("train.weight_decay",), float),
    "trainable_modules": (("train.trainable_modules",), lambda v: [str(x) for x in v]),
    "gradient_checkpointing": (("train.gradient_checkpointing",), bool),
    "seed": (("train.seed", "inference.seed"), int),
    "skeleton_path": (("train.sample_skeleton",), lambda v: _clean(v)),
    "train_data.n_sample_frames": (("data.frames",), int),
    "train_data.sample_frame_rate": (("data.stride",), int),
    "validation_data.prompts": (("train.sample_prompts",), lambda v: [str(x) for x in v]),
    "validation_data.skeleton_path": (("train.sample_skeleton",), lambda v: _clean(v)),
}
SAMPLE_DIRECT: dict[str, tuple[tuple[str, ...], Callable]] = {
    "seed": (("inference.seed",), int),
    "validation_data.prompts": (("inference.prompts",), lambda v: [str(x) for x in v]),
}
BOTH_DIRECT: dict[str, tuple[tuple[str, ...], Callable]] = {
    "validation_data.video_length": (("inference.frames",), int),
    "validation_data.num_inference_steps": (("inference.steps",), int),
    "validation_data.guidance_scale": (("inference.guidance_scale",), float),
    "validation_data.frame_skeleton_stride": (("inference.stride",), int),
}
# keys that never map, and why
NEVER = {
    "enable_xformers_memory_efficient_attention": "attention runs on PyTorch SDPA (flash / memory-efficient kernels "
                                                  "on CUDA); no switch needed",
    "validation_data.use_inv_latent": NO_INVERSION,
    "validation_data.num_inv_steps": NO_INVERSION,
    "validation_data.dataset_set": "the original ignored it (swallowed by **kwargs)",
    "train_data.prompt": "the original's HD-VILA reader ignores it (captions come from the CSV)",
    "train_data.sample_start_idx": "the original's HD-VILA reader ignores it (windows start at random)",
}
SAMPLE_NEVER = {
    "output_dir": "fyp-sample writes where --out says (the original redirected it to the checkpoint's folder)",
    "skeleton_path": "pass --skeleton PATH to magicpose fyp-sample",
    "validation_data.skeleton_path": "pass --skeleton PATH to magicpose fyp-sample",
    "train_batch_size": NOT_AT_INFERENCE,
    "validation_steps": NOT_AT_INFERENCE,
    "gradient_checkpointing": NOT_AT_INFERENCE,
}


@dataclass
class Conversion:
    kind: str  # train or sample
    config: dict[str, Any] = field(default_factory=dict)  # our YAML as nested dicts, `base:` first
    unmapped: list[tuple[str, str]] = field(default_factory=list)  # (original key, why it is not mapped)
    notes: list[str] = field(default_factory=list)  # how a mapped key differs from the original's meaning
    weights: dict[str, str] = field(default_factory=dict)  # checkpoint / sd / pose_encoder / pipeline for the weights

    def set(self, dotted: str, value: Any) -> None:
        node = self.config
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    def ordered(self) -> dict[str, Any]:
        """`config` with its sections in the order of our shipped configs."""
        return {key: self.config[key] for key in sorted(self.config, key=SECTIONS.index)}

    def convert_weights_command(self) -> str:
        """The one command that turns the release into the pipeline folder the converted config loads."""
        w = self.weights
        return (f"magicpose convert followyourpose --checkpoint {w['checkpoint']} --pose-encoder {w['pose_encoder']} "
                f"--sd {w['sd']} --out {w['pipeline']}")


def original_signature(data: Mapping) -> list[str]:
    """The top-level keys that mark an original Follow-Your-Pose YAML (empty for one of ours)."""
    return [key for key in SIGNATURE if key in data]


def read_original(path: Path) -> dict[str, Any]:
    """An original YAML as plain data (OmegaConf's reader: `3e-5` is a float there, as in the original's)."""
    from omegaconf import DictConfig, OmegaConf

    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        data = OmegaConf.load(path)
    except Exception as err:  # yaml errors: say where
        raise UserError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from err
    if not isinstance(data, DictConfig) or not original_signature(data):
        raise UserError(f"{path}: not an original Follow-Your-Pose config (no {' / '.join(SIGNATURE)} key)")
    return OmegaConf.to_container(data, resolve=False)


def flatten(data: Mapping) -> dict[str, Any]:
    """`{"a": 1, "train_data": {"b": 2}}` -> `{"a": 1, "train_data.b": 2}` (the original nests one level)."""
    flat = {}
    for key, value in data.items():
        if key in ("train_data", "validation_data") and isinstance(value, Mapping):
            flat.update({f"{key}.{sub}": v for sub, v in value.items()})
        else:
            flat[str(key)] = value
    return flat


def convert_original(data: Mapping, out: Path, kind: str | None = None,
                     pipeline: str = DEFAULT_PIPELINE) -> Conversion:
    """Our config (and the unmapped keys) for an original YAML, to be written at `out` (its `base:` is relative to
    it). `kind`: train / sample; None: train when the YAML has training keys."""
    kind = kind or ("train" if any(key in data for key in TRAIN_MARKERS) else "sample")
    conv = Conversion(kind)
    conv.config["base"] = _relative(BASES[kind], out.parent)
    flat = flatten(data)
    _weights(conv, flat, pipeline)
    direct = {**BOTH_DIRECT, **(TRAIN_DIRECT if kind == "train" else SAMPLE_DIRECT)}
    never = {**NEVER, **(SAMPLE_NEVER if kind == "sample" else {})}
    handled = {"pretrained_model_path", "resume_from_checkpoint"}
    for special in SPECIAL:
        handled |= special(conv, flat)
    for key, value in flat.items():
        if key in handled:
            continue
        if key in direct:
            targets, cast = direct[key]
            for target in targets:
                conv.set(target, _cast(cast, value, key))
        else:
            conv.unmapped.append((key, never.get(key, "not a key of the original's configs")))
    return conv


def _relative(target: Path, start: Path) -> str:
    try:
        return os.path.relpath(target, start.resolve())
    except ValueError:  # another drive (Windows): an absolute path still works
        return str(target)


def _cast(cast: Callable, value: Any, key: str) -> Any:
    try:
        return cast(value)
    except (TypeError, ValueError):
        raise UserError(f"{key}: {value!r} is not a valid value") from None


def _clean(path: Any) -> str:
    return str(path).removeprefix("./")


# ----- keys that need more than a renaming ---------------------------------------------------------------------
def _weights(conv: Conversion, flat: dict[str, Any], pipeline: str) -> None:
    """SD-1.4 (`pretrained_model_path`) and the release (`resume_from_checkpoint`, else the released folder beside
    SD). Each released file is named as a second choice after its part of `pipeline` (the first that exists is used;
    a released file converts once on first use, see `magicpose.convert.cache`)."""
    sd = _clean(flat.get("pretrained_model_path", "pretrained_weights/stable-diffusion-v1-4"))
    resume = flat.get("resume_from_checkpoint")
    from_release = bool(resume) and resume != "latest"
    checkpoint = _clean(resume) if from_release else str(Path(sd).parent / CHECKPOINT_NAME)
    encoder = str(Path(checkpoint).parent / "pose_encoder.pth")
    conv.weights = {"sd": sd, "checkpoint": checkpoint, "pose_encoder": encoder, "pipeline": pipeline}
    if resume == "latest":
        conv.unmapped.append(("resume_from_checkpoint", "the original's accelerate states cannot resume here; "
                                                        "continue our own runs with `magicpose fit --resume`"))
    if conv.kind == "sample":
        conv.set("model.pretrained", [pipeline, checkpoint])
        conv.notes.append(f"model.pretrained: {pipeline} if converted, else {checkpoint} (converted once on first use, "
                          "with stable-diffusion-v1-4/ and pose_encoder.pth beside it)")
        return
    for part in SD_PARTS:
        conv.set(f"model.paths.{part}", f"{sd}/{part}")
    if from_release:  # the released UNet (temporal layers trained) instead of SD's
        conv.set("model.paths.unet", [f"{pipeline}/unet", checkpoint])
        conv.notes.append("resume_from_checkpoint: training starts from the released UNet (converted); its optimizer "
                          "state and step count are not carried over")
    conv.set("model.paths.pose_adapter", [f"{pipeline}/pose_adapter", checkpoint if from_release else encoder])
    conv.notes.append("model.paths.pose_adapter: the released adapter, as the original (its UNet constructor loaded "
                      "pose_encoder.pth); used for validation videos and kept in the exported pipeline")


def needs_manual_conversion(conv: Conversion) -> bool:
    """True when the first-use conversion cannot find SD beside the released checkpoint (the release's layout)."""
    return Path(conv.weights["sd"]).parent != Path(conv.weights["checkpoint"]).parent


def _precision(conv: Conversion, flat: dict[str, Any]) -> set[str]:
    if "mixed_precision" not in flat:
        return set()
    value = "no" if flat["mixed_precision"] in (False, None) else str(flat["mixed_precision"])
    if value not in PRECISION:
        conv.unmapped.append(("mixed_precision", f"{value!r} is not one of {', '.join(PRECISION)}"))
    elif conv.kind == "train":
        conv.set("trainer.precision", PRECISION[value][0])
    else:
        conv.set("model.dtype", PRECISION[value][1])
    return {"mixed_precision"}


def _sizes(conv: Conversion, flat: dict[str, Any]) -> set[str]:
    """`width` / `height` -> our square `size` (data for training clips, inference for samples)."""
    handled = set()
    for section, target in (("train_data", "data.size"), ("validation_data", "inference.size")):
        keys = [k for k in (f"{section}.width", f"{section}.height") if k in flat]
        values = {int(flat[k]) for k in keys}
        if len(values) == 1 and not (section == "train_data" and conv.kind == "sample"):
            conv.set(target, values.pop())
        elif keys:
            why = ("ours makes square frames; set " + target) if len(values) > 1 else NOT_AT_INFERENCE
            conv.unmapped.extend((k, why) for k in keys)
        handled.update(keys)
    return handled


def _optimizer(conv: Conversion, flat: dict[str, Any]) -> set[str]:
    """AdamW betas / eps, the LR schedule and friends: mapped where ours does the same."""
    handled = {k for k in ("adam_beta1", "adam_beta2", "adam_epsilon", "scale_lr", "use_8bit_adam", "lr_scheduler",
                           "lr_warmup_steps") if k in flat}
    if conv.kind == "sample":
        conv.unmapped.extend((k, NOT_AT_INFERENCE) for k in sorted(handled))
        return handled
    if "adam_beta1" in flat or "adam_beta2" in flat:
        conv.set("train.betas", [float(flat.get("adam_beta1", 0.9)), float(flat.get("adam_beta2", 0.999))])
    if "adam_epsilon" in flat and float(flat["adam_epsilon"]) != 1e-8:
        conv.unmapped.append(("adam_epsilon", "ours is AdamW's default 1e-8"))
    if flat.get("scale_lr"):
        conv.unmapped.append(("scale_lr", "the LR is not scaled by batch size here: multiply train.lr yourself"))
    if flat.get("use_8bit_adam"):
        conv.unmapped.append(("use_8bit_adam", "8-bit Adam (bitsandbytes) is not built; AdamW in fp32"))
    _schedule(conv, flat)
    return handled


def _schedule(conv: Conversion, flat: dict[str, Any]) -> None:
    schedule, warmup = str(flat.get("lr_scheduler", "constant")), int(flat.get("lr_warmup_steps", 0))
    if schedule == "constant_with_warmup":
        conv.set("train.warmup_steps", warmup)
    elif schedule != "constant":
        conv.unmapped.append(("lr_scheduler", f"{schedule!r}: ours is constant after a linear warm-up"))
    elif warmup:
        conv.unmapped.append(("lr_warmup_steps", "the original's constant schedule ignores it"))


def _train_data(conv: Conversion, flat: dict[str, Any]) -> set[str]:
    """The original reads HD-VILA: `data.layout: hdvila`, the CSV named by `dataset_set`, the root from `video_path`."""
    if conv.kind == "sample":
        keys = {k for k in ("train_data.video_path", "train_data.dataset_set") if k in flat}
        conv.unmapped.extend((k, NOT_AT_INFERENCE) for k in sorted(keys))
        return keys
    conv.set("data.layout", "hdvila")
    split = str(flat.get("train_data.dataset_set", "train"))
    conv.set("data.csv", HDVILA_CSVS.get(split, HDVILA_CSVS["train"]))
    if split not in HDVILA_CSVS:
        conv.unmapped.append(("train_data.dataset_set", f"{split!r} is not train or val; data.csv is the train CSV"))
    conv.set("data.root", _clean(flat.get("train_data.video_path", "dataset/hdvila")))
    conv.notes.append("data.root: must hold part_<id>/video_clips/ and the CSV (the original hard-coded its root in "
                      "hdvila.py and ignored train_data.video_path)")
    return {k for k in ("train_data.video_path", "train_data.dataset_set") if k in flat}


SPECIAL: tuple[Callable[[Conversion, dict[str, Any]], set[str]], ...] = (_precision, _sizes, _optimizer, _train_data)
