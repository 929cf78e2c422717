"""Follow-Your-Pose models: video UNet identities, sparse-causal attention, frame-pooled GroupNorm, pose adapter."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention
from torch import nn

from magicpose.models.attention import AttentionSettings
from magicpose.models.pose_adapter import (
    adapter_key_to_original,
    build_pose_adapter,
    original_adapter_key,
    pose_features,
)
from magicpose.models.video_unet import (
    FrameContext,
    FramePooledGroupNorm,
    SparseCausalProcessor,
    TemporalConv,
    VideoUNet,
    gather_frames,
    trainable_parameter_names,
)

from .conftest import REPO

UNET_DIR = REPO / "configs/models/fyp_tiny/unet"


@pytest.fixture(scope="module")
def unet2d():
    torch.manual_seed(0)
    return UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(UNET_DIR)).eval()


@pytest.fixture(scope="module")
def video_unet(unet2d):
    torch.manual_seed(1)
    model = VideoUNet.from_unet2d(unet2d, zero_init_temporal_attention=False).eval()
    # random temporal weights everywhere, so that "zeroed" below is a real choice
    with torch.no_grad():
        for block in model.transformer_blocks():
            block.conv_temporal.up.weight.normal_(std=0.1)
    return model


def _zero_temporal(model: VideoUNet) -> VideoUNet:
    import copy

    model = copy.deepcopy(model)
    with torch.no_grad():
        for block in model.transformer_blocks():
            block.attn_temp.to_out[0].weight.zero_()
            block.attn_temp.to_out[0].bias.zero_()
            block.conv_temporal.up.weight.zero_()
    return model


def _inputs(batch=2, frames=1, side=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, 4, frames, side, side, generator=gen)
    text = torch.randn(batch, 7, 32, generator=gen)
    return sample, torch.tensor([10, 700][:batch]), text


@torch.no_grad()
def test_one_frame_zeroed_temporal_no_pose_equals_stock_unet(video_unet, unet2d):
    zeroed = _zero_temporal(video_unet)
    sample, t, text = _inputs()
    expected = unet2d(sample[:, :, 0], t, text).sample
    for pooled in (True, False):
        zeroed.set_frame_pooled_norm(pooled)
        got = zeroed(sample, t, text)[:, :, 0]
        assert (got - expected).abs().max() < 1e-5
    # the temporal branches are live: with their random weights the output moves
    assert (video_unet(sample, t, text)[:, :, 0] - expected).abs().max() > 1e-3


@torch.no_grad()
def test_one_frame_with_pose_equals_stock_unet_with_t2i_adapter(video_unet, unet2d):
    zeroed = _zero_temporal(video_unet)
    torch.manual_seed(3)
    adapter = build_pose_adapter(unet2d.config.block_out_channels, downscale_factor=2).eval()
    sample, t, text = _inputs()
    pose = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    feats = pose_features(adapter, pose, scale=0.7)
    expected = unet2d(sample[:, :, 0], t, text,
                      down_intrablock_additional_residuals=[f * 0.7 for f in adapter(pose)]).sample
    got = zeroed(sample, t, text, pose_features=feats)[:, :, 0]
    assert (got - expected).abs().max() < 1e-5
    assert (got - zeroed(sample, t, text)[:, :, 0]).abs().max() > 1e-3


@torch.no_grad()
def test_pose_feature_lands_after_the_last_layer_of_its_down_block_before_the_skip(video_unet):
    """Block 0 (cross-attention) and block 3 (plain ResNets): last skip moves by exactly the feature."""
    sample, t, text = _inputs(batch=1, frames=2)
    shapes = [(2, c, 16 >> i, 16 >> i) for i, c in enumerate(video_unet.unet.config.block_out_channels)]
    gen = torch.Generator().manual_seed(7)
    for level in (0, 3):
        feats = [torch.zeros(s) for s in shapes]
        feats[level] = torch.randn(shapes[level], generator=gen)
        skips = []
        hook = video_unet.unet.down_blocks[level].register_forward_hook(lambda m, a, out, skips=skips: skips.append(out[1]))
        try:
            video_unet(sample, t, text)
            video_unet(sample, t, text, pose_features=feats)
        finally:
            hook.remove()
        plain, posed = skips
        layers = len(video_unet.unet.down_blocks[level].resnets)
        assert torch.allclose(posed[layers - 1] - plain[layers - 1], feats[level], atol=1e-5)
        assert torch.equal(posed[0], plain[0])  # the first layer is untouched


def _direct_sparse_causal(attn: Attention, x: torch.Tensor, frames: int) -> torch.Tensor:
    """softmax(q_i k^T / sqrt(d)) v with k, v from [x_0; x_{max(i-1, 0)}], head by head, frame by frame."""
    b = x.shape[0] // frames
    x = x.view(b, frames, *x.shape[1:])
    heads, out = attn.heads, torch.empty_like(x)
    for clip in range(b):
        for i in range(frames):
            q = attn.to_q(x[clip, i])
            context = torch.cat([x[clip, 0], x[clip, max(i - 1, 0)]])
            k, v = attn.to_k(context), attn.to_v(context)
            d = q.shape[-1] // heads
            rows = []
            for h in range(heads):
                s = slice(h * d, (h + 1) * d)
                weights = torch.softmax(q[:, s] @ k[:, s].T / d**0.5, dim=-1)
                rows.append(weights @ v[:, s])
            out[clip, i] = attn.to_out[0](torch.cat(rows, dim=-1))
    return out.flatten(0, 1)


@torch.no_grad()
def test_sparse_causal_processor_equals_the_formula():
    torch.manual_seed(0)
    attn = Attention(query_dim=24, heads=3, dim_head=8, bias=False)
    context = FrameContext(num_frames=5)
    attn.set_processor(SparseCausalProcessor(context))
    x = torch.randn(2 * 5, 6, 24)
    got = attn(x)
    assert (got - _direct_sparse_causal(attn, x, 5)).abs().max() < 1e-5
    # frame 2's own tokens play no part: changing them changes only frames 2 (its queries) and 3 (its "previous")
    y = x.clone()
    y[2] += 1.0
    diff = (attn(y) - got).abs().view(2, 5, -1).amax(dim=-1)
    assert diff[0, 2] > 0 and diff[0, 3] > 0 and float(diff[0, [0, 1, 4]].max()) == 0 and float(diff[1].max()) == 0


@torch.no_grad()
@pytest.mark.parametrize("slice_size", [1, 2, 4])
def test_sliced_sparse_causal_processor_equals_the_formula(slice_size):
    """diffusers-style slicing (`slice_size` (batch x head) rows at a time) changes nothing but the memory."""
    torch.manual_seed(0)
    attn = Attention(query_dim=24, heads=3, dim_head=8, bias=False)
    context = FrameContext(num_frames=5)
    x = torch.randn(2 * 5, 6, 24)
    attn.set_processor(SparseCausalProcessor(context, settings=AttentionSettings(slice_size=slice_size)))
    assert attn.processor.slice_size == slice_size
    assert (attn(x) - _direct_sparse_causal(attn, x, 5)).abs().max() < 1e-5


@torch.no_grad()
def test_frame_pooled_group_norm_matches_5d_group_norm_and_differs_from_per_frame():
    torch.manual_seed(0)
    reference = nn.GroupNorm(4, 8, eps=1e-5)
    nn.init.normal_(reference.weight)
    nn.init.normal_(reference.bias)
    context = FrameContext(num_frames=3)
    norm = FramePooledGroupNorm.like(reference, context)
    clip = torch.randn(2, 8, 3, 5, 5) * torch.linspace(0.5, 3, 3).view(1, 1, 3, 1, 1)  # frames differ in scale
    folded = clip.permute(0, 2, 1, 3, 4).flatten(0, 1)  # b c f h w -> (b f) c h w
    on = norm(folded)
    direct = reference(clip).permute(0, 2, 1, 3, 4).flatten(0, 1)  # torch GroupNorm on the 5-D tensor
    assert (on - direct).abs().max() < 1e-5
    context.frame_pooled_norm = False
    off = norm(folded)
    assert torch.allclose(off, reference(folded), atol=1e-6)
    assert (on - off).abs().max() > 0.1


@torch.no_grad()
def test_frame_pooled_norm_changes_the_video_unet_output(video_unet):
    sample, t, text = _inputs(batch=1, frames=3)
    sample = sample * torch.linspace(0.2, 3, 3).view(1, 1, 3, 1, 1)
    on = video_unet(sample, t, text)
    video_unet.set_frame_pooled_norm(False)
    try:
        off = video_unet(sample, t, text)
    finally:
        video_unet.set_frame_pooled_norm(True)
    assert (on - off).abs().max() > 1e-3


def test_temporal_conv_rank_guard_and_zero_init_and_trainable_names(video_unet):
    conv = TemporalConv(320)
    assert conv.down.weight.shape == (160, 320, 3) and conv.up.weight.shape == (320, 160, 3)
    assert not conv.up.weight.any()
    assert TemporalConv(32).down.weight.shape == (16, 32, 3)  # the original's silent rank = width // 2
    names = trainable_parameter_names(video_unet, ("attn1.to_q", "attn2.to_q", "attn_temp", "conv_temporal"))
    blocks = len(video_unet.transformer_blocks())
    # per block: attn1.to_q, attn2.to_q, attn_temp.{to_q,to_k,to_v,to_out.0.weight,to_out.0.bias}, conv down/up
    assert len(names) == 9 * blocks
    assert not any("norm_temp" in n or "to_k" in n.split("attn_temp")[0] for n in names)


class _OriginalResBlock(nn.Module):
    """The original adapter's residual block, re-written from the report (in->1x1 on width change, pool first)."""

    def __init__(self, cin: int, cout: int, down: bool) -> None:
        super().__init__()
        self.down = nn.AvgPool2d(2, 2) if down else None
        self.in_conv = nn.Conv2d(cin, cout, 1) if cin != cout else None
        self.block1 = nn.Conv2d(cout, cout, 3, padding=1)
        self.block2 = nn.Conv2d(cout, cout, 1)

    def forward(self, x):
        x = self.down(x) if self.down is not None else x
        x = self.in_conv(x) if self.in_conv is not None else x
        return self.block2(torch.relu(self.block1(x))) + x


class _OriginalAdapter(nn.Module):
    def __init__(self, channels, nums_rb=2, unshuffle=8) -> None:
        super().__init__()
        self.unshuffle, self.nums_rb = nn.PixelUnshuffle(unshuffle), nums_rb
        self.conv_in = nn.Conv2d(3 * unshuffle**2, channels[0], 3, padding=1)
        self.body = nn.ModuleList(
            _OriginalResBlock(channels[max(i - 1, 0)] if j == 0 else channels[i], channels[i], i != 0 and j == 0)
            for i in range(len(channels)) for j in range(nums_rb)
        )

    def forward(self, x):
        x, features = self.conv_in(self.unshuffle(x)), []
        for i, block in enumerate(self.body):
            x = block(x)
            if i % self.nums_rb == self.nums_rb - 1:
                features.append(x)
        return features


@torch.no_grad()
def test_t2i_adapter_reproduces_the_original_pose_encoder_through_the_key_mapping():
    channels = [32, 64, 128, 128]
    torch.manual_seed(0)
    original = _OriginalAdapter(channels)
    state = {k: torch.randn_like(v) * 0.1 for k, v in original.state_dict().items()}
    original.load_state_dict(state)
    ours = build_pose_adapter(channels, downscale_factor=8)
    mapped = {original_adapter_key(k): v for k, v in state.items()}
    assert set(mapped) == set(ours.state_dict())  # every key accounted for, both ways
    ours.load_state_dict(mapped, strict=True)
    assert {adapter_key_to_original(k) for k in mapped} == set(state)
    pose = torch.rand(2, 3, 128, 128)
    for a, b in zip(original(pose), pose_features(ours, pose), strict=True):
        assert a.shape == b.shape and (a - b).abs().max() < 1e-5
    # SD-1.x sizes: the original layout's keys and the 77.37 M parameters of pose_encoder.pth
    sd = build_pose_adapter([320, 640, 1280, 1280], downscale_factor=8)
    assert sum(p.numel() for p in sd.parameters()) == 77_369_280
    assert {adapter_key_to_original(k) for k in sd.state_dict()} >= {"conv_in.weight", "body.2.in_conv.weight",
                                                                      "body.7.block2.bias"}
    with pytest.raises(KeyError):
        original_adapter_key("body.3.in_conv.weight")


def test_sparse_causal_frame_set_is_validated():
    with pytest.raises(ValueError):
        SparseCausalProcessor(FrameContext(), ("first", "next"))
    x = torch.arange(4.0).view(4, 1, 1)  # 1 clip, 4 frames, 1 token
    got = gather_frames(x, 4).view(4, 2).tolist()
    assert got == [[0, 0], [0, 0], [0, 1], [0, 2]]
    assert gather_frames(x, 4, ("self",)).flatten().tolist() == [0, 1, 2, 3]


def test_sd_sized_model_has_the_original_parameter_budget():
    """On the meta device (no memory): SD-1.x inflated as the original = 998.47 M with the adapter, 86.34 M trainable."""
    config = dict(UNet2DConditionModel.load_config(REPO / "configs/models/sd15/unet"))
    with torch.device("meta"):
        model = VideoUNet(unet_config=config)
        adapter = build_pose_adapter(config["block_out_channels"], downscale_factor=8)
    params = dict(model.named_parameters())
    count = {kind: sum(v.numel() for k, v in params.items() if f".{kind}." in k)
             for kind in ("attn_temp", "norm_temp", "conv_temporal")}
    assert count == {"attn_temp": 49_574_080, "norm_temp": 24_960, "conv_temporal": 11_980_800}
    assert sum(v.numel() for v in params.values()) + sum(p.numel() for p in adapter.parameters()) == 998_470_084
    trainable = trainable_parameter_names(model, ("attn1.to_q", "attn2.to_q", "attn_temp", "conv_temporal"))
    assert sum(params[n].numel() for n in trainable) == 86_335_680
    assert len(model.transformer_blocks()) == 16
