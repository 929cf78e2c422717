"""Checkpoint interop with the original code: SD-1.5 / ControlNet / MagicDance (LDM layout) <-> our components, and
AnimateDiff motion modules (`mm_sd_v15*.ckpt`) <-> a diffusers MotionAdapter (`magicpose.convert.animatediff`).

    from magicpose.convert import convert_checkpoint, export_original
    convert_checkpoint("model_state-110000.th", "pretrained_weights/MagicPose")          # -> MagicPosePipeline folder
    export_original("pretrained_weights/MagicPose", "model_state-export.safetensors")     # -> the original's layout
    convert_motion_module("mm_sd_v15_v2.ckpt", "pretrained_weights/mm_sd_v15_v2")         # -> MotionAdapter folder

CLI: `magicpose convert {magicdance,controlnet,sd,export,motion-module}` (`magicpose.commands.convert`). Importing
this package is cheap (the CLI imports it at start-up); torch and diffusers load on first use of a function.
"""

from __future__ import annotations

_EXPORTS = {
    "Report": "magicpose.convert.magicdance",
    "check_plan": "magicpose.convert.magicdance",
    "convert_checkpoint": "magicpose.convert.magicdance",
    "export_original": "magicpose.convert.magicdance",
    "plan_checkpoint": "magicpose.convert.magicdance",
    "convert_motion_module": "magicpose.convert.animatediff",
    "load_motion_checkpoint": "magicpose.convert.animatediff",
    "save_original_motion_checkpoint": "magicpose.convert.animatediff",
    "load_pickle": "magicpose.convert.safe_load",
    "open_checkpoint": "magicpose.convert.safe_load",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'magicpose.convert' has no attribute {name!r}")
