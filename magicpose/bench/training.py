"""Training-step cost: MagicPose stage 2 vs a plain diffusers ControlNet training step on the same components.

Both variants train on random latents (the frozen VAE and text encoder are the same in both and left out):
- `controlnet`: the diffusers ControlNet recipe: ControlNet trains, the UNet is frozen and takes its residuals;
- `magicpose`: stage 2: the appearance UNet (reference bank) and the ControlNet train, the UNet is frozen.
Each variant runs in a fresh process so that its peak memory (max RSS) is its own.
"""

from __future__ import annotations

import copy
import multiprocessing
import resource
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import ControlNetModel, UNet2DConditionModel

from magicpose.models.magicpose import MagicPoseModel
from magicpose.paths import resolve_path

VARIANTS = ("controlnet", "magicpose")


def _build(components: Path, seed: int = 0):
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(components / "unet"))
    controlnet = ControlNetModel.from_config(ControlNetModel.load_config(components / "controlnet"))
    return unet, controlnet


def _measure(variant: str, components: str, size: int, batch: int, steps: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    unet, controlnet = _build(resolve_path(components))
    latent = size // 8
    gen = torch.Generator().manual_seed(1)
    noisy = torch.randn(batch, unet.config.in_channels, latent, latent, generator=gen)
    reference = torch.randn(batch, unet.config.in_channels, latent, latent, generator=gen)
    text = torch.randn(batch, 77, unet.config.cross_attention_dim, generator=gen)
    pose = torch.rand(batch, 3, size, size, generator=gen)
    target = torch.randn_like(noisy)
    t = torch.randint(0, 1000, (batch,), generator=gen)

    if variant == "controlnet":
        unet.requires_grad_(False).eval()
        params = list(controlnet.parameters())

        def predict():
            down, mid = controlnet(noisy, t, text, pose, return_dict=False)
            return unet(noisy, t, text, down_block_additional_residuals=down,
                        mid_block_additional_residual=mid, return_dict=False)[0]
    else:
        model = MagicPoseModel(unet, copy.deepcopy(unet).requires_grad_(True), controlnet).prepare().train()
        params = [p for p in model.parameters() if p.requires_grad]

        def predict():
            return model(noisy, t, text, reference, pose)

    optimizer = torch.optim.AdamW(params, lr=1e-5)
    times = []
    for _ in range(steps + 1):  # the first step warms up allocators and kernels
        start = time.perf_counter()
        loss = F.mse_loss(predict(), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"variant": variant, "step_s": sum(times[1:]) / steps, "peak_rss_mb": peak_mb,
            "trainable_m": sum(p.numel() for p in params) / 1e6}


def training_step_benchmark(components: str = "configs/models/mid", size: int = 256, batch: int = 2,
                            steps: int = 3, threads: int = 2) -> dict:
    context = multiprocessing.get_context("spawn")
    results = {}
    for variant in VARIANTS:
        with context.Pool(1) as pool:
            results[variant] = pool.apply(_measure, (variant, components, size, batch, steps, threads))
    results["ratio"] = results["magicpose"]["step_s"] / results["controlnet"]["step_s"]
    return results


def format_results(results: dict, components: str, size: int, batch: int) -> str:
    lines = [f"training step, {components}, {size}x{size} px, batch {batch}, CPU:",
             "| variant | trainable (M) | s/step | peak RSS (MB) |", "|---|---:|---:|---:|"]
    for variant in VARIANTS:
        r = results[variant]
        lines.append(f"| {variant} | {r['trainable_m']:.1f} | {r['step_s']:.2f} | {r['peak_rss_mb']:.0f} |")
    lines.append(f"ratio magicpose / controlnet step time: {results['ratio']:.2f}")
    return "\n".join(lines)
