"""Reference-bank attention processors: identities against diffusers' stock attention and the original formula."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from einops import rearrange

from magicpose.models.attention import (
    BANK_KWARG,
    ReferenceBank,
    ReferenceReadProcessor,
    ReferenceWriteProcessor,
    install_reference_reader,
    install_reference_writer,
    self_attention_names,
)

from .conftest import REPO


def _attention(seed: int = 0, dim: int = 32, heads: int = 4) -> Attention:
    torch.manual_seed(seed)
    return Attention(query_dim=dim, heads=heads, dim_head=dim // heads).eval()


def _original_reference_attention(attn: Attention, h: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """MagicDance's read mode, written as the paper states it: K, V from cat([h, ref]) over tokens, softmax(QK^T/sqrt d)V."""
    kv_source = torch.cat([h, ref], dim=1)
    q, k, v = attn.to_q(h), attn.to_k(kv_source), attn.to_v(kv_source)
    q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=attn.heads) for t in (q, k, v))
    weights = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).softmax(dim=-1)
    out = rearrange(weights @ v, "b h n d -> b n (h d)")
    return attn.to_out[0](out)


@torch.no_grad()
def test_read_processor_without_bank_equals_stock_sdpa_exactly():
    attn = _attention()
    h = torch.randn(3, 16, 32)
    expected = AttnProcessor2_0()(attn, h)
    reader = ReferenceReadProcessor("layer")
    assert torch.equal(reader(attn, h), expected)
    assert torch.equal(reader(attn, h, reference_bank=ReferenceBank()), expected)  # bank without this layer
    other = ReferenceBank()
    other.write("another.layer", torch.randn(1, 8, 32))
    assert torch.equal(reader(attn, h, reference_bank=other), expected)


@torch.no_grad()
def test_read_processor_matches_the_original_concatenated_keys_formula():
    attn = _attention()
    h, ref = torch.randn(2, 16, 32), torch.randn(2, 24, 32)
    bank = ReferenceBank()
    bank.write("layer", ref)
    ours = ReferenceReadProcessor("layer")(attn, h, reference_bank=bank)
    torch.testing.assert_close(ours, _original_reference_attention(attn, h, ref), atol=1e-5, rtol=1e-5)
    # and it really differs from plain self-attention
    assert (ours - AttnProcessor2_0()(attn, h)).abs().max() > 1e-3


@torch.no_grad()
def test_one_reference_broadcasts_over_frames_exactly_as_per_frame_calls():
    attn = _attention()
    frames, ref = torch.randn(5, 16, 32), torch.randn(1, 24, 32)
    bank = ReferenceBank()
    bank.write("layer", ref)
    reader = ReferenceReadProcessor("layer")
    batched = reader(attn, frames, reference_bank=bank)
    single = torch.cat([reader(attn, frames[i : i + 1], reference_bank=bank) for i in range(5)])
    torch.testing.assert_close(batched, single, atol=1e-6, rtol=1e-6)


@torch.no_grad()
def test_several_references_use_the_n_r_layout():
    attn = _attention()
    h, refs = torch.randn(4, 16, 32), torch.randn(2, 24, 32)
    bank = ReferenceBank()
    bank.write("layer", refs)
    out = ReferenceReadProcessor("layer")(attn, h, reference_bank=bank)
    for b in range(4):  # item b reads reference b % 2
        expected = _original_reference_attention(attn, h[b : b + 1], refs[b % 2 : b % 2 + 1])
        torch.testing.assert_close(out[b : b + 1], expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="not a multiple"):
        ReferenceReadProcessor("layer")(attn, h[:3], reference_bank=bank)


@torch.no_grad()
def test_write_processor_records_input_and_attends_like_stock():
    attn = _attention()
    h = torch.randn(1, 16, 32)
    bank = ReferenceBank()
    out = ReferenceWriteProcessor("layer")(attn, h, reference_bank=bank)
    assert torch.equal(out, AttnProcessor2_0()(attn, h))
    assert torch.equal(bank.read("layer"), h)


def test_sd15_appearance_unet_writes_16_banks_that_the_main_unet_reads():
    """On the SD-1.5 architecture (meta device: shapes only) the bank covers encoder, middle and decoder."""
    config = UNet2DConditionModel.load_config(REPO / "configs/models/sd15/unet")
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
        latents, text = torch.randn(1, 4, 64, 64), torch.randn(1, 77, 768)
    names = self_attention_names(unet)
    assert len(names) == 16
    assert sum(n.startswith("down_blocks") for n in names) == 6
    assert sum(n.startswith("mid_block") for n in names) == 1
    assert sum(n.startswith("up_blocks") for n in names) == 9

    install_reference_writer(unet)
    bank = ReferenceBank()
    with torch.no_grad():
        unet(latents, 10, text, cross_attention_kwargs={BANK_KWARG: bank})
    assert sorted(bank) == sorted(names)
    tokens = [bank.read(n).shape[1] for n in bank]  # forward order: encoder, middle, decoder
    assert tokens == [4096] * 2 + [1024] * 2 + [256] * 2 + [64] + [256] * 3 + [1024] * 3 + [4096] * 3

    install_reference_reader(unet)
    readers = [p for p in unet.attn_processors.values() if isinstance(p, ReferenceReadProcessor)]
    assert sorted(p.name for p in readers) == sorted(names)
