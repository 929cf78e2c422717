"""`magicpose benchmark flops`, stage 3: what an AnimateDiff motion module adds to the main UNet, and what the
sliding-window scheduler adds on top.

(1) One denoising step's main-UNet pass on F frames (the frames a motion module sees at once: the context length),
    per frame: the frozen SD UNet (`UNet2DConditionModel` on `F c h w`) vs the same UNet with a diffusers
    `MotionAdapter` (`UNetMotionModel.from_unet2d(unet, adapter)` on `1 c F h w`, the text repeated per frame).
    Both are built on the meta device and counted with `sampling.flop_counter()`; the motion modules' share is
    read off the counter's per-module totals and checked against a hand count (`motion_module_flops`).
(2) The window scheduler (`magicpose.pipelines.windows.context_windows`): for a video of N frames and windows of
    L frames sharing O, every window is computed in full, so each output frame costs Σ|window| / N window frames;
    L / (L - O) for long videos. Pure arithmetic, no model.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from magicpose.bench.sampling import TEXT_TOKENS, TIMESTEP, attention_flops, attention_op_flops, flop_counter
from magicpose.errors import UserError
from magicpose.models.components import random_component, unet_scale_factor
from magicpose.paths import resolve_path
from magicpose.pipelines.windows import check_window, context_windows

CONTEXT_LENGTH = 16
CONTEXT_OVERLAP = 4
VIDEO_FRAMES = (16, 64, 256)
MOTION_MODULE = re.compile(r"\.motion_modules\.\d+$")  # a whole motion module in the counter's module names


# --------------------------------------------------------------------------------------------- hand counts


def motion_module_flops(
    spatial: int, frames: int, channels: int, heads: int, layers: int = 1, batch: int = 1
) -> tuple[int, int]:
    """Hand count of one `AnimateDiffTransformer3D` (diffusers' motion module): (all FLOPs, attention FLOPs).

    It attends along time: the `batch·spatial` positions (h·w per video) are the attention batch and the F frames
    the tokens, T = batch·spatial·F tokens of C channels. Linear layers, 2·T·C_in·C_out each: proj_in and proj_out
    (C→C: 2 C²), and per transformer layer two self-attentions (`double_self_attention`, no text) with q, k, v, out
    (8 C²) and a GEGLU feed-forward (C→8C, 4C→C: 12 C²), so 2·T·C²·(2 + 20·layers). Attention, softmax(QKᵀ)V over
    the F frames: 4·(batch·spatial)·heads·F·F·d = 4·T·F·C per self-attention (d = C / heads).
    """
    tokens = batch * spatial * frames
    c = channels
    linear = 2 * tokens * c * c * (2 + layers * (8 + 12))
    attention = layers * 2 * attention_flops(batch * spatial, heads, frames, frames, c // heads)
    return linear + attention, attention


def motion_modules_by_resolution(model: Any, latent_size: int) -> list[tuple[str, int, Any]]:
    """(name, h·w, module) for every motion module of a `UNetMotionModel` at latent side `latent_size`.

    Down block i runs at latent/2^i, the mid block at the lowest resolution, up block i at latent/2^(n-1-i).
    """
    n = len(model.down_blocks)
    found = []

    def add(prefix: str, block: Any, side: int) -> None:
        for i, module in enumerate(getattr(block, "motion_modules", None) or []):
            found.append((f"{prefix}.motion_modules.{i}", side * side, module))

    for i, block in enumerate(model.down_blocks):
        add(f"down_blocks.{i}", block, latent_size >> i)
    add("mid_block", model.mid_block, latent_size >> (n - 1))
    for i, block in enumerate(model.up_blocks):
        add(f"up_blocks.{i}", block, latent_size >> (n - 1 - i))
    return found


def hand_motion_flops(model: Any, latent_size: int, frames: int, batch: int = 1) -> tuple[int, int]:
    """`motion_module_flops` summed over a `UNetMotionModel`'s motion modules: (all, attention)."""
    total = attention = 0
    for _, spatial, module in motion_modules_by_resolution(model, latent_size):
        heads, layers = module.num_attention_heads, len(module.transformer_blocks)
        t, a = motion_module_flops(spatial, frames, module.in_channels, heads, layers, batch)
        total, attention = total + t, attention + a
    return total, attention


# --------------------------------------------------------------------------------------------- the count


def build_meta_motion_unet(components: str | Path, adapter_dir: str | Path | None = None) -> tuple[Any, Any, Any]:
    """(UNet2DConditionModel, MotionAdapter, UNetMotionModel) of a component-config folder, on the meta device."""
    from diffusers import MotionAdapter, UNetMotionModel

    root = resolve_path(components)
    adapter_dir = root / "motion_adapter" if adapter_dir is None else resolve_path(adapter_dir)
    if not (adapter_dir / "config.json").is_file():
        raise UserError(f"{adapter_dir}: no motion-adapter config.json")
    with torch.device("meta"):
        unet = random_component("unet", root / "unet")
        adapter = MotionAdapter.from_config(MotionAdapter.load_config(adapter_dir))
        # load_weights=False: build the motion UNet from the UNet's and the adapter's configs without copying
        # weights (there are none on the meta device); its motion modules have the adapter's shapes.
        motion = UNetMotionModel.from_unet2d(unet, adapter, load_weights=False)
    return unet.eval(), adapter.eval(), motion.eval()


@dataclass
class MotionReport:
    """One denoising step's main-UNet pass on F frames, per frame, without and with the motion module."""

    components: str
    adapter: str
    size: int
    latent_size: int
    frames: int  # F, the frames the motion module attends across (one window)
    adapter_params: int = 0
    unet_params: int = 0
    motion_unet_params: int = 0  # the UNetMotionModel: unet_params + adapter_params
    motion_modules: int = 0
    without_gflop_per_frame: float = 0.0  # UNet2DConditionModel on `F c h w`
    with_gflop_per_frame: float = 0.0  # UNetMotionModel on `1 c F h w`
    motion_gflop_per_frame: float = 0.0  # counted inside the motion modules
    motion_hand_gflop_per_frame: float = 0.0
    motion_attention_gflop_per_frame: float = 0.0  # temporal attention ops counted inside the motion modules
    motion_attention_hand_gflop_per_frame: float = 0.0
    # with - without - motion: the time embedding, which UNetMotionModel runs once per video instead of per frame
    other_gflop_per_frame: float = 0.0
    count_seconds: float = 0.0

    @property
    def ratio(self) -> float:
        return self.with_gflop_per_frame / self.without_gflop_per_frame

    @property
    def motion_share(self) -> float:
        return self.motion_gflop_per_frame / self.with_gflop_per_frame


def count_motion(
    components: str | Path = "configs/models/sd15",
    frames: int = CONTEXT_LENGTH,
    size: int = 512,
    adapter_dir: str | Path | None = None,
) -> MotionReport:
    """Count the main UNet on `frames` frames at `size` px without and with the motion adapter (meta device)."""
    if frames < 1:
        raise UserError(f"frames must be >= 1, got {frames}")
    start = time.perf_counter()
    unet, adapter, motion = build_meta_motion_unet(components, adapter_dir)
    if frames > adapter.config.motion_max_seq_length:
        raise UserError(f"the motion adapter attends over at most {adapter.config.motion_max_seq_length} frames, "
                        f"got {frames}")
    factor = _vae_factor(components)
    if size % (factor * unet_scale_factor(unet)):
        raise UserError(f"--size {size} must be a multiple of {factor * unet_scale_factor(unet)}")
    latent = size // factor
    c = unet.config
    t = torch.tensor(TIMESTEP)
    text = torch.empty(frames, TEXT_TOKENS, c.cross_attention_dim, device="meta")  # already repeated per frame
    batch = torch.empty(frames, c.in_channels, latent, latent, device="meta")
    video = torch.empty(1, c.in_channels, frames, latent, latent, device="meta")

    without, _ = _count(lambda: unet(batch, t, encoder_hidden_states=text, return_dict=False))
    with_, with_modules = _count(lambda: motion(video, t, encoder_hidden_states=text, return_dict=False))
    motion_ops = [ops for name, ops in with_modules.items() if MOTION_MODULE.search(name)]
    counted = sum(sum(ops.values()) for ops in motion_ops)
    counted_attention = sum(attention_op_flops(ops) for ops in motion_ops)
    hand, hand_attention = hand_motion_flops(motion, latent, frames)

    def per_frame(flops: int) -> float:
        return flops / frames / 1e9

    return MotionReport(
        components=str(components),
        adapter=str(adapter_dir or Path(components) / "motion_adapter"),
        size=size,
        latent_size=latent,
        frames=frames,
        adapter_params=sum(p.numel() for p in adapter.parameters()),
        unet_params=sum(p.numel() for p in unet.parameters()),
        motion_unet_params=sum(p.numel() for p in motion.parameters()),
        motion_modules=len(motion_ops),
        without_gflop_per_frame=per_frame(without),
        with_gflop_per_frame=per_frame(with_),
        motion_gflop_per_frame=per_frame(counted),
        motion_hand_gflop_per_frame=per_frame(hand),
        motion_attention_gflop_per_frame=per_frame(counted_attention),
        motion_attention_hand_gflop_per_frame=per_frame(hand_attention),
        other_gflop_per_frame=per_frame(with_ - without - counted),
        count_seconds=time.perf_counter() - start,
    )


def _vae_factor(components: str | Path) -> int:
    """Pixels per latent side of the components' VAE (2 per VAE down block, as `vae_scale_factor`)."""
    from diffusers import AutoencoderKL

    config = AutoencoderKL.load_config(resolve_path(components) / "vae")
    return 2 ** (len(config["block_out_channels"]) - 1)


def _count(fn: Any) -> tuple[int, dict[str, dict[str, int]]]:
    """Total FLOPs of `fn()` (no grad) and the counter's per-module counts (module name -> op -> FLOPs)."""
    with flop_counter() as counter, torch.no_grad():
        fn()
    modules = {
        name: {str(op): int(n) for op, n in ops.items()} for name, ops in counter.get_flop_counts().items()
    }
    return int(counter.get_total_flops()), modules


# --------------------------------------------------------------------------------------------- windows


@dataclass
class WindowOverhead:
    """Frames the window scheduler computes per output frame, for videos of `video_frames` frames."""

    length: int
    overlap: int
    videos: list[dict[str, Any]] = field(default_factory=list)  # num_frames, windows, starts, computed, per_frame

    @property
    def limit(self) -> float:
        """Long videos: a window of `length` frames every `length - overlap` frames."""
        return self.length / (self.length - self.overlap)


def window_overhead(
    video_frames: list[int] | tuple[int, ...] = VIDEO_FRAMES,
    length: int = CONTEXT_LENGTH,
    overlap: int = CONTEXT_OVERLAP,
) -> WindowOverhead:
    """Σ len(window) / num_frames over `context_windows(num_frames, length, overlap)` for every video length."""
    try:
        check_window(length, overlap)
    except ValueError as err:
        raise UserError(str(err)) from None
    if not video_frames or min(video_frames) < 1:
        raise UserError(f"video frame counts must be >= 1, got {list(video_frames)}")
    report = WindowOverhead(length, overlap)
    for n in video_frames:
        windows = context_windows(n, length, overlap)
        computed = sum(len(w) for w in windows)
        report.videos.append(
            {
                "num_frames": n,
                "windows": len(windows),
                "starts": [w.start for w in windows],
                "computed_frames": computed,
                "per_output_frame": computed / n,
            }
        )
    return report


# --------------------------------------------------------------------------------------------- report


def format_motion(
    motion: MotionReport, windows: WindowOverhead | None = None, magicpose_step_gflop: float | None = None
) -> str:
    """The stage-3 section of `benchmark flops`. `magicpose_step_gflop`: our whole Image-CFG step per frame at
    F = `motion.frames` without motion module (from `count_structures`), for the derived whole-step line."""
    m = motion
    lines = [
        f"Motion module (stage 3): main UNet, one denoising step on F={m.frames} frames at {m.size}x{m.size} "
        f"(latent {m.latent_size}x{m.latent_size}), components {m.components} + MotionAdapter {m.adapter} "
        f"({m.adapter_params:,} parameters, {m.motion_modules} motion modules; the UNet has {m.unet_params:,}):",
        "",
        "| main-UNet pass | GFLOP/frame/step | ratio |",
        "|---|---:|---:|",
        f"| without: UNet2DConditionModel on `{m.frames} c h w` | {m.without_gflop_per_frame:,.1f} | 1.000 |",
        f"| with: UNetMotionModel on `1 c {m.frames} h w` | {m.with_gflop_per_frame:,.1f} | {m.ratio:.3f} |",
        f"| of which the motion modules | {m.motion_gflop_per_frame:,.1f} | {m.motion_share:.1%} of *with* |",
        "",
        f"Motion modules counted {m.motion_gflop_per_frame:.2f} GFLOP/frame vs by hand {m.motion_hand_gflop_per_frame:.2f} "
        "(per module and transformer layer, T = h·w·F tokens of C channels: linears 2·T·C²·(2 + 20), two temporal "
        f"self-attentions 4·(h·w)·heads·F²·d each); of it temporal attention counted {m.motion_attention_gflop_per_frame:.2f} vs "
        f"by hand {m.motion_attention_hand_gflop_per_frame:.2f}. The rest of the difference, "
        f"{m.other_gflop_per_frame * 1e3:+.2f} MFLOP/frame, is the time embedding (run once per video, not per frame).",
    ]
    if magicpose_step_gflop is not None:
        whole = magicpose_step_gflop + 2 * m.motion_gflop_per_frame
        lines.append(
            f"Whole MagicPose step (Image-CFG, appearance UNet + ControlNet + main UNet twice) per frame at F={m.frames}: "
            f"{magicpose_step_gflop:,.1f} GFLOP without, {whole:,.1f} with the motion modules in both main-UNet "
            f"passes (derived: + 2 x {m.motion_gflop_per_frame:.1f}), ratio {whole / magicpose_step_gflop:.3f}."
        )
    if windows is not None:
        w = windows
        lines += [
            "",
            f"Window scheduler (context length {w.length}, overlap {w.overlap}): every window is computed in full, "
            "so each output frame costs Σ|window| / frames window frames. Without a motion module frames do not "
            "interact and need no windows (plain batches), so *vs without* compares with "
            f"{m.without_gflop_per_frame:,.1f}:",
            "",
            "| video frames | windows | frames computed | per output frame | main UNet with motion, "
            "GFLOP/output frame/step | vs without |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for v in w.videos:
            g = v["per_output_frame"] * m.with_gflop_per_frame
            lines.append(
                f"| {v['num_frames']} | {v['windows']} | {v['computed_frames']} | {v['per_output_frame']:.4f} | "
                f"{g:,.1f} | {g / m.without_gflop_per_frame:.3f} |"
            )
        g = w.limit * m.with_gflop_per_frame
        lines.append(
            f"| → ∞ | | | {w.length}/{w.length - w.overlap} = {w.limit:.4f} | {g:,.1f} | "
            f"{g / m.without_gflop_per_frame:.3f} |"
        )
    lines.append(f"(counted in {m.count_seconds:.1f} s)")
    return "\n".join(lines)


def motion_dict(motion: MotionReport, windows: WindowOverhead | None) -> dict[str, Any]:
    data = asdict(motion)
    data["ratio"] = motion.ratio
    data["motion_share"] = motion.motion_share
    data["windows"] = None
    if windows is not None:
        data["windows"] = {**asdict(windows), "limit": windows.limit}
    return data
