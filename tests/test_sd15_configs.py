"""The shipped SD-1.5 / OpenPose-ControlNet component configs and CLIP tokenizer (configs/models/sd15).

Models are built on the meta device: shapes and parameter counts only, no memory, no weights, no hub.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SD15 = REPO / "configs" / "models" / "sd15"

# Published sizes of the SD-1.5 components (runwayml/stable-diffusion-v1-5) and of
# lllyasviel/control_v11p_sd15_openpose (1.445 GB of fp32 weights).
N_UNET = 859_520_964
N_VAE = 83_653_863
N_TEXT = 123_060_480
N_CONTROLNET = 361_279_120

BOS, EOS = 49406, 49407


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _build(cls, sub: str):
    with torch.device("meta"):
        model = cls.from_config(cls.load_config(SD15 / sub))
    assert next(model.parameters()).device.type == "meta"
    return model


@pytest.fixture(scope="module")
def unet():
    from diffusers import UNet2DConditionModel

    return _build(UNet2DConditionModel, "unet")


@pytest.fixture(scope="module")
def controlnet():
    from diffusers import ControlNetModel

    return _build(ControlNetModel, "controlnet")


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(SD15 / "tokenizer")


@pytest.mark.parametrize(
    ("sub", "filename", "class_name"),
    [
        ("unet", "config.json", "UNet2DConditionModel"),
        ("vae", "config.json", "AutoencoderKL"),
        ("controlnet", "config.json", "ControlNetModel"),
        ("scheduler", "scheduler_config.json", "DDIMScheduler"),
    ],
)
def test_diffusers_config_files(sub, filename, class_name):
    cfg = json.loads((SD15 / sub / filename).read_text())
    assert cfg["_class_name"] == class_name
    assert cfg["_diffusers_version"] == "0.42.1"


def test_unet_config_and_params(unet):
    cfg = unet.config
    assert list(cfg.block_out_channels) == [320, 640, 1280, 1280]
    assert cfg.layers_per_block == 2 and cfg.attention_head_dim == 8 and cfg.cross_attention_dim == 768
    assert cfg.sample_size == 64 and cfg.in_channels == 4 and cfg.out_channels == 4
    assert list(cfg.down_block_types) == ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]
    assert list(cfg.up_block_types) == ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3
    assert cfg.flip_sin_to_cos is True and cfg.freq_shift == 0 and cfg.norm_num_groups == 32
    assert _n_params(unet) == N_UNET


def test_unet_has_16_self_attentions(unet):
    self_attn = [name for name, _ in unet.named_modules() if name.endswith(".attn1")]
    cross_attn = [name for name, _ in unet.named_modules() if name.endswith(".attn2")]
    # 6 in the down blocks, 1 in the mid block, 9 in the up blocks.
    assert len(self_attn) == 16
    assert len(cross_attn) == 16
    assert sum(n.startswith("down_blocks.") for n in self_attn) == 6
    assert sum(n.startswith("mid_block.") for n in self_attn) == 1
    assert sum(n.startswith("up_blocks.") for n in self_attn) == 9


def test_controlnet_params_and_encoder_matches_unet(unet, controlnet):
    assert _n_params(controlnet) == N_CONTROLNET
    cfg = controlnet.config
    assert list(cfg.conditioning_embedding_out_channels) == [16, 32, 96, 256]
    assert cfg.conditioning_channels == 3
    assert cfg.controlnet_conditioning_channel_order == "rgb"

    # Every architecture argument the two configs share is equal (ControlNet = copy of the UNet encoder).
    shared = (set(unet.config) & set(cfg)) - {"_class_name", "_diffusers_version", "_use_default_values"}
    assert {k for k in shared if unet.config[k] != cfg[k]} == set()

    prefixes = ("down_blocks.", "mid_block.", "conv_in.", "time_embedding.")
    u = {k: tuple(p.shape) for k, p in unet.named_parameters() if k.startswith(prefixes)}
    c = {k: tuple(p.shape) for k, p in controlnet.named_parameters() if k.startswith(prefixes)}
    assert any(k.startswith("down_blocks.") for k in u) and any(k.startswith("mid_block.") for k in u)
    assert u == c


def test_vae_config_and_params():
    from diffusers import AutoencoderKL

    vae = _build(AutoencoderKL, "vae")
    cfg = vae.config
    assert list(cfg.block_out_channels) == [128, 256, 512, 512]
    assert cfg.latent_channels == 4 and cfg.sample_size == 512 and cfg.layers_per_block == 2
    assert cfg.scaling_factor == pytest.approx(0.18215)
    assert _n_params(vae) == N_VAE


def test_text_encoder_config_and_params():
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig.from_pretrained(SD15 / "text_encoder")
    assert cfg.architectures == ["CLIPTextModel"]
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (768, 12, 12)
    assert (cfg.intermediate_size, cfg.vocab_size, cfg.max_position_embeddings) == (3072, 49408, 77)
    assert cfg.hidden_act == "quick_gelu" and cfg.projection_dim == 768
    # SD-1.5's values; eos_token_id == 2 selects CLIP's original argmax pooling in transformers.
    assert (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id) == (0, 2, 1)
    with torch.device("meta"):
        model = CLIPTextModel(cfg)
    assert next(model.parameters()).device.type == "meta"
    assert _n_params(model) == N_TEXT


def test_ddim_scheduler():
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_pretrained(SD15 / "scheduler")
    assert type(sched) is DDIMScheduler
    cfg = sched.config
    assert cfg.num_train_timesteps == 1000 and cfg.beta_schedule == "scaled_linear"
    assert cfg.beta_start == pytest.approx(0.00085) and cfg.beta_end == pytest.approx(0.012)
    assert cfg.clip_sample is False and cfg.set_alpha_to_one is False and cfg.steps_offset == 1
    assert cfg.timestep_spacing == "leading" and cfg.prediction_type == "epsilon"
    sched.set_timesteps(50)
    ts = sched.timesteps.tolist()
    assert ts == list(range(981, 0, -20))
    assert ts[:2] == [981, 961] and ts[-1] == 1 and len(ts) == 50


def test_tokenizer_files():
    tok_dir = SD15 / "tokenizer"
    vocab = json.loads((tok_dir / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == 49408 and sorted(vocab.values()) == list(range(49408))
    assert vocab["<|startoftext|>"] == BOS and vocab["<|endoftext|>"] == EOS
    merges = (tok_dir / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0] == "#version: 0.2" and len(merges) == 1 + 48894
    assert (tok_dir / "LICENSE-CLIP.txt").is_file()


def test_tokenizer_ids(tokenizer):
    assert len(tokenizer) == 49408 and tokenizer.vocab_size == 49408
    assert tokenizer.model_max_length == 77
    assert tokenizer.bos_token == "<|startoftext|>"
    assert tokenizer.eos_token == tokenizer.unk_token == tokenizer.pad_token == "<|endoftext|>"

    empty = tokenizer("", padding="max_length", max_length=77, truncation=True).input_ids
    assert empty == [BOS] + [EOS] * 76
    assert tokenizer("a photo of a cat").input_ids == [BOS, 320, 1125, 539, 320, 2368, EOS]
    # Lower-casing and whitespace normalisation as in CLIP's SimpleTokenizer.
    assert tokenizer("A  Photo of a CAT").input_ids == tokenizer("a photo of a cat").input_ids

    long = tokenizer("cat " * 100, padding="max_length", max_length=77, truncation=True).input_ids
    assert len(long) == 77 and long[0] == BOS and long[-1] == EOS
