"""`magicpose benchmark flops`: the FLOP counter sees attention, our loop saves what it should, same results.

FLOPs are counted on SD-1.5-shaped models on the meta device (no weights); the identity checks run the tiny configs
with random weights on CPU.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention

from magicpose.bench.sampling import (
    GUIDANCE_SCALE,
    attention_flops,
    attention_op_flops,
    build_tiny_pipeline,
    count_flops,
    count_structures,
    example_inputs,
    initial_noise,
    one_step_difference,
    original_sample,
    ours_step,
)
from magicpose.bench.temporal import count_motion, motion_module_flops, window_overhead
from magicpose.errors import UserError
from magicpose.models.attention import ReferenceBank, ReferenceReadProcessor

F_TARGET = 16


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny models gain nothing from intra-op threads, and on shared cores a second thread can make them
    several times slower (every op waits for the busy core)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def sd15():
    """(a) and (b) at F = 16 on the SD-1.5 configs (meta device; about 10 s)."""
    return count_structures("configs/models/sd15", frames=[F_TARGET], steps=50, size=512, with_vae=False)


@pytest.fixture(scope="module")
def sd15_motion():
    """The SD-1.5 UNet with and without the mm_sd_v15_v2-shaped motion adapter, F = 16 (meta device; about 3 s)."""
    return count_motion("configs/models/sd15", frames=F_TARGET, size=512)


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_pipeline("configs/models/tiny")


# ------------------------------------------------------------------------------------- (1) attention is counted


def _attention_layer(device: str, query_dim: int = 64, heads: int = 4, dim_head: int = 16) -> Attention:
    with torch.device(device):
        attn = Attention(query_dim=query_dim, heads=heads, dim_head=dim_head, bias=False)
    attn.set_processor(ReferenceReadProcessor("attn1"))
    return attn.eval()


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_counter_includes_attention_in_one_layer(device):
    """Every FLOP of a bank-reading attn1 layer, by hand: the projections plus 4·B·h·N·M·d of attention."""
    b, r, n, c, heads, d = 2, 1, 96, 64, 4, 16
    inner = heads * d
    attn = _attention_layer(device, c, heads, d)
    hidden = torch.randn(b, n, c, device=device)
    bank = ReferenceBank()
    bank.write("attn1", torch.randn(r, n, c, device=device))

    total, per_op, _ = count_flops(lambda: attn(hidden, reference_bank=bank))
    plain, plain_ops, _ = count_flops(lambda: attn(hidden))

    projections = (
        2 * b * n * c * inner * 3 + 2 * r * n * c * inner * 2 + 2 * b * n * inner * c
    )  # q,k,v; ref k,v; out
    attention = attention_flops(b, heads, n, 2 * n, d)
    assert attention_op_flops(per_op) == attention
    assert total == projections + attention
    # Without the bank: N keys instead of 2N and no reference projections.
    assert attention_op_flops(plain_ops) == attention_flops(b, heads, n, n, d)
    assert total - plain == attention_flops(b, heads, n, n, d) + 2 * r * n * c * inner * 2


def test_counter_includes_attention_in_the_sd15_unet(sd15):
    """Switching the bank on adds at least the hand-computed extra attention of the 16 attn1 layers at 512²."""
    check = sd15.attention_check
    # one SD-1.5 attn1 layer at 64x64 latents reading the bank: 4096 queries x 8192 keys, 8 heads of 40
    assert (check["layer_tokens"], check["layer_keys"], check["layer_heads"], check["layer_head_dim"]) == (
        4096,
        8192,
        8,
        40,
    )
    assert check["layer_attention_hand_gflop"] == pytest.approx(4 * 4096 * 8192 * 8 * 40 / 1e9)
    assert check["layer_attention_counted_gflop"] == pytest.approx(
        check["layer_attention_hand_gflop"], rel=1e-9
    )
    hand = check["unet_bank_extra_attention_hand_gflop"]
    assert hand == pytest.approx(
        122.49, abs=0.01
    )  # Σ 4·N²·C over 5 layers at 64², 5 at 32², 5 at 16², mid at 8²
    assert check["unet_bank_extra_attention_counted_gflop"] == pytest.approx(hand, rel=1e-9)
    assert check["unet_bank_extra_counted_gflop"] >= hand
    steps = sd15.per_step_gflop
    assert steps["unet_conditional"] - steps["unet_unconditional"] >= hand


# ------------------------------------------------------------------------------------- (2) the saving on SD-1.5


def test_ours_at_16_frames_costs_at_most_two_thirds_of_the_original(sd15):
    steps = sd15.per_step_gflop
    assert steps["unet_unconditional"] == pytest.approx(803.3, abs=0.5)  # SD-1.5 UNet forward at 512²
    assert steps["appearance_unet"] == pytest.approx(steps["unet_unconditional"])
    assert steps["controlnet"] == pytest.approx(283.3, abs=0.5)
    # (a) counted as written equals its pieces: appearance + ControlNet twice + both UNet halves.
    pieces = (
        steps["appearance_unet"]
        + 2 * steps["controlnet"]
        + steps["unet_conditional"]
        + steps["unet_unconditional"]
    )
    assert sd15.original_gflop_per_frame == pytest.approx(pieces * 50, rel=1e-9)
    # (b) per frame: the appearance UNet amortised over F, ControlNet once.
    ours = sd15.ours_gflop_per_frame[F_TARGET]
    assert ours < sd15.original_gflop_per_frame
    assert sd15.ratio(ours) <= 0.67
    floor = sd15.floor_gflop_per_frame
    assert floor < ours
    per_frame = steps["controlnet"] + steps["unet_conditional"] + steps["unet_unconditional"]
    assert floor == pytest.approx(
        per_frame * 50, rel=0.03
    )  # less the bank's K/V projections, shared by the batch


# ------------------------------------------------------------------------------------- (3) same results


def test_poses_matter_after_perturbing_the_zero_convs(tiny):
    """Otherwise the identity checks below would not exercise the ControlNet at all."""
    model = tiny.magicpose_model
    size = tiny.unet.config.sample_size * tiny.vae_scale_factor
    text = tiny.encode_text("")
    reference = torch.randn(1, 4, size // tiny.vae_scale_factor, size // tiny.vae_scale_factor)
    latents = reference.expand(2, -1, -1, -1)
    poses = torch.stack([torch.zeros(3, size, size), torch.ones(3, size, size)])
    with torch.no_grad():
        eps = ours_step(model, latents, 981, reference, text, text, poses)
    assert (eps[0] - eps[1]).abs().max() > 1e-3


def test_same_eps_for_one_step(tiny):
    """(a) frame by frame and (b) batched give the same Image-CFG eps for 3 frames.

    In float32 the batch-1 and batch-3 kernels round differently and the CFG scale 7 multiplies eps_c - eps_u by
    7 (and eps_u by -6): about 1e-5 absolute at |eps| ~ 3, i.e. 4e-6 relative. In float64 the two agree to 1e-13,
    so the structures compute the same function.
    """
    diff, scale = one_step_difference(tiny, num_frames=3)
    assert scale > 0.1
    assert diff <= 1e-5 * max(1.0, scale)
    double = copy.deepcopy(tiny).to(torch.float64)
    diff64, _ = one_step_difference(double, num_frames=3)
    assert diff64 <= 1e-10


def test_same_frames_for_a_full_run(tiny):
    size = tiny.unet.config.sample_size * tiny.vae_scale_factor
    reference_image, pose_images = example_inputs(3, size, seed=1)
    noise = initial_noise(tiny, size, seed=1)
    ours = tiny(
        reference_image,
        pose_images,
        num_inference_steps=3,
        guidance_scale=GUIDANCE_SCALE,
        frames_per_batch=3,
        latents=noise,
        output_type="np",
    ).frames[0]
    original = original_sample(tiny, reference_image, pose_images, "", 3, GUIDANCE_SCALE, noise, size)
    assert ours.shape == original.shape == (3, size, size, 3)
    assert np.abs(ours - original).max() <= 1e-5
    assert np.abs(ours[0] - ours[1]).max() > 1e-3  # different poses, different frames


# ------------------------------------------------------------------------------------- (4) the motion module


def test_motion_module_adds_exactly_its_counted_flops_at_tiny_size():
    """Tiny UNet + tiny MotionAdapter on F = 16 frames: the motion UNet costs more, and the difference is the motion
    modules' own FLOPs (the counter's per-module totals, and the hand count), less the time embedding that
    UNetMotionModel runs once per video instead of once per frame."""
    m = count_motion("configs/models/tiny", frames=F_TARGET, size=64)
    assert (m.latent_size, m.motion_modules) == (32, 7)  # 2 down blocks x 1 + mid 1 + 2 up blocks x 2
    assert m.with_gflop_per_frame > m.without_gflop_per_frame
    difference = m.with_gflop_per_frame - m.without_gflop_per_frame
    assert m.motion_gflop_per_frame == pytest.approx(difference, rel=1e-3)
    # Exactly: time embedding = two linears C0 -> 4 C0 -> 4 C0 (2·(4 + 16)·C0² FLOPs per row), 1 row instead of F.
    c0 = 32
    time_embedding = 2 * (4 + 16) * c0 * c0
    assert m.other_gflop_per_frame == pytest.approx(-(F_TARGET - 1) * time_embedding / F_TARGET / 1e9, rel=1e-9)
    assert difference == pytest.approx(m.motion_gflop_per_frame + m.other_gflop_per_frame, rel=1e-9)
    assert m.motion_gflop_per_frame == pytest.approx(m.motion_hand_gflop_per_frame, rel=1e-12)
    assert m.motion_attention_gflop_per_frame == pytest.approx(m.motion_attention_hand_gflop_per_frame, rel=1e-12)
    assert 0 < m.motion_attention_gflop_per_frame < m.motion_gflop_per_frame
    assert m.ratio > 1 and 0 < m.motion_share < 1
    assert m.adapter_params == sum(p.numel() for p in _tiny_adapter().parameters())


def _tiny_adapter():
    from diffusers import MotionAdapter

    with torch.device("meta"):
        return MotionAdapter.from_config(MotionAdapter.load_config("configs/models/tiny/motion_adapter"))


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_temporal_attention_of_one_motion_module_by_hand(device):
    """One diffusers motion module (C = 32, 4 heads of 8, as the tiny adapter's first) on 2 videos of F = 16
    frames at 8x8: it attends along time, so the attention batch is the 2·64 positions and the tokens are the F
    frames; two self-attentions (attn1, attn2: `double_self_attention`, no text) of 4·B·heads·F·F·d each."""
    from diffusers.models.unets.unet_motion_model import MotionModules

    b, f, c, heads, side = 2, F_TARGET, 32, 4, 8
    with torch.device(device):
        modules = MotionModules(c, 1, transformer_layers_per_block=1, num_attention_heads=heads, norm_num_groups=8)
    module = modules.motion_modules[0]
    module.eval()
    assert len(module.transformer_blocks) == 1
    hidden = torch.randn(b * f, c, side, side, device=device)
    total, per_op, out = count_flops(lambda: module(hidden, num_frames=f))
    assert out.shape == hidden.shape
    d = c // heads
    attention = 2 * 4 * (b * side * side) * heads * f * f * d
    assert attention == 2 * 4 * 128 * 4 * 16 * 16 * 8 == 8_388_608
    assert attention_op_flops(per_op) == attention
    tokens = b * side * side * f
    # proj in/out, attn1 q k v out, attn2 q k v out, GEGLU C->8C, 4C->C: 2·T·C_in·C_out each
    linears = 2 * tokens * c * c * (2 + 4 + 4 + 8 + 4)
    assert total == linears + attention
    assert motion_module_flops(side * side, f, c, heads, layers=1, batch=b) == (total, attention)


def test_window_overhead_is_exact():
    """Frames computed per output frame of `context_windows` with windows of 16 sharing 4."""
    w = window_overhead([16, 64, 70, 256], 16, 4)
    by_frames = {v["num_frames"]: v for v in w.videos}
    assert by_frames[16]["starts"] == [0] and by_frames[16]["per_output_frame"] == 1.0
    assert by_frames[64]["starts"] == [0, 12, 24, 36, 48]
    assert by_frames[64]["computed_frames"] == 80 and by_frames[64]["per_output_frame"] == 80 / 64 == 1.25
    # not a whole number of strides: the last window is pulled back to end at the last frame
    assert by_frames[70]["starts"] == [0, 12, 24, 36, 48, 54] and by_frames[70]["computed_frames"] == 96
    assert by_frames[256]["starts"] == list(range(0, 241, 12))
    assert by_frames[256]["computed_frames"] == 21 * 16 == 336 and by_frames[256]["per_output_frame"] == 1.3125
    assert w.limit == 16 / 12
    assert window_overhead([10_000], 16, 4).videos[0]["per_output_frame"] == pytest.approx(w.limit, rel=1e-3)
    with pytest.raises(UserError):
        window_overhead([64], 16, 16)


def test_motion_module_at_sd15_size(sd15_motion):
    """mm_sd_v15_v2's shape on the SD-1.5 UNet at 512², F = 16: the plain UNet is the 803 GFLOP counted above,
    the motion modules add ~38 %, nearly all of it in their linear layers (attention over 16 frames is cheap)."""
    m = sd15_motion
    assert m.adapter_params == 453_209_280  # mm_sd_v15_v2
    assert m.motion_unet_params == m.unet_params + m.adapter_params
    assert m.motion_modules == 21  # 4 down blocks x 2, mid 1, 4 up blocks x 3
    assert m.without_gflop_per_frame == pytest.approx(803.3, abs=0.05)  # = unet_unconditional above, per frame
    assert m.with_gflop_per_frame == pytest.approx(1109.3, abs=0.1)
    assert m.motion_gflop_per_frame == pytest.approx(m.motion_hand_gflop_per_frame, rel=1e-12)
    assert m.motion_gflop_per_frame == pytest.approx(
        m.with_gflop_per_frame - m.without_gflop_per_frame, rel=1e-4
    )
    assert m.ratio == pytest.approx(1.381, abs=0.001)
    assert m.motion_attention_gflop_per_frame < 0.01 * m.motion_gflop_per_frame


# ------------------------------------------------------------------------------------- the command


def test_cli_prints_the_table_and_writes_json(tmp_path, capsys, monkeypatch, sd15, sd15_motion):
    """`magicpose benchmark flops`: arguments reach the counters (reused from the sd15 fixtures to save ~13 s), the
    table, the wall-clock lines and the motion-module section are printed, the JSON is written."""
    import magicpose.bench.sampling as benchmark
    import magicpose.bench.temporal as temporal
    from magicpose.cli import main

    calls, motion_calls = [], []

    def counted(components, frames, steps, size):
        calls.append((components, frames, steps, size))
        return sd15

    def motion_counted(components, frames, size):
        motion_calls.append((components, frames, size))
        return sd15_motion

    monkeypatch.setattr(benchmark, "count_structures", counted)
    monkeypatch.setattr(temporal, "count_motion", motion_counted)
    out = tmp_path / "bench.json"
    argv = ["benchmark", "flops", "--frames", str(F_TARGET), "--steps", "2", "--wallclock-frames", "2"]
    assert main([*argv, "--json", str(out)]) == 0
    assert calls == [("configs/models/sd15", [F_TARGET], 2, 512)]
    text = capsys.readouterr().out
    for row in ("| original (1 frame at a time) |", f"| ours F={F_TARGET} |", "| floor (F → ∞) |"):
        assert row in text
    assert "Wall-clock" in text and "2 frames, 2 steps" in text
    data = json.loads(out.read_text())
    assert set(data["ours_gflop_per_frame"]) == {str(F_TARGET)}
    assert data["ratio_to_original"][f"ours_F{F_TARGET}"] <= 0.67
    clock = data["wallclock"]
    assert clock["steps"] == 2 and clock["frames"] == 2 and clock["threads"] == 1
    assert clock["max_abs_diff"] <= 1e-5
    # the motion module (default --context-length 16 --context-overlap 4 --video-frames 16 64 256)
    assert motion_calls == [("configs/models/sd15", F_TARGET, 512)]
    assert "Motion module (stage 3)" in text and "| with: UNetMotionModel on `1 c 16 h w` |" in text
    assert "| 64 | 5 | 80 | 1.2500 |" in text and "16/12 = 1.3333" in text
    assert "Whole MagicPose step" in text  # F = 16 is among --frames
    motion = data["motion_module"]
    assert motion["adapter_params"] == 453_209_280 and motion["ratio"] == pytest.approx(1.381, abs=0.001)
    assert [v["per_output_frame"] for v in motion["windows"]["videos"]] == [1.0, 1.25, 1.3125]
    assert motion["windows"]["limit"] == 16 / 12
    # --context-length 0: no motion section
    assert main([*argv, "--wallclock-frames", "0", "--context-length", "0", "--json", str(out)]) == 0
    assert "Motion module" not in capsys.readouterr().out
    assert json.loads(out.read_text())["motion_module"] is None and len(motion_calls) == 1
