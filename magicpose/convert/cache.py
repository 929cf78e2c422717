"""The originals' single files where a folder is expected: converted once, strictly, into a cache folder.

Any `model.paths.<name>` or `model.pretrained` of either system may name a file the original projects released
(`control_sd15_ini.ckpt`, `control_v11p_sd15_openpose.pth`, `model_state-10000.th`, `model_state-110000.th`, an SD
`.ckpt` / `.safetensors`, Follow-Your-Pose's `followyourpose_checkpoint-1000/` or its `pytorch_model.bin`, and
`pose_encoder.pth`, AnimateDiff's `mm_sd_v15*.ckpt` motion modules under `model.paths.motion_adapter`).
`convert_sources` converts each such file once, with the strict converters of this package
(every key converted or dropped for a stated reason), and returns the spec with folders in its place:

* what the file holds is read from its keys, not its name (`detect`), and a file that cannot give the component it
  is named for is refused before any conversion (a motion module anywhere but `paths.motion_adapter`, or anything
  else there);
* the cache is `$MAGICPOSE_CACHE`, else `.converted/` beside the file (e.g. `pretrained_weights/.converted/`), else
  `~/.cache/magicpose/converted` when that folder cannot be written; one folder per file, keyed by its name, size
  and modification time (`<stem>-<size>-<mtime>/`), so a replaced file converts again and a moved cache is reused;
* a folder appears complete or not at all (the converters write beside it and rename), and a lock file makes
  processes that start together (DDP ranks) convert once and wait for each other;
* each conversion prints a line before and after (it takes minutes for a 9 GB checkpoint) and names the cache
  folder; a reused conversion says so in one line.

A list of alternatives (`paths.unet: [a diffusers folder, a released file]`) is resolved here too: the first that
exists is used (`magicpose.paths.first_existing`).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from magicpose.convert.followyourpose import CHECKPOINT_FILES
from magicpose.convert.safe_load import open_checkpoint
from magicpose.errors import UserError
from magicpose.paths import first_existing, resolve_path

CACHE_ENV = "MAGICPOSE_CACHE"
# what a file holds -> the components its conversion has
HOLDS = {
    "magicdance": "a MagicDance checkpoint",
    "sd": "a Stable Diffusion checkpoint",
    "controlnet": "a ControlNet checkpoint",
    "followyourpose": "a Follow-Your-Pose checkpoint",
    "pose_encoder": "a Follow-Your-Pose pose encoder",
    "motion_module": "an AnimateDiff motion module",
}
MOTION_COMPONENT = "motion_adapter"  # the only component a motion module converts to


def convert_sources(spec: Any, log: Any = None) -> Any:
    """`spec` (a model spec of either system) with every original file among `paths` / `pretrained` replaced by
    its converted folder and every list of alternatives by its choice. Nothing else changes."""
    log = log or _stderr
    paths = dict(spec.paths)
    for name, value in spec.paths.items():
        if value and _needed(spec, name):
            paths[name] = _resolve(value, f"model.paths.{name}", name, spec.components, log)
    pretrained = spec.pretrained
    if pretrained:
        pretrained = _resolve(pretrained, "model.pretrained", None, spec.components, log)
    return replace(spec, paths=paths, pretrained=pretrained)


def _needed(spec: Any, name: str) -> bool:
    """Components the builder will not build are not converted (a 1.4 GB ControlNet for a stage-1 run)."""
    if name == "controlnet" and getattr(spec, "with_controlnet", True) is False:
        return False
    if name == "vae" and getattr(spec, "pixel_space", False):
        return False
    return not (name == "pose_adapter" and getattr(spec, "with_pose_adapter", True) is False)


def _resolve(value: Any, what: str, component: str | None, components: str | None, log: Any) -> Any:
    path = first_existing(value, what)
    if path is None or not path.exists():
        return value  # the builder's own error names it
    source = original_file(path)
    if source is None:
        return str(path)
    folder = converted_folder(source, components, log, component=component, what=what)
    if component is None:
        if not (folder / "unet").is_dir():
            have = sorted(p.name for p in folder.iterdir() if p.is_dir())
            raise UserError(f"{source}: not a whole pipeline ({what}; it converts to {', '.join(have)} only); name it "
                            "under model.paths.<component> instead")
        return str(folder)
    if not (folder / component).is_dir():
        have = sorted(p.name for p in folder.iterdir() if p.is_dir())
        raise UserError(f"{source}: holds no {component} ({what}); it converts to {', '.join(have)}")
    return str(folder / component)


def original_file(path: Path) -> Path | None:
    """The original checkpoint file `path` names, or None for one of our (diffusers) folders."""
    if path.is_file():
        return path
    if (path / "config.json").is_file() or (path / "model_index.json").is_file():
        return None
    for name in CHECKPOINT_FILES:  # an accelerate save_state folder (followyourpose_checkpoint-1000/)
        if (path / name).is_file():
            return path / name
    return None


def _in_checkpoint_folder(source: Path) -> bool:
    """The state-dict file of an accelerate folder: the folder, not the file, is what the user named."""
    return source.name in CHECKPOINT_FILES


def _home(source: Path) -> Path:
    """The folder holding what the user named: the file's, or its checkpoint folder's."""
    return source.parent.parent if _in_checkpoint_folder(source) else source.parent


def cache_folder(source: Path) -> Path:
    """Where `source` converts to: `<cache>/<stem>-<size>-<mtime>` (the stem of the folder for a checkpoint folder)."""
    stat = source.stat()
    stem = source.parent.name if _in_checkpoint_folder(source) else source.stem
    return _cache_root(source) / f"{stem}-{stat.st_size}-{int(stat.st_mtime)}"


def _cache_root(source: Path) -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = _home(source)
    beside = base / ".converted"
    if os.access(beside if beside.exists() else base, os.W_OK):
        return beside
    return Path("~/.cache/magicpose/converted").expanduser()


def converted_folder(source: Path, components: str | None = None, log: Any = None, *, component: str | None = None,
                     what: str | None = None) -> Path:
    """`source` converted (once) into its cache folder: `<folder>/<component>/` for each component it holds.
    `components`: the component configs the weights go into (None: SD-1.5's, `configs/models/sd15`).
    `what` (the config key, e.g. `model.paths.unet`) and `component` (None: the whole pipeline): a file that cannot
    give it is refused before it is converted (`check_wanted`)."""
    log = log or _stderr
    folder = cache_folder(source)
    if folder.is_dir():
        log(f"{source}: using its conversion in {folder}")
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _lock(folder.with_name(folder.name + ".lock")):
        if folder.is_dir():  # another process converted it while this one waited
            log(f"{source}: using its conversion in {folder}")
            return folder
        holds = detect(source)
        if what is not None:
            check_wanted(source, holds, component, what)
        log(f"converting {source} ({HOLDS[holds]}) into {folder} (once; later runs reuse it) ...")
        start = time.perf_counter()
        _convert(source, holds, folder, components)
        log(f"converted {source} in {time.perf_counter() - start:.0f} s -> {folder}")
    return folder


@contextmanager
def _lock(path: Path):
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def detect(source: Path) -> str:
    """What a checkpoint file holds, from its keys (see `HOLDS`)."""
    from magicpose.convert.animatediff import looks_like_motion_module
    from magicpose.convert.magicdance import ACM, CONTROL, UNET

    ckpt = open_checkpoint(source)
    try:
        keys = ckpt.keys()
    finally:
        ckpt.close()
    if any("attn_temp." in k or k.startswith("skeleton_adapter.") for k in keys):
        return "followyourpose"
    if looks_like_motion_module(keys):
        return "motion_module"
    if keys and all(k.startswith(("conv_in.", "body.")) for k in keys):
        return "pose_encoder"
    has_unet = any(k.startswith(UNET) for k in keys)
    if any(k.startswith(ACM) for k in keys) or (has_unet and any(k.startswith(CONTROL) for k in keys)):
        return "magicdance"
    if has_unet:
        return "sd"
    if any("zero_convs." in k for k in keys):
        return "controlnet"
    raise UserError(f"{source}: not a checkpoint this package knows (no Stable Diffusion UNet, ControlNet, MagicDance, "
                    "Follow-Your-Pose or AnimateDiff motion-module keys)")


def check_wanted(source: Path, holds: str, component: str | None, what: str) -> None:
    """A motion module converts to `motion_adapter/` only, and only a motion module does: say so before converting
    (an SD checkpoint named as the motion adapter would otherwise convert for minutes and then be refused)."""
    if holds == "motion_module" and component != MOTION_COMPONENT:
        raise UserError(f"{source}: {HOLDS[holds]} ({what}); it converts to {MOTION_COMPONENT} only: name it under "
                        f"model.paths.{MOTION_COMPONENT}")
    if component == MOTION_COMPONENT and holds != "motion_module":
        raise UserError(f"{source}: {HOLDS[holds]}, not an AnimateDiff motion module ({what}: mm_sd_v15_v2.ckpt "
                        "or a MotionAdapter folder)")


def _convert(source: Path, holds: str, folder: Path, components: str | None) -> None:
    from magicpose.convert.followyourpose import SD_CONFIGS, convert_followyourpose, convert_pose_encoder
    from magicpose.convert.magicdance import convert_checkpoint

    if holds in ("magicdance", "sd"):
        convert_checkpoint(source, folder, holds, components=components)
    elif holds == "controlnet":
        partial = folder.with_name(folder.name + ".partial-dir")
        shutil.rmtree(partial, ignore_errors=True)
        convert_checkpoint(source, partial / "controlnet", "controlnet", components=components, overwrite=True)
        partial.rename(folder)
    elif holds == "motion_module":
        _convert_motion_module(source, folder, components)
    elif holds == "pose_encoder":
        convert_pose_encoder(source, folder, components=components or SD_CONFIGS)
    else:
        # the release's layout: stable-diffusion-v1-4/ and pose_encoder.pth beside the checkpoint folder
        release = _home(source)
        sd = release / "stable-diffusion-v1-4"
        encoder = release / "pose_encoder.pth"
        convert_followyourpose(source, folder, sd=sd if sd.is_dir() else None,
                               pose_encoder=encoder if encoder.is_file() else None, components=components or SD_CONFIGS)


def _convert_motion_module(source: Path, folder: Path, components: str | None) -> None:
    """-> `<folder>/motion_adapter/`; heads and norm groups (which the file cannot show) from the components'
    `motion_adapter/` config when there is one, else AnimateDiff's."""
    from magicpose.convert.animatediff import convert_motion_module

    defaults = resolve_path(components) / MOTION_COMPONENT if components else None
    partial = folder.with_name(folder.name + ".partial-dir")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        convert_motion_module(source, partial / MOTION_COMPONENT,
                              defaults=defaults if defaults is not None and defaults.is_dir() else None)
        partial.rename(folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
