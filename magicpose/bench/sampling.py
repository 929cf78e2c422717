"""`magicpose benchmark flops`: compute per generated frame, the original sampling loop vs ours.

Two loop structures for Image-CFG (`controlnet_important`) sampling, counted per denoising step (every step costs
the same) and multiplied by the number of steps:

(a) *original*: one frame at a time. Per step and frame: the appearance UNet on the reference (batch 1), the pose
    ControlNet in both CFG halves (the unconditional half's residuals are computed and thrown away), the main UNet
    conditional (reference bank + pose residuals) and unconditional (plain), batch 1 each.
(b) *ours* (`MagicPosePipeline`): F frames in one batch. Per step: the appearance UNet once on the reference, its
    bank shared by all F frames; then `guided_prediction` on the F frames (ControlNet on the conditional half only).

FLOPs are counted with `torch.utils.flop_counter.FlopCounterMode` on models built on the meta device (shapes only:
no weights, no memory, seconds to count). Attention: on meta tensors `scaled_dot_product_attention` falls back to
its math decomposition, whose two `bmm`s the counter sees; on real CPU tensors it dispatches to
`aten._scaled_dot_product_flash_attention_for_cpu`, which stock `FlopCounterMode` does not count (0 FLOPs), so
`flop_counter()` registers the usual SDPA formula for it. `attention_check()` compares the counted attention of one
SD-1.5 `attn1` layer with 4·B·heads·N·M·d by hand.

`run_flops` then prints the motion module's cost (`bench.temporal`): the main UNet on one window of frames with
and without an AnimateDiff `MotionAdapter`, and the window scheduler's overhead.

The identity check and the wall-clock comparison run real tensors on CPU with the tiny component configs (random
weights; the ControlNet's zero-initialised convolutions are perturbed so that its residuals and the pose matter).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from torch.utils.flop_counter import FlopCounterMode

from magicpose.config import ModelSpec
from magicpose.errors import UserError
from magicpose.models.attention import ReferenceBank
from magicpose.models.components import random_component, vae_scale_factor
from magicpose.models.magicpose import GuidanceInputs, MagicPoseModel, guided_prediction
from magicpose.paths import resolve_path

GUIDANCE_SCALE = 7.0
TIMESTEP = 981  # any timestep: the FLOPs do not depend on it
TEXT_TOKENS = 77
SD15_TOKENIZER = "configs/models/sd15/tokenizer"
WALLCLOCK_STEPS = 20
WALLCLOCK_THREADS = 1
ATTENTION_OPS = ("aten.bmm", "aten.baddbmm", "aten._scaled_dot_product")

aten = torch.ops.aten


# --------------------------------------------------------------------------------------------- FLOP counting


def flop_counter() -> FlopCounterMode:
    """`FlopCounterMode` that also counts SDPA's CPU kernel (stock torch counts the CUDA kernels only)."""
    mapping = {}
    cpu_flash = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_flash is not None:
        mapping[cpu_flash] = _sdpa_formula
    return FlopCounterMode(display=False, custom_mapping=mapping)


def _sdpa_formula(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """QKᵀ and (softmax)·V on `b h n d` shapes (FlopCounterMode hands over shapes, not tensors)."""
    b, h, n, d = query_shape
    m, d_v = key_shape[-2], value_shape[-1]
    return 2 * b * h * n * m * d + 2 * b * h * n * m * d_v


def count_flops(fn: Callable[[], Any]) -> tuple[int, dict[str, int], Any]:
    """FLOPs of `fn()` (forward, no grad): the total, the count per aten op, and what `fn` returned."""
    with flop_counter() as counter, torch.no_grad():
        result = fn()
    per_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()), per_op, result


def attention_op_flops(per_op: dict[str, int]) -> int:
    """The part of a count spent in attention (SDPA's math `bmm`s or its fused kernels).

    Diffusers' UNet/ControlNet/VAE use `bmm` nowhere else: their linear layers count as `mm`/`addmm`.
    """
    return sum(n for op, n in per_op.items() if op.startswith(ATTENTION_OPS))


def attention_flops(batch: int, heads: int, n_queries: int, n_keys: int, head_dim: int) -> int:
    """Hand count of softmax(QKᵀ)V: two matmuls of 2·B·h·N·M·d each."""
    return 4 * batch * heads * n_queries * n_keys * head_dim


# --------------------------------------------------------------------------------------------- the two structures


def original_step(
    model: MagicPoseModel,
    latent: torch.Tensor,
    timestep: torch.Tensor | int,
    reference: torch.Tensor,
    text: torch.Tensor,
    uncond_text: torch.Tensor,
    pose: torch.Tensor,
    guidance_scale: float = GUIDANCE_SCALE,
    conditioning_scale: float = 1.0,
) -> torch.Tensor:
    """(a) One Image-CFG step for ONE frame (`1 c h w`), structured as the original MagicDance loop."""
    bank = model.encode_reference(reference, timestep, text)  # appearance UNet, again for every frame
    residuals = model.pose_residuals(latent, timestep, text, pose, conditioning_scale)
    # The unconditional half ran the ControlNet too, and its residuals were never used.
    model.pose_residuals(latent, timestep, uncond_text, pose, conditioning_scale)
    eps_c = model.denoise(latent, timestep, text, bank, residuals)
    eps_u = model.denoise(latent, timestep, uncond_text)
    return eps_u + guidance_scale * (eps_c - eps_u)


def ours_step(
    model: MagicPoseModel,
    latents: torch.Tensor,
    timestep: torch.Tensor | int,
    reference: torch.Tensor,
    text: torch.Tensor,
    uncond_text: torch.Tensor,
    poses: torch.Tensor,
    guidance_scale: float = GUIDANCE_SCALE,
    conditioning_scale: float = 1.0,
) -> torch.Tensor:
    """(b) One step for F frames (`f c h w`), as `MagicPosePipeline` does it: one bank, one batched Image-CFG."""
    bank = model.encode_reference(reference, timestep, text)
    inputs = GuidanceInputs(text, uncond_text, poses, bank)
    return guided_prediction(
        model, latents, timestep, inputs, guidance_scale, "controlnet_important", conditioning_scale
    )


# --------------------------------------------------------------------------------------------- meta-device count


def build_meta_model(components: str | Path) -> tuple[MagicPoseModel, Any]:
    """Main UNet, appearance UNet and ControlNet (plus the VAE) of a component-config folder, on the meta device."""
    root = resolve_path(components)
    with torch.device("meta"):
        unet = random_component("unet", root / "unet")
        appearance_unet = random_component("unet", root / "unet")
        controlnet = random_component("controlnet", root / "controlnet")
        vae = random_component("vae", root / "vae")
    return MagicPoseModel(unet, appearance_unet, controlnet).prepare().eval(), vae.eval()


@dataclass
class MetaInputs:
    latent_size: int
    pixel_size: int
    latent_channels: int
    text_dim: int

    def latents(self, batch: int) -> torch.Tensor:
        return torch.empty(batch, self.latent_channels, self.latent_size, self.latent_size, device="meta")

    def poses(self, batch: int) -> torch.Tensor:
        return torch.empty(batch, 3, self.pixel_size, self.pixel_size, device="meta")

    def text(self) -> torch.Tensor:
        return torch.empty(1, TEXT_TOKENS, self.text_dim, device="meta")

    def pixels(self, batch: int) -> torch.Tensor:
        return torch.empty(batch, 3, self.pixel_size, self.pixel_size, device="meta")


def _meta_inputs(model: MagicPoseModel, vae, size: int) -> MetaInputs:
    factor = vae_scale_factor(vae)
    if size % (8 * factor):
        raise UserError(f"--size {size} must be a multiple of {8 * factor}")
    config = model.unet.config
    return MetaInputs(size // factor, size, config.in_channels, config.cross_attention_dim)


@dataclass
class FlopReport:
    """GFLOPs per generated frame (denoising only) and the pieces they are made of."""

    components: str
    size: int
    steps: int
    guidance_scale: float
    per_step_gflop: dict[str, float] = field(default_factory=dict)  # per frame and step, batch 1
    original_gflop_per_frame: float = 0.0
    ours_gflop_per_frame: dict[int, float] = field(default_factory=dict)
    floor_gflop_per_frame: float = 0.0
    vae_encode_reference_gflop: float = 0.0  # once per video, not in the per-frame numbers
    vae_decode_gflop_per_frame: float = 0.0  # same in both structures, not in the per-frame numbers
    attention_check: dict[str, Any] = field(default_factory=dict)
    count_seconds: float = 0.0

    def ratio(self, gflop: float) -> float:
        return gflop / self.original_gflop_per_frame


def count_structures(
    components: str | Path = "configs/models/sd15",
    frames: list[int] | tuple[int, ...] = (1, 8, 16),
    steps: int = 50,
    size: int = 512,
    guidance_scale: float = GUIDANCE_SCALE,
    with_vae: bool = True,
) -> FlopReport:
    """Count (a) and (b) for every F in `frames` on meta-device models of `components` (about 1 s per UNet pass)."""
    if not frames or min(frames) < 1:
        raise ValueError(f"frames must be positive batch sizes, got {frames}")
    start = time.perf_counter()
    model, vae = build_meta_model(components)
    shapes = _meta_inputs(model, vae, size)
    t = torch.tensor(TIMESTEP)
    reference, text, x1, pose1 = shapes.latents(1), shapes.text(), shapes.latents(1), shapes.poses(1)
    report = FlopReport(str(components), size, steps, guidance_scale)

    # The pieces, at batch 1 (their outputs feed the next piece).
    appearance, _, bank = count_flops(lambda: model.encode_reference(reference, t, text))
    controlnet, _, residuals = count_flops(lambda: model.pose_residuals(x1, t, text, pose1))
    conditional, conditional_ops, _ = count_flops(lambda: model.denoise(x1, t, text, bank, residuals))
    unconditional, unconditional_ops, _ = count_flops(lambda: model.denoise(x1, t, text))
    report.per_step_gflop = {
        "appearance_unet": appearance / 1e9,
        "controlnet": controlnet / 1e9,
        "unet_conditional": conditional / 1e9,
        "unet_unconditional": unconditional / 1e9,
    }

    # (a): the whole original step for one frame, counted as written.
    original, _, _ = count_flops(
        lambda: original_step(model, x1, t, reference, text, text, pose1, guidance_scale)
    )
    report.original_gflop_per_frame = original / 1e9 * steps

    # (b): appearance UNet once + guided_prediction on F frames sharing its bank, per frame.
    guided: dict[int, int] = {}
    for f in sorted(set(frames) | ({1} if len(set(frames)) == 1 else set())):
        inputs = GuidanceInputs(text, text, shapes.poses(f), bank)
        latents = shapes.latents(f)
        guided[f] = count_flops(
            lambda inputs=inputs, latents=latents: guided_prediction(
                model, latents, t, inputs, guidance_scale, "controlnet_important"
            )
        )[0]
    report.ours_gflop_per_frame = {f: (appearance + guided[f]) / f / 1e9 * steps for f in frames}
    # FLOPs are affine in F (only the appearance UNet and the projection of the bank to K/V are per batch), so the
    # cost of one more frame is the per-frame cost as F -> infinity: ControlNet + conditional UNet (attending to
    # the bank) + unconditional UNet.
    f_lo, f_hi = sorted(guided)[-2:]
    report.floor_gflop_per_frame = (guided[f_hi] - guided[f_lo]) / (f_hi - f_lo) / 1e9 * steps

    if with_vae:
        pixels = shapes.pixels(1)
        encode, _, _ = count_flops(lambda: vae.encode(pixels).latent_dist.mode())
        decode, _, _ = count_flops(lambda: vae.decode(x1, return_dict=False))
        report.vae_encode_reference_gflop, report.vae_decode_gflop_per_frame = encode / 1e9, decode / 1e9
    report.attention_check = attention_check(model, shapes, bank, conditional_ops, unconditional_ops)
    report.count_seconds = time.perf_counter() - start
    return report


def attention_check(
    model: MagicPoseModel,
    shapes: MetaInputs,
    bank: ReferenceBank,
    conditional_ops: dict[str, int],
    unconditional_ops: dict[str, int],
) -> dict[str, Any]:
    """Counted vs hand-computed attention, for one `attn1` layer and for the whole main UNet.

    One layer: the first `attn1` of the main UNet at full latent resolution reading a bank, so M = 2N keys; the
    attention ops counted (SDPA, or the `bmm`s of its math decomposition) must equal 4·B·heads·N·M·d.
    Whole UNet: the conditional pass (with the bank) minus the unconditional one (without) must show, in attention
    ops, the hand-computed extra Σ 4·h·N·N·d over the `attn1` layers that read the bank. (The rest of the
    difference is the bank's K/V projections; the residual additions are elementwise, not counted.)
    """
    name = "down_blocks.0.attentions.0.transformer_blocks.0.attn1"
    attn = model.unet.get_submodule(name)
    n = shapes.latent_size**2
    hidden = torch.empty(1, n, attn.to_q.in_features, device="meta")
    layer_bank = ReferenceBank()
    layer_bank.write(name, hidden)
    heads, head_dim = attn.heads, attn.to_q.out_features // attn.heads
    _, per_op, _ = count_flops(lambda: attn(hidden, reference_bank=layer_bank))

    extra_hand = 0
    for layer_name in bank:
        layer = model.unet.get_submodule(layer_name)
        tokens = bank.read(layer_name).shape[1]
        extra_hand += attention_flops(1, layer.heads, tokens, tokens, layer.to_q.out_features // layer.heads)
    return {
        "layer": name,
        "layer_tokens": n,
        "layer_keys": 2 * n,
        "layer_heads": heads,
        "layer_head_dim": head_dim,
        "layer_attention_counted_gflop": attention_op_flops(per_op) / 1e9,
        "layer_attention_hand_gflop": attention_flops(1, heads, n, 2 * n, head_dim) / 1e9,
        "unet_bank_extra_counted_gflop": (sum(conditional_ops.values()) - sum(unconditional_ops.values()))
        / 1e9,
        "unet_bank_extra_attention_counted_gflop": (
            attention_op_flops(conditional_ops) - attention_op_flops(unconditional_ops)
        )
        / 1e9,
        "unet_bank_extra_attention_hand_gflop": extra_hand / 1e9,
    }


# --------------------------------------------------------------------------------------------- real tensors (tiny)


def build_tiny_pipeline(components: str | Path = "configs/models/tiny", seed: int = 0, perturb: float = 0.05):
    """A random-weight `MagicPosePipeline` on CPU, with the ControlNet's zero convolutions perturbed.

    At random init the ControlNet's output convolutions and its pose-hint embedding's last convolution are zero, so
    neither its residuals nor the pose would change anything; small random weights there make an identity check
    between loop structures meaningful.
    """
    from magicpose.pipelines.magicpose import MagicPosePipeline

    paths = {}
    if not (resolve_path(components) / "tokenizer").is_dir():
        paths["tokenizer"] = SD15_TOKENIZER
    pipe = MagicPosePipeline.from_spec(ModelSpec(components=str(components), paths=paths, seed=seed))
    pipe.magicpose_model.prepare()  # the loop structures below call the model directly, outside a pipeline call
    perturb_zero_convs(pipe.controlnet, perturb, seed)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def perturb_zero_convs(controlnet, scale: float = 0.05, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed + 1000)
    # The pose-hint embedding's conv_out is zero-initialised too: without it the residuals would be non-zero but
    # the same for every pose.
    modules = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]
    modules.append(controlnet.controlnet_cond_embedding.conv_out)
    for module in modules:
        for param in module.parameters():
            param.add_(torch.randn(param.shape, generator=generator, dtype=param.dtype) * scale)


def example_inputs(
    num_frames: int, size: int, seed: int = 0
) -> tuple[PIL.Image.Image, list[PIL.Image.Image]]:
    """A random reference image and `num_frames` random pose maps (seeded)."""
    rng = np.random.default_rng(seed)

    def image() -> PIL.Image.Image:
        return PIL.Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))

    reference = image()
    return reference, [image() for _ in range(num_frames)]


def initial_noise(pipe, size: int, seed: int = 0) -> torch.Tensor:
    """The one shared initial noise `1 c h w` (what the pipeline draws with `shared_noise=True`)."""
    latent = size // pipe.vae_scale_factor
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, pipe.unet.config.in_channels, latent, latent, generator=generator)


@torch.no_grad()
def original_sample(
    pipe,
    reference_image,
    pose_images,
    prompt: str = "",
    num_inference_steps: int = 50,
    guidance_scale: float = GUIDANCE_SCALE,
    latents: torch.Tensor | None = None,
    size: int | None = None,
) -> np.ndarray:
    """(a) as a whole sampler: frames one after the other, each through all steps with `original_step`.

    Same preprocessing, shared initial noise, scheduler (a fresh copy of the pipeline's per frame) and decoding as
    `MagicPosePipeline`; returns `f h w 3` floats in [0, 1] like `output_type="np"`.
    """
    size = size or pipe.unet.config.sample_size * pipe.vae_scale_factor
    model = pipe.magicpose_model
    text = pipe.encode_text(prompt)
    reference = pipe.encode_reference_image(reference_image, size, size)
    poses = pipe.prepare_poses(pose_images, size, size)
    if latents is None:
        latents = initial_noise(pipe, size)
    frames = []
    for i in range(poses.shape[0]):
        scheduler = copy.deepcopy(pipe.scheduler)
        scheduler.set_timesteps(num_inference_steps)
        x = latents.to(pipe.unet.dtype) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            sample = scheduler.scale_model_input(x, t)
            eps = original_step(model, sample, t, reference, text, text, poses[i : i + 1], guidance_scale)
            x = scheduler.step(eps, t, x, return_dict=False)[0]
        image = pipe.vae.decode(x / pipe.vae.config.scaling_factor, return_dict=False)[0]
        frames.append(pipe.image_processor.postprocess(image, output_type="np"))
    return np.concatenate(frames)


@torch.no_grad()
def one_step_difference(
    pipe, num_frames: int = 3, size: int | None = None, seed: int = 0
) -> tuple[float, float]:
    """One step (timestep 981) of (a) frame by frame vs (b) batched, on real tensors in the pipeline's dtype.

    Returns max |eps_a - eps_b| over `num_frames` frames and max |eps| (for scale: in float32 the CFG combination
    `eps_u + 7 (eps_c - eps_u)` multiplies the rounding differences of batch 1 vs batch F kernels by up to 13).
    """
    size = size or pipe.unet.config.sample_size * pipe.vae_scale_factor
    reference_image, pose_images = example_inputs(num_frames, size, seed)
    model = pipe.magicpose_model
    text = pipe.encode_text("")
    reference = pipe.encode_reference_image(reference_image, size, size).to(pipe.unet.dtype)
    poses = pipe.prepare_poses(pose_images, size, size)
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(
        num_frames, pipe.unet.config.in_channels, *reference.shape[-2:], generator=generator
    )
    latents = latents.to(pipe.unet.dtype)
    t = torch.tensor(TIMESTEP)
    ours = ours_step(model, latents, t, reference, text, text, poses)
    original = torch.cat(
        [
            original_step(model, latents[i : i + 1], t, reference, text, text, poses[i : i + 1])
            for i in range(num_frames)
        ]
    )
    return float((ours - original).abs().max()), float(ours.abs().max())


@dataclass
class WallClock:
    components: str
    size: int
    frames: int
    steps: int
    threads: int
    original_seconds_per_frame: float
    ours_seconds_per_frame: float
    original_cpu_seconds_per_frame: float  # process CPU time (all threads): less sensitive to a busy machine
    ours_cpu_seconds_per_frame: float
    max_abs_diff: float  # final frames in [0, 1]: (a) vs (b)
    eps_max_abs_diff: float  # one step, (a) vs (b), `frames` frames
    eps_max_abs: float


def wallclock(
    components: str | Path = "configs/models/tiny",
    frames: int = 8,
    steps: int = WALLCLOCK_STEPS,
    threads: int = WALLCLOCK_THREADS,
) -> WallClock:
    """Seconds per frame of the whole sampler on CPU, (a) frame by frame vs (b) the pipeline with F = `frames`.

    Runs on `threads` intra-op threads (1 by default): the tiny models gain nothing from more, and on a machine
    whose cores are shared, a second thread waiting at every op's barrier for a busy core made both timings
    several times slower and noisy.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _wallclock(components, frames, steps)
    finally:
        torch.set_num_threads(previous)


def _wallclock(components: str | Path, frames: int, steps: int) -> WallClock:
    pipe = build_tiny_pipeline(components)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    reference_image, pose_images = example_inputs(frames, size)
    noise = initial_noise(pipe, size)

    def run_ours(n_frames: int, n_steps: int) -> np.ndarray:
        return pipe(
            reference_image,
            pose_images[:n_frames],
            num_inference_steps=n_steps,
            guidance_scale=GUIDANCE_SCALE,
            frames_per_batch=frames,
            latents=noise,
            output_type="np",
        ).frames[0]

    def run_original(n_frames: int, n_steps: int) -> np.ndarray:
        return original_sample(
            pipe, reference_image, pose_images[:n_frames], "", n_steps, GUIDANCE_SCALE, noise, size
        )

    def timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        return result, (time.perf_counter() - wall) / frames, (time.process_time() - cpu) / frames

    run_ours(1, 1)  # warm-up (lazy initialisation, allocator)
    run_original(1, 1)
    original, original_wall, original_cpu = timed(lambda: run_original(frames, steps))
    ours, ours_wall, ours_cpu = timed(lambda: run_ours(frames, steps))
    eps_diff, eps_max = one_step_difference(pipe, frames, size)
    return WallClock(
        str(components),
        size,
        frames,
        steps,
        torch.get_num_threads(),
        original_wall,
        ours_wall,
        original_cpu,
        ours_cpu,
        float(np.abs(original - ours).max()),
        eps_diff,
        eps_max,
    )


# --------------------------------------------------------------------------------------------- report


def format_report(report: FlopReport, clock: WallClock | None = None) -> str:
    r = report
    lines = [
        f"FLOPs per generated {r.size}x{r.size} frame, {r.steps} steps, Image-CFG (controlnet_important, scale "
        f"{r.guidance_scale:g}), components {r.components} (meta device, FlopCounterMode):",
        "",
        "| structure | GFLOP/frame | ratio to original |",
        "|---|---:|---:|",
        f"| original (1 frame at a time) | {r.original_gflop_per_frame:,.0f} | 1.000 |",
    ]
    for f, g in r.ours_gflop_per_frame.items():
        lines.append(f"| ours F={f} | {g:,.0f} | {r.ratio(g):.3f} |")
    lines.append(
        f"| floor (F → ∞) | {r.floor_gflop_per_frame:,.0f} | {r.ratio(r.floor_gflop_per_frame):.3f} |"
    )
    p = r.per_step_gflop
    lines += [
        "",
        "Per step and frame at batch 1 (GFLOP): appearance UNet {:.1f}, ControlNet {:.1f}, main UNet conditional "
        "(bank + residuals) {:.1f}, unconditional {:.1f}.".format(
            p["appearance_unet"], p["controlnet"], p["unet_conditional"], p["unet_unconditional"]
        ),
        "original = appearance + 2 x ControlNet + conditional + unconditional; ours = appearance / F + ControlNet "
        "+ conditional + unconditional (the bank's K/V projections are shared by the batch too); floor = ours at "
        "F → ∞, the cost of one more frame.",
        "Denoising only: the text encoder (once per video) is left out; VAE encode of the reference "
        f"{r.vae_encode_reference_gflop:,.0f} GFLOP once per video, VAE decode {r.vae_decode_gflop_per_frame:,.0f} "
        "GFLOP per frame (the same in both structures) are not in the table.",
    ]
    a = r.attention_check
    if a:
        lines.append(
            f"Attention is counted: one attn1 layer ({a['layer_tokens']} queries x {a['layer_keys']} keys, "
            f"{a['layer_heads']} heads x {a['layer_head_dim']}) counted {a['layer_attention_counted_gflop']:.2f} "
            f"GFLOP vs 4·B·h·N·M·d = {a['layer_attention_hand_gflop']:.2f}; the bank adds "
            f"{a['unet_bank_extra_counted_gflop']:.1f} GFLOP to the UNet, of which attention "
            f"{a['unet_bank_extra_attention_counted_gflop']:.1f} (hand: {a['unet_bank_extra_attention_hand_gflop']:.1f})."
        )
    lines.append(f"(counted in {r.count_seconds:.1f} s)")
    if clock is not None:
        c = clock
        lines += [
            "",
            f"Wall-clock, CPU ({c.threads} thread{'s' if c.threads != 1 else ''}), components {c.components}, {c.size}x{c.size} px, {c.frames} "
            f"frames, {c.steps} steps (whole sampler incl. VAE and text encoder):",
            f"- original (1 frame at a time): {c.original_seconds_per_frame:.3f} s/frame "
            f"(CPU time {c.original_cpu_seconds_per_frame:.3f} s/frame)",
            f"- ours (frames_per_batch={c.frames}): {c.ours_seconds_per_frame:.3f} s/frame "
            f"(CPU time {c.ours_cpu_seconds_per_frame:.3f} s/frame); ratio ours/original "
            f"{c.ours_seconds_per_frame / c.original_seconds_per_frame:.3f} wall, "
            f"{c.ours_cpu_seconds_per_frame / c.original_cpu_seconds_per_frame:.3f} CPU",
            f"- same results (float32): final frames max |original - ours| = {c.max_abs_diff:.1e} (pixels in [0, 1]); "
            f"eps of one step max |original - ours| = {c.eps_max_abs_diff:.1e} (max |eps| {c.eps_max_abs:.1f})",
        ]
    return "\n".join(lines)


def report_dict(report: FlopReport, clock: WallClock | None) -> dict[str, Any]:
    data = asdict(report)
    data["ours_gflop_per_frame"] = {str(f): g for f, g in report.ours_gflop_per_frame.items()}
    data["ratio_to_original"] = {
        **{f"ours_F{f}": report.ratio(g) for f, g in report.ours_gflop_per_frame.items()},
        "floor": report.ratio(report.floor_gflop_per_frame),
    }
    data["wallclock"] = None if clock is None else asdict(clock)
    return data


def run_flops(
    components: str | Path,
    frames: list[int],
    steps: int,
    size: int,
    wallclock_components: str | Path,
    wallclock_frames: int,
    json_path: Path | None = None,
    context_length: int = 16,
    context_overlap: int = 4,
    video_frames: list[int] | tuple[int, ...] = (16, 64, 256),
) -> dict[str, Any]:
    """The FLOP table (and, with `wallclock_frames` > 0, the CPU wall-clock comparison), then the motion module's
    cost on `context_length` frames and the window scheduler's overhead (`bench.temporal`; skipped when
    `context_length` is 0 or the components have no `motion_adapter` config): printed, returned, and written to
    `json_path` if given."""
    from magicpose.bench import temporal

    if min(frames) < 1 or steps < 1 or wallclock_frames < 0 or context_length < 0:
        raise UserError(
            "--frames and --steps must be >= 1, --wallclock-frames and --context-length >= 0 (0: no wall-clock run, "
            "no motion-module count)"
        )
    has_adapter = (resolve_path(components) / "motion_adapter" / "config.json").is_file()
    windows = None
    if context_length > 0:  # check the window arguments before the long counts
        windows = temporal.window_overhead(list(video_frames), context_length, context_overlap)
    report = count_structures(components, list(frames), steps, size)
    clock = None
    if wallclock_frames > 0:
        clock = wallclock(wallclock_components, wallclock_frames, min(WALLCLOCK_STEPS, steps))
    print(format_report(report, clock))
    data = report_dict(report, clock)
    data["motion_module"] = None
    if context_length > 0 and has_adapter:
        motion = temporal.count_motion(components, context_length, size)
        step = report.ours_gflop_per_frame.get(context_length)
        print()
        print(temporal.format_motion(motion, windows, None if step is None else step / steps))
        data["motion_module"] = temporal.motion_dict(motion, windows)
    elif context_length > 0:
        print(f"\n(no motion module count: {components} has no motion_adapter/config.json)")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {json_path}")
    return data
