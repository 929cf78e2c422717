"""Overlapping context windows over the frames of a video, shared by both pipelines (videos of any length).

Each denoising step predicts noise per window of `context_length` frames (consecutive windows share
`context_overlap` frames, the last window ends at the last frame) and blends the windows' predictions per frame with
weights that ramp down towards the window edges; the scheduler then steps every frame at once. Blending predictions
before a (per-element affine) DDIM step equals blending the windows' stepped latents. A window as long as the clip is
a plain single pass. The blend is accumulated in float64 so that frames whose windows agree get exactly that
prediction back.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

WindowPrediction = Callable[[range], torch.Tensor]


def context_windows(num_frames: int, length: int | None, overlap: int) -> list[range]:
    """Frame windows of `length` (all frames when None or >= num_frames), consecutive ones sharing `overlap`."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if length is None or length >= num_frames:
        return [range(num_frames)]
    check_window(length, overlap)
    starts = list(range(0, num_frames - length + 1, length - overlap))
    if starts[-1] + length < num_frames:
        starts.append(num_frames - length)  # the last window ends at the last frame
    return [range(s, s + length) for s in starts]


def check_window(length: int | None, overlap: int) -> None:
    """A usable (context_length, context_overlap) pair: None (no windows), or 1 <= length and 0 <= overlap < length."""
    if length is not None and (length < 1 or not 0 <= overlap < length):
        raise ValueError(f"need 1 <= context_length and 0 <= context_overlap < context_length, got {length}, {overlap}")


def window_weights(length: int, overlap: int) -> torch.Tensor:
    """Per-frame blend weights of one window: 1 in the middle, ramping down over the `overlap` frames at each edge."""
    index = torch.arange(length, dtype=torch.float64)
    ramp = torch.minimum(index + 1, length - index) / (overlap + 1)
    return ramp.clamp(max=1.0)


def blend_windows(predict: WindowPrediction, num_frames: int, length: int | None, overlap: int, dim: int,
                  dtype: torch.dtype | None = None) -> torch.Tensor:
    """`predict(window)` for every window of `context_windows`, blended per frame along axis `dim`.

    `predict` returns the prediction of the frames of one window (`len(window)` along `dim`). One window is returned
    as `predict` gave it (no arithmetic: a single pass stays bit for bit a single pass); several are summed with
    `window_weights` in float64 and divided by each frame's total weight, then cast to `dtype` (default: the
    predictions' dtype).
    """
    windows = context_windows(num_frames, length, overlap)
    if len(windows) == 1:
        return predict(windows[0])
    total = weight = view = None
    for window in windows:
        eps = predict(window)
        if total is None:
            shape = list(eps.shape)
            shape[dim] = num_frames
            total = torch.zeros(shape, dtype=torch.float64, device=eps.device)
            weight = torch.zeros(num_frames, dtype=torch.float64, device=eps.device)
            view = [1] * eps.ndim
            view[dim] = -1
            dtype = dtype or eps.dtype
        w = window_weights(len(window), overlap).to(eps.device)
        total.narrow(dim, window.start, len(window)).add_(eps.double() * w.view(view))
        weight[window.start : window.stop] += w
    return (total / weight.view(view)).to(dtype)
