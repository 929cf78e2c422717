"""Running the feature networks on frames and clips, with the protocol's pre-processing.

Frames arrive as `n h w 3` uint8 RGB (already at the protocol size, 256²). Pre-processing per network:

* Inception (FID): [0, 1] floats (ToTensor); the network resizes to 299 itself (bilinear), as pytorch-fid.
* LPIPS: [0, 1] floats; `normalize` maps them to [-1, 1] (the `fixed` protocol) or not (`disco`).
* 3D ResNet-50 (FID-VID): each frame resized to 112² with PIL bicubic on float channels, clipped to
  [0, 255] and *not* re-quantised (clean-fid's "PIL bicubic" resizer, which DisCo's video datasets use),
  minus the per-channel mean; `n 3 16 112 112`.
* I3D (FVD): the same resize to 224², then x / 127.5 − 1; `n 3 16 224 224`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from magicpose.eval.metrics import to_unit_tensor
from magicpose.eval.networks.resnet3d import MEAN as RESNET3D_MEAN


def resize_float(frame: np.ndarray, size: int) -> np.ndarray:
    """`h w 3` uint8 -> `size size 3` float32 (0-255), PIL bicubic per channel in float mode, clipped."""
    channels = []
    for c in range(3):
        image = Image.fromarray(np.ascontiguousarray(frame[..., c], dtype=np.float32), mode="F")
        resized = np.asarray(image.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
        channels.append(resized.clip(0, 255))
    return np.stack(channels, -1)


def _batches(count: int, batch_size: int) -> list[slice]:
    return [slice(i, min(i + batch_size, count)) for i in range(0, count, batch_size)]


@torch.no_grad()
def inception_features(net: torch.nn.Module, frames: np.ndarray, batch_size: int, device: torch.device) -> np.ndarray:
    """`n h w 3` uint8 -> `n 2048` float64 pool3 features."""
    out = [net(to_unit_tensor(frames[s]).to(device)).double().cpu().numpy() for s in _batches(len(frames), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 2048))


@torch.no_grad()
def lpips_distances(
    net: torch.nn.Module, pred: np.ndarray, gt: np.ndarray, normalize: bool, batch_size: int, device: torch.device
) -> list[float]:
    """LPIPS of each (pred, gt) frame pair; `normalize`: [0, 1] -> [-1, 1] before the network."""
    values: list[float] = []
    for s in _batches(len(pred), batch_size):
        a, b = to_unit_tensor(pred[s]).to(device), to_unit_tensor(gt[s]).to(device)
        values += net(a, b, normalize=normalize).double().cpu().tolist()
    return values


def video_inputs(frames: np.ndarray, kind: str) -> np.ndarray:
    """`t h w 3` uint8 -> `t s s 3` float32 network-ready frames for `kind` ('resnet3d' or 'i3d')."""
    if kind == "resnet3d":
        # Subtract in float64, then round once to float32: the reference does exactly this (a float64 mean).
        return (np.stack([resize_float(f, 112) for f in frames]) - np.float64(RESNET3D_MEAN)).astype(np.float32)
    if kind == "i3d":
        return np.stack([resize_float(f, 224) for f in frames]) / np.float32(127.5) - np.float32(1.0)
    raise ValueError(f"unknown video network {kind!r}")


@torch.no_grad()
def clip_features(
    net: torch.nn.Module,
    frames: np.ndarray,
    clips: Sequence[Sequence[int]],
    batch_size: int,
    device: torch.device,
) -> np.ndarray:
    """Features of each clip (`frames` from `video_inputs`, clips as frame indices) -> `clips d` float64."""
    out = []
    for s in _batches(len(clips), batch_size):
        batch = np.stack([frames[list(clip)] for clip in clips[s]])  # b t h w c
        video = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 4, 1, 2, 3))).float().to(device)
        out.append(net(video).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))
