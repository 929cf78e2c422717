"""AnimateDiff motion modules (`mm_sd_v15*.ckpt` layout) <-> diffusers `MotionAdapter` (`magicpose.convert.animatediff`).

The released files are not available here; synthetic ones in the original layout are written from random tiny
MotionAdapters by our exporter. So that the exporter cannot simply mirror the importer's mistakes, the original key
names of one motion module are also checked against a hand-written list, and the files are read back by diffusers' own
single-file loader too, whose outputs must equal ours.
"""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch
from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel
from safetensors.torch import load_file

from magicpose.convert.animatediff import (
    convert_motion_module,
    diffusers_key,
    load_motion_checkpoint,
    motion_adapter_config,
    motion_state_to_diffusers,
    motion_state_to_original,
    save_original_motion_checkpoint,
)
from magicpose.convert.cache import CACHE_ENV, convert_sources, detect
from magicpose.errors import UserError

from .conftest import REPO, tiny_spec

TINY = REPO / "configs/models/tiny"
TINY_MA = str(TINY / "motion_adapter")
# mm_sd_v15.ckpt (v1): no mid block, 24 frames, 2 motion modules per down block, 8 heads, 32 norm groups; tiny widths
V1_TINY = {"block_out_channels": [32, 64, 64], "motion_layers_per_block": 2, "motion_transformer_layers_per_block": 1,
           "use_motion_mid_block": False, "motion_mid_block_layers_per_block": 1,
           "motion_transformer_layers_per_mid_block": 1, "motion_max_seq_length": 24, "conv_in_channels": None,
           "motion_num_attention_heads": 8, "motion_norm_num_groups": 32}

# One motion module of the original AnimateDiff, written out by hand (VanillaTemporalModule -> TemporalTransformer3D
# -> TemporalTransformerBlock with two VersatileAttention blocks, each with its own PositionalEncoding buffer).
T0 = "transformer_blocks.0."
ONE_MODULE = [
    "norm.weight", "norm.bias", "proj_in.weight", "proj_in.bias",
    *(f"{T0}attention_blocks.{i}.{name}" for i in (0, 1) for name in (
        "to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight", "to_out.0.bias", "pos_encoder.pe")),
    f"{T0}norms.0.weight", f"{T0}norms.0.bias", f"{T0}norms.1.weight", f"{T0}norms.1.bias",
    f"{T0}ff.net.0.proj.weight", f"{T0}ff.net.0.proj.bias", f"{T0}ff.net.2.weight", f"{T0}ff.net.2.bias",
    f"{T0}ff_norm.weight", f"{T0}ff_norm.bias",
    "proj_out.weight", "proj_out.bias",
]


def _random_adapter(config: dict | str, seed: int) -> MotionAdapter:
    """Random values everywhere (diffusers zero-initialises nothing here, but its norms start at 1 / 0), so that a
    swapped or dropped tensor changes the outputs."""
    if isinstance(config, str):
        config = MotionAdapter.load_config(config)
    adapter = MotionAdapter.from_config(config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in adapter.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.1 + (1.0 if param.ndim == 1 else 0.0))
    return adapter.eval()


@pytest.fixture(scope="module")
def tiny():
    return _random_adapter(TINY_MA, 0)


@pytest.fixture(scope="module")
def v1():
    return _random_adapter(V1_TINY, 1)


def _same_state(a, b) -> None:
    sa = a.state_dict() if isinstance(a, torch.nn.Module) else a
    sb = b.state_dict() if isinstance(b, torch.nn.Module) else b
    assert sorted(sa) == sorted(sb)  # a safetensors file holds its keys sorted
    different = [k for k in sa if sa[k].dtype != sb[k].dtype or not torch.equal(sa[k], sb[k])]
    assert not different, different[:5]


# -------------------------------------------------------------------------------------------- key names

def test_one_motion_module_has_the_original_key_names_and_shapes(tiny):
    prefix = "down_blocks.0.motion_modules.0.temporal_transformer."
    state = motion_state_to_original(tiny)
    assert [k.removeprefix(prefix) for k in state if k.startswith(prefix)] == ONE_MODULE
    assert state[prefix + "transformer_blocks.0.attention_blocks.1.pos_encoder.pe"].shape == (1, 32, 32)
    assert state[prefix + "transformer_blocks.0.ff.net.0.proj.weight"].shape == (256, 32)  # GEGLU: 2 x 4 x width
    # tiny: 2 down + 2 x 2 up + 1 mid motion modules, 28 tensors each; up blocks after down, mid last (the original)
    assert len(state) == 7 * 28
    assert [k.split(".motion_modules")[0] for k in state][::28] == [
        "down_blocks.0", "down_blocks.1", "up_blocks.0", "up_blocks.0", "up_blocks.1", "up_blocks.1", "mid_block"]


def test_the_release_shapes_have_the_released_key_counts():
    """mm_sd_v15_v2: 21 motion modules (8 down, 12 up, 1 mid) -> 588 keys; mm_sd_v15 (v1): 20 -> 560 keys."""
    with torch.device("meta"):
        v2 = MotionAdapter.from_config(MotionAdapter.load_config(REPO / "configs/models/sd15/motion_adapter"))
        v1 = MotionAdapter.from_config({**dict(v2.config), "use_motion_mid_block": False, "motion_max_seq_length": 24})
    assert len(motion_state_to_original(v2)) == 588 and len(motion_state_to_original(v1)) == 560
    sd15 = {k: v for k, v in MotionAdapter.load_config(REPO / "configs/models/sd15/motion_adapter").items()
            if not k.startswith("_")}
    assert motion_adapter_config(motion_state_to_original(v2)) == sd15  # read from shapes alone (meta tensors)
    assert motion_adapter_config(motion_state_to_original(v1)) == {**sd15, "use_motion_mid_block": False,
                                                                   "motion_max_seq_length": 24}
    n_params = sum(p.numel() for p in v2.parameters())  # the positional tables are buffers
    assert n_params == 453_209_280 and f"{n_params:,}" in (REPO / "configs/models/sd15/README.md").read_text()
    state = motion_state_to_original(v2)
    assert state["mid_block.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder"
                 ".pe"].shape == (1, 32, 1280)
    assert state["up_blocks.3.motion_modules.2.temporal_transformer.proj_in.weight"].shape == (320, 320)


def test_hand_written_original_names_map_to_diffusers_names():
    head = "up_blocks.1.motion_modules.2."
    cases = {
        "temporal_transformer.norm.bias": "norm.bias",
        "temporal_transformer.proj_in.weight": "proj_in.weight",
        "temporal_transformer.transformer_blocks.0.attention_blocks.0.to_q.weight": "transformer_blocks.0.attn1.to_q.weight",
        "temporal_transformer.transformer_blocks.0.attention_blocks.1.to_out.0.bias":
            "transformer_blocks.0.attn2.to_out.0.bias",
        "temporal_transformer.transformer_blocks.0.attention_blocks.1.pos_encoder.pe": "transformer_blocks.0.pos_embed.pe",
        "temporal_transformer.transformer_blocks.0.norms.0.weight": "transformer_blocks.0.norm1.weight",
        "temporal_transformer.transformer_blocks.0.norms.1.bias": "transformer_blocks.0.norm2.bias",
        "temporal_transformer.transformer_blocks.0.ff_norm.weight": "transformer_blocks.0.norm3.weight",
        "temporal_transformer.transformer_blocks.0.ff.net.2.weight": "transformer_blocks.0.ff.net.2.weight",
    }
    for original, ours in cases.items():
        assert diffusers_key(head + original) == head + ours
    assert diffusers_key("model.diffusion_model.input_blocks.0.0.weight") is None
    assert diffusers_key("down_blocks.0.attentions.0.proj_in.weight") is None


# -------------------------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("which, suffix, dtype", [("tiny", ".ckpt", torch.float32), ("v1", ".safetensors", torch.float32),
                                                  ("v1", ".pth", torch.float16)])
def test_original_ours_original_round_trips_exactly(tiny, v1, which, suffix, dtype, tmp_path):
    """Also in float16 (the positional tables then differ from diffusers' float32 table by rounding only)."""
    adapter = copy.deepcopy({"tiny": tiny, "v1": v1}[which]).to(dtype)
    path = save_original_motion_checkpoint(adapter, tmp_path / f"mm{suffix}")
    config = TINY_MA if which == "tiny" else None  # v1: everything inferred (AnimateDiff's heads and groups)
    loaded = load_motion_checkpoint(path, config)
    _same_state(loaded, adapter)
    assert {k: loaded.config[k] for k in V1_TINY} == {k: adapter.config[k] for k in V1_TINY}
    written = load_file(path) if suffix == ".safetensors" else torch.load(path, weights_only=True)
    _same_state(motion_state_to_original(loaded), written)
    if suffix != ".safetensors":  # a pickle keeps the order: the original's
        assert list(written) == list(motion_state_to_original(loaded))
    save_original_motion_checkpoint(loaded, tmp_path / f"again{suffix}")
    again = load_file(tmp_path / f"again{suffix}") if suffix == ".safetensors" else torch.load(
        tmp_path / f"again{suffix}", weights_only=True)
    _same_state(again, written)


def test_inferred_config_and_a_state_dict_wrapper(v1, tmp_path):
    state = motion_state_to_original(v1)
    assert motion_adapter_config(state) == V1_TINY
    assert motion_adapter_config(state, defaults=TINY_MA)["motion_num_attention_heads"] == 4  # what no shape shows
    ours = motion_state_to_diffusers(state)
    _same_state({k: ours[k] for k in v1.state_dict()}, v1)
    # a training-style .ckpt: the state dict under "state_dict", beside the training state
    torch.save({"state_dict": state, "global_step": 10}, tmp_path / "mm_sd_v15.ckpt")
    report = convert_motion_module(tmp_path / "mm_sd_v15.ckpt", tmp_path / "out")
    _same_state(MotionAdapter.from_pretrained(tmp_path / "out"), v1)
    assert any("state_dict" in note for note in report.notes)
    assert len(report.dropped[next(iter(report.dropped))]) == 15  # the second positional table of each module


# -------------------------------------------------------------------------------------------- strictness

@pytest.mark.parametrize("damage, expected", [
    ("missing", r"1 missing \(up_blocks\.1\.motion_modules\.1\.temporal_transformer\.transformer_blocks\.0\."
                r"attention_blocks\.0\.to_k\.weight\)"),
    ("extra", r"1 unexpected \(down_blocks\.0\.motion_modules\.0\.temporal_transformer\.transformer_blocks\.0\."
              r"attention_blocks\.2\.to_q\.weight\)"),
    ("stray", r"1 unexpected \(model\.diffusion_model\.out\.0\.weight\)"),
    ("shape", r"1 with the wrong shape \(down_blocks\.1\.motion_modules\.0\.temporal_transformer\.transformer_blocks"
              r"\.0\.ff\.net\.2\.weight \(64, 100\) vs \(64, 256\)\)"),
    ("pe", r"mid_block\.motion_modules\.0\.temporal_transformer\.transformer_blocks\.0\.attention_blocks\.1\."
           r"pos_encoder\.pe is not the sinusoidal position table .* cannot be represented"),
    ("pair", r"the positional tables come in pairs .* 1 missing \(down_blocks\.0\.motion_modules\.0\.temporal_"
             r"transformer\.transformer_blocks\.0\.attention_blocks\.1\.pos_encoder\.pe\)"),
    ("config", r"does not fit the MotionAdapter config .*motion_adapter: it says use_motion_mid_block False "
               r"\(the file: True\)"),
])
def test_missing_extra_and_misshapen_keys_are_named_in_one_line(tiny, tmp_path, damage, expected):
    state = dict(motion_state_to_original(tiny))
    head = "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0."
    config = TINY_MA
    if damage == "missing":
        del state["up_blocks.1.motion_modules.1.temporal_transformer.transformer_blocks.0.attention_blocks.0.to_k.weight"]
    elif damage == "extra":
        state[head + "attention_blocks.2.to_q.weight"] = torch.zeros(32, 32)
    elif damage == "stray":
        state["model.diffusion_model.out.0.weight"] = torch.zeros(4)
    elif damage == "shape":
        state["down_blocks.1.motion_modules.0.temporal_transformer.transformer_blocks.0.ff.net.2.weight"] = torch.zeros(
            64, 100)
    elif damage == "pe":
        key = "mid_block.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1.pos_encoder.pe"
        state[key] = state[key] + 0.01 * torch.randn(state[key].shape)
    elif damage == "pair":
        del state[head + "attention_blocks.1.pos_encoder.pe"]
    else:
        config = {**dict(MotionAdapter.load_config(TINY_MA)), "use_motion_mid_block": False}
        (tmp_path / "motion_adapter").mkdir()
        (tmp_path / "motion_adapter" / "config.json").write_text(json.dumps(config))
        config = str(tmp_path / "motion_adapter")
    path = tmp_path / "mm_bad.ckpt"
    torch.save(state, path)
    with pytest.raises(UserError) as err:
        convert_motion_module(path, tmp_path / "out", config)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path)), message
    assert re.search(expected, message), message
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_an_existing_folder_is_not_overwritten(tiny, tmp_path):
    path = save_original_motion_checkpoint(tiny, tmp_path / "mm.ckpt")
    (tmp_path / "out").mkdir()
    convert_motion_module(path, tmp_path / "out", TINY_MA)  # an empty folder is filled
    with pytest.raises(UserError, match=r"already exists and is not empty \(pass --overwrite"):
        convert_motion_module(path, tmp_path / "out", TINY_MA)
    convert_motion_module(path, tmp_path / "out", TINY_MA, overwrite=True)
    with pytest.raises(UserError, match=r"already exists \(pass --overwrite"):
        save_original_motion_checkpoint(tiny, path)


# -------------------------------------------------------------------------------------------- diffusers' own loader

def test_forward_equals_the_same_file_through_diffusers_single_file_loader(tiny, tmp_path):
    path = save_original_motion_checkpoint(tiny, tmp_path / "mm_sd_v15_v2.ckpt")
    theirs = MotionAdapter.from_single_file(str(path), config=TINY_MA, local_files_only=True)
    ours = load_motion_checkpoint(path, TINY_MA)
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(TINY / "unet")).eval()
    frames = 4
    sample = torch.randn(1, 4, frames, 8, 8)  # b c f h w
    text = torch.randn(1, 7, unet.config.cross_attention_dim).repeat_interleave(frames, 0)  # (b f) l d
    outputs = []
    with torch.no_grad():
        for adapter in (theirs, ours, _random_adapter(TINY_MA, 7)):
            model = UNetMotionModel.from_unet2d(unet, adapter).eval()
            outputs.append(model(sample, 10, encoder_hidden_states=text).sample)
    assert outputs[0].shape == (1, 4, frames, 8, 8)
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.allclose(outputs[0], outputs[2], atol=1e-3)  # the motion modules do change the output


# -------------------------------------------------------------------------------------------- cache and CLI

def test_a_released_file_under_paths_motion_adapter_converts_once(v1, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    path = save_original_motion_checkpoint(v1, tmp_path / "mm_sd_v15.ckpt")
    assert detect(path) == "motion_module"
    lines: list[str] = []
    resolved = convert_sources(tiny_spec(paths={"motion_adapter": [str(tmp_path / "nope"), str(path)]}), lines.append)
    folder = resolved.paths["motion_adapter"]
    assert folder.startswith(str(tmp_path / "cache" / "mm_sd_v15-")) and folder.endswith("/motion_adapter")
    adapter = MotionAdapter.from_pretrained(folder)
    _same_state(adapter, v1)
    assert adapter.config.motion_num_attention_heads == 4  # heads and groups from configs/models/tiny/motion_adapter
    assert adapter.config.motion_max_seq_length == 24  # the rest from the file
    assert sum(line.startswith("converting ") and "an AnimateDiff motion module" in line for line in lines) == 1


def test_a_file_named_for_the_wrong_component_is_refused_before_converting(v1, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    motion = save_original_motion_checkpoint(v1, tmp_path / "mm_sd_v15.ckpt")
    with pytest.raises(UserError, match=r"mm_sd_v15\.ckpt: an AnimateDiff motion module \(model\.paths\.unet\).*"
                                        r"name it under model\.paths\.motion_adapter"):
        convert_sources(tiny_spec(paths={"unet": str(motion)}), lambda line: None)
    torch.save({"conv_in.weight": torch.zeros(4, 192, 3, 3), "body.0.block1.weight": torch.zeros(4)},
               tmp_path / "pose_encoder.pth")
    with pytest.raises(UserError, match=r"pose_encoder\.pth: a Follow-Your-Pose pose encoder, not an AnimateDiff "
                                        r"motion module \(model\.paths\.motion_adapter"):
        convert_sources(tiny_spec(paths={"motion_adapter": str(tmp_path / "pose_encoder.pth")}), lambda line: None)
    assert not any((tmp_path / "cache").glob("*/*"))  # nothing was converted


def test_cli_converts_refuses_to_overwrite_and_exports_back(tiny, tmp_path, capsys):
    from magicpose.cli import main

    path = save_original_motion_checkpoint(tiny, tmp_path / "mm_sd_v15_v2.safetensors")
    out = tmp_path / "mm_sd_v15_v2"
    argv = ["convert", "motion-module", "--checkpoint", str(path), "--out", str(out), "--config", TINY_MA]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "AnimateDiff motion module" in printed and "dropped 7 key(s)" in printed
    _same_state(MotionAdapter.from_pretrained(out), tiny)
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--overwrite" in err
    back = tmp_path / "export.safetensors"
    assert main(["convert", "motion-module", "--to-original", str(out), "--out", str(back)]) == 0
    _same_state(load_file(back), load_file(path))
