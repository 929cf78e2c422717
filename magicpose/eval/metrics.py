"""Per-frame metrics of the TikTok protocol: L1, SSIM, PSNR, and LPIPS inputs, in `disco` and `fixed` form.

Frames are `h w 3` uint8 RGB arrays (what the PNG files hold). `disco` reproduces the numbers of DisCo's
evaluation code as MagicPose used it (`tool/metrics/ssim_l1_lpips_psnr.py`), quirks included; `fixed`
corrects the quirks. The per-frame values are averaged over every frame of every video (arithmetic mean).

| metric | disco                                                     | fixed                                     |
|--------|-----------------------------------------------------------|-------------------------------------------|
| L1     | mean |a − b| on the 0-255 scale, divided by h·w (≈ 1e-4)  | mean |a − b| on the [0, 1] scale          |
| PSNR   | MSE of the uint8 difference, which wraps modulo 256 (the  | MSE in float64; 10·log10(255² / MSE)      |
|        | subtraction and the square overflow): ≈ 29 dB for any     |                                           |
|        | real pair; MSE = 0 → 100 dB (also for pairs whose every   | identical frames → `PSNR_CAP` = 100 dB,   |
|        | difference is a multiple of 16), no cap otherwise         | every frame capped at 100 dB              |
| SSIM   | skimage `structural_similarity` on OpenCV grayscale, 7x7 uniform window, data range 255 (both) |    |
| LPIPS  | VGG LPIPS fed [0, 1] images (lpips expects [-1, 1])       | fed [-1, 1] (`normalize=True`)            |

Both forms of SSIM are the same: the protocol's SSIM has no known defect.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

ProtocolName = Literal["disco", "fixed"]
PROTOCOL_NAMES: tuple[ProtocolName, ...] = ("disco", "fixed")
ALL_METRICS = ("l1", "ssim", "psnr", "lpips", "fid", "fid_vid", "fvd")  # the protocol's, in report order
DEFAULT_SIZE = 256  # DisCo's frame side
CLIP_LENGTH = 16  # frames per FID-VID / FVD sample
PSNR_CAP = 100.0  # dB; DisCo's value for MSE = 0, kept by `fixed` so that means stay finite
PEAK = 255.0


@dataclass(frozen=True)
class Protocol:
    """The switches that differ between `disco` and `fixed` (written to the metrics JSON)."""

    name: ProtocolName
    psnr_uint8_overflow: bool  # MSE of the wrapped uint8 difference (MagicPose's copy of DisCo's code)
    l1_divide_by_hw: bool  # L1 on 0-255 divided by h·w instead of a mean on [0, 1]
    lpips_input_range: Literal["[0, 1]", "[-1, 1]"]
    psnr_cap: float | None  # upper bound of a frame's PSNR (None: only MSE = 0 maps to 100 dB)
    ssim: str = "skimage structural_similarity, OpenCV RGB->gray uint8, win 7, data_range 255"

    @property
    def lpips_normalize(self) -> bool:
        """lpips' `normalize` flag for [0, 1] inputs: True maps them to [-1, 1] as the network expects."""
        return self.lpips_input_range == "[-1, 1]"

    def record(self) -> dict:
        return asdict(self)


PROTOCOLS: dict[str, Protocol] = {
    "disco": Protocol("disco", True, True, "[0, 1]", psnr_cap=None),
    "fixed": Protocol("fixed", False, False, "[-1, 1]", psnr_cap=PSNR_CAP),
}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {name!r}")
    return PROTOCOLS[name]


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (the protocol reads 8-bit files), got {a.dtype} and {b.dtype}")
    if a.shape != b.shape or a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"frames must be two h w 3 arrays of one shape, got {a.shape} and {b.shape}")
    return a, b


def l1(a: np.ndarray, b: np.ndarray, protocol: ProtocolName = "fixed") -> float:
    """L1 of one frame pair: `fixed` mean |a − b| in [0, 1]; `disco` mean |a − b| (0-255) / (h·w)."""
    a, b = _pair(a, b)
    err = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())
    if get_protocol(protocol).l1_divide_by_hw:
        return err / float(a.shape[0] * a.shape[1])
    return err / PEAK


def mse(a: np.ndarray, b: np.ndarray, protocol: ProtocolName = "fixed") -> float:
    """Mean squared error on the 0-255 scale; `disco` computes it in uint8 arithmetic (wrapping mod 256)."""
    a, b = _pair(a, b)
    if get_protocol(protocol).psnr_uint8_overflow:
        # The quirk, on purpose: uint8 - uint8 wraps, and squaring a uint8 wraps again.
        with np.errstate(over="ignore"):
            return float(np.mean((a - b) ** 2))
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def psnr(a: np.ndarray, b: np.ndarray, protocol: ProtocolName = "fixed") -> float:
    """PSNR in dB with peak 255; MSE = 0 gives `PSNR_CAP` (DisCo's convention, kept by `fixed`).

    `disco` does not cap otherwise: one channel of one pixel off by 1 in a 256² frame gives 101.1 dB.
    `fixed` caps every frame at 100 dB; for uint8 frames only identical or nearly identical ones reach it.
    """
    error = mse(a, b, protocol)
    if error == 0.0:
        return PSNR_CAP
    value = 20.0 * float(np.log10(PEAK / np.sqrt(error)))
    cap = get_protocol(protocol).psnr_cap
    return value if cap is None else min(cap, value)


def gray(frame: np.ndarray) -> np.ndarray:
    """OpenCV's RGB -> gray (0.299 R + 0.587 G + 0.114 B, fixed-point, uint8): DisCo's BGR2GRAY on BGR."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of the grayscale frames (skimage defaults: 7x7 uniform window, data range 255 for uint8)."""
    from skimage.metrics import structural_similarity

    a, b = _pair(a, b)
    return float(structural_similarity(gray(a), gray(b)))


def frame_scores(a: np.ndarray, b: np.ndarray, protocol: ProtocolName) -> dict[str, float]:
    """L1, PSNR and SSIM of one pair (LPIPS needs a network: see `protocol.py`)."""
    return {"l1": l1(a, b, protocol), "psnr": psnr(a, b, protocol), "ssim": ssim(a, b)}


def to_unit_tensor(frames: np.ndarray):
    """`n h w 3` uint8 -> `n 3 h w` float32 in [0, 1] (torchvision's ToTensor, which DisCo uses)."""
    import torch

    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    return torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2))).float().div_(255.0)
