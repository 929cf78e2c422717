"""The `device:` setting of configs and `--device` flags: `auto`, `cpu`, `cuda`, `cuda:1`, ..."""

from __future__ import annotations

from typing import TYPE_CHECKING

from magicpose.errors import UserError

if TYPE_CHECKING:  # torch loads on first use: command-line start-up stays fast
    import torch


def resolve_device(name: str) -> torch.device:
    """`auto`: CUDA when available, else the CPU; a CUDA device on a machine without CUDA is a `UserError`."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device: {name!r} requested but CUDA is not available on this machine")
    return device
