"""Shared fixtures: tiny real components (diffusers/transformers classes with small numbers), random weights."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tiny models are dominated by per-op overhead: one intra-op thread is as fast on an idle machine and avoids
# 10x slow-downs when a second thread waits for a busy core (measured on the 2-core CI machine kind).
torch.set_num_threads(int(os.environ.get("MAGICPOSE_TEST_THREADS", "1")))

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "magicpose" / "tiny.yaml"


def require_pose_env(what: str) -> Path:
    """The pose environment's python (.venv-pose, or $MAGICPOSE_POSE_VENV as for setup_pose.sh); without it the test
    is skipped, or fails under CI (scripts/test.sh sets the environment up, so there it must exist)."""
    from magicpose.commands.pose_env import pose_python

    python = pose_python()
    if not python.exists():
        message = f"{python} missing: run `bash scripts/setup_pose.sh`"
        if os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}:
            pytest.fail(f"CI must test {what}: {message}")
        pytest.skip(message)
    return python


def tiny_spec(**kwargs):
    from magicpose.config import ModelSpec

    kwargs.setdefault("paths", {"tokenizer": str(REPO / "configs/models/sd15/tokenizer")})
    kwargs.setdefault("components", str(REPO / "configs/models/tiny"))
    return ModelSpec(**kwargs)


def wake_controlnet(controlnet: torch.nn.Module, seed: int = 1, std: float = 0.05) -> None:
    """Give the zero-initialised output convs of a fresh ControlNet small random weights, so poses matter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            block.weight.copy_(torch.randn(block.weight.shape, generator=gen) * std)
        last = controlnet.controlnet_cond_embedding.conv_out
        last.weight.copy_(torch.randn(last.weight.shape, generator=gen) * std)


def random_image(seed: int, size: tuple[int, int] = (64, 64)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype("uint8"))


def stick_pose(seed: int, size: int = 64) -> Image.Image:
    """A pose-map-like image: coloured lines on black, different per seed."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0, x1, y1 = (int(v) for v in rng.integers(0, size, 4))
        colour = tuple(int(c) for c in rng.integers(64, 256, 3))
        draw.line((x0, y0, x1, y1), fill=colour, width=3)
    return image


@pytest.fixture
def tiny_components():
    from magicpose.models.components import build_components

    components = build_components(tiny_spec())
    wake_controlnet(components["controlnet"])
    return components


@pytest.fixture
def tiny_pipe(tiny_components):
    from magicpose.pipelines.magicpose import MagicPosePipeline

    pipe = MagicPosePipeline(**tiny_components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def write_tiny_sd_folder(folder: Path, components: str | Path, seed: int = 0) -> Path:
    """A diffusers Stable Diffusion folder (unet/ vae/ text_encoder/ tokenizer/ scheduler/) of random components of
    the configs in `components`, with the real CLIP tokenizer: what `stable-diffusion-v1-4/` is at tiny size."""
    from magicpose.models.components import load_component, random_component

    components = Path(components)
    torch.manual_seed(seed)
    for name in ("unet", "vae", "text_encoder"):
        random_component(name, components / name).save_pretrained(folder / name)
    load_component("tokenizer", REPO / "configs/models/sd15/tokenizer").save_pretrained(folder / "tokenizer")
    load_component("scheduler", components / "scheduler").save_pretrained(folder / "scheduler")
    return folder
