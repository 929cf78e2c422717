"""Checkpoint interop: the original SD / ControlNet / MagicDance layouts <-> our component folders.

The real files are not available here; synthetic checkpoints with their key layouts are made from tiny diffusers
models by inverting the key mapping (`magicpose.convert.testing`), saved as pickles like the originals, and read
back through diffusers' own LDM converters.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from magicpose.convert import ldm
from magicpose.convert.magicdance import convert_checkpoint, export_original
from magicpose.convert.testing import original_state_dict
from magicpose.errors import UserError

from .conftest import REPO, TINY_CONFIG, random_image, stick_pose, tiny_spec, wake_controlnet

TINY = str(REPO / "configs" / "models" / "tiny")
PARTS = ("unet", "appearance_unet", "controlnet", "vae", "text_encoder")

TINY_LDM_YAML = """
model:
  target: model_lib.ControlNet.cldm.cldm.ControlLDMReferenceOnlyPose
  params:
    linear_start: 0.00085
    linear_end: 0.0120
    timesteps: 1000
    image_size: 16
    channels: 4
    scale_factor: 0.18215
    appearance_control_stage_config:
      target: model_lib.ControlNet.cldm.cldm.ControlNetReferenceOnly
      params: &unet {in_channels: 4, hint_channels: 3, out_channels: 4, model_channels: 32,
                     attention_resolutions: [1, 2], num_res_blocks: 1, channel_mult: [1, 2], num_heads: 2,
                     use_spatial_transformer: true, transformer_depth: 1, context_dim: 32, legacy: false}
    pose_control_stage_config:
      target: model_lib.ControlNet.cldm.cldm.ControlNet
      params: {in_channels: 4, hint_channels: 3, model_channels: 32, attention_resolutions: [1, 2],
               num_res_blocks: 1, channel_mult: [1, 2], num_heads: 2, use_spatial_transformer: true,
               transformer_depth: 1, context_dim: 32, legacy: false}
    unet_config:
      target: model_lib.ControlNet.cldm.cldm.ControlledUnetModelAttnPose
      params: *unet
    first_stage_config:
      target: ldm.models.autoencoder.AutoencoderKL
      params:
        embed_dim: 4
        ddconfig: {double_z: true, z_channels: 4, resolution: 64, in_channels: 3, out_ch: 3, ch: 32,
                   ch_mult: [1, 1], num_res_blocks: 1, attn_resolutions: [], dropout: 0.0}
    cond_stage_config:
      target: ldm.modules.encoders.modules.FrozenCLIPEmbedder
"""


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Random values everywhere (zero-initialised convs too), so that a swapped tensor cannot go unnoticed."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.05 + (1.0 if param.ndim == 1 else 0.0))


@pytest.fixture(scope="module")
def models():
    from magicpose.models.components import build_components

    components = build_components(tiny_spec())
    wake_controlnet(components["controlnet"])
    for seed, name in enumerate(("appearance_unet", "controlnet")):
        _randomise(components[name], seed + 10)
    components["appearance_unet"].load_state_dict(  # the final conv is unused; conversion takes the UNet's
        {k: v for k, v in components["unet"].state_dict().items() if k.startswith(("conv_norm_out", "conv_out"))},
        strict=False)
    return components


@pytest.fixture(scope="module")
def stage2(models, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model_state-110000.th"
    torch.save(original_state_dict(models, "stage2"), path)
    return path


@pytest.fixture(scope="module")
def converted(stage2, tmp_path_factory):
    out = tmp_path_factory.mktemp("conv") / "MagicPose"
    convert_checkpoint(stage2, out, components=TINY)
    return out


def _load(folder: Path, **kwargs):
    from magicpose.config import ModelSpec
    from magicpose.pipelines.magicpose import MagicPosePipeline

    return MagicPosePipeline.from_spec(ModelSpec(pretrained=str(folder), components=None, **kwargs))


def _assert_same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    different = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not different, different[:5]


def _folder_tensors(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for path in sorted(folder.rglob("*.safetensors")):
        out.update({f"{path.parent.name}/{k}": v for k, v in load_file(path).items()})
    return out


def _convert_cli(argv: list[str]) -> int:
    """`magicpose convert ...` through the real CLI."""
    from magicpose.cli import main

    return main(["convert", *argv])


# -------------------------------------------------------------------------------------------- the key mapping itself

def test_mapping_gives_the_real_sd15_key_names_and_shapes():
    """Names and shapes as they are in the released SD-1.5 / ControlNet-1.1 files (not just self-consistent)."""
    targets = ldm.load_target_configs()
    known = {
        "unet": {"input_blocks.0.0.weight": (320, 4, 3, 3), "input_blocks.3.0.op.weight": (320, 320, 3, 3),
                 "input_blocks.4.0.skip_connection.weight": (640, 320, 1, 1),
                 "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
                 "middle_block.1.proj_in.weight": (1280, 1280, 1, 1), "middle_block.2.emb_layers.1.bias": (1280,),
                 "output_blocks.2.1.conv.weight": (1280, 1280, 3, 3), "output_blocks.5.2.conv.weight": (1280, 1280, 3, 3),
                 "output_blocks.11.1.transformer_blocks.0.ff.net.0.proj.weight": (2560, 320),
                 "time_embed.0.weight": (1280, 320), "out.2.weight": (4, 320, 3, 3)},
        "controlnet": {"zero_convs.11.0.weight": (1280, 1280, 1, 1), "middle_block_out.0.bias": (1280,),
                       "input_hint_block.0.weight": (16, 3, 3, 3), "input_hint_block.14.weight": (320, 256, 3, 3)},
        "vae": {"encoder.mid.attn_1.q.weight": (512, 512, 1, 1), "decoder.up.0.block.0.nin_shortcut.weight":
                (128, 256, 1, 1), "decoder.up.1.upsample.conv.weight": (256, 256, 3, 3),
                "encoder.down.0.downsample.conv.weight": (128, 128, 3, 3), "decoder.norm_out.bias": (128,)},
        "clip": {"text_model.embeddings.token_embedding.weight": (49408, 768),
                 "text_model.encoder.layers.11.mlp.fc2.weight": (768, 3072)},
    }
    names = {"unet": "unet", "controlnet": "controlnet", "vae": "vae", "clip": "text_encoder"}
    counts = {"unet": 686, "controlnet": 340, "vae": 248, "clip": 196}
    for kind, keys in known.items():
        expected = ldm.expected_keys(kind, targets.configs[names[kind]])
        assert len(expected) == counts[kind]
        for key, shape in keys.items():
            assert expected[key][1] == shape, key
    assert "out.2.weight" not in ldm.expected_keys("appearance", targets.configs["appearance_unet"])


def test_ldm_yaml_of_magicdance_gives_our_sd15_configs(tmp_path):
    sd15_yaml = re.sub(r"model_channels: 32", "model_channels: 320", TINY_LDM_YAML)
    sd15_yaml = (sd15_yaml.replace("attention_resolutions: [1, 2]", "attention_resolutions: [4, 2, 1]")
                 .replace("num_res_blocks: 1, channel_mult: [1, 2], num_heads: 2",
                          "num_res_blocks: 2, channel_mult: [1, 2, 4, 4], num_heads: 8")
                 .replace("context_dim: 32", "context_dim: 768").replace("image_size: 16", "image_size: 64")
                 .replace("ch: 32,\n                   ch_mult: [1, 1], num_res_blocks: 1",
                          "ch: 128,\n                   ch_mult: [1, 2, 4, 4], num_res_blocks: 2"))
    path = tmp_path / "cldm_v15_reference_only_pose.yaml"
    path.write_text(sd15_yaml)
    derived = ldm.load_target_configs(original_config=path)
    ours = ldm.load_target_configs()
    for kind, name in (("unet", "unet"), ("appearance", "appearance_unet"), ("controlnet", "controlnet"),
                       ("vae", "vae")):
        assert ldm.expected_keys(kind, derived.configs[name]) == ldm.expected_keys(kind, ours.configs[name]), name
    assert derived.configs["unet"]["attention_head_dim"] == 8
    assert derived.configs["vae"]["scaling_factor"] == 0.18215


# -------------------------------------------------------------------------------------------- conversion

def test_stage2_checkpoint_converts_to_identical_weights_and_outputs(models, converted):
    from magicpose.models.magicpose import MagicPoseModel

    pipe = _load(converted)
    for name in PARTS:
        _assert_same(models[name], getattr(pipe, name))
    assert (converted / "conversion.json").is_file() and (converted / "model_index.json").is_file()

    torch.manual_seed(0)
    sample, ref = torch.randn(2, 4, 32, 32), torch.randn(1, 4, 32, 32)
    text, pose = torch.randn(1, 77, 32), torch.rand(2, 3, 64, 64)
    theirs = MagicPoseModel(*(copy.deepcopy(models[n]) for n in ("unet", "appearance_unet", "controlnet"))).prepare()
    ours = MagicPoseModel(pipe.unet, pipe.appearance_unet, pipe.controlnet).prepare()
    with torch.no_grad():
        expected = theirs(sample, torch.tensor([10, 500]), text.expand(2, -1, -1), ref, pose)
        got = ours(sample, torch.tensor([10, 500]), text.expand(2, -1, -1), ref, pose)
        ids = torch.randint(0, 49408, (1, 77))
        assert torch.equal(models["text_encoder"](ids)[0], pipe.text_encoder(ids)[0])
        image = torch.rand(1, 3, 64, 64) * 2 - 1
        assert torch.equal(models["vae"](image, sample_posterior=False).sample, pipe.vae(image).sample)
    assert torch.equal(expected, got)


def test_convert_export_convert_round_trips_bit_exactly(stage2, converted, tmp_path):
    exported = tmp_path / "model_state-export.safetensors"
    result = export_original(converted, exported, pickle_out=tmp_path / "model_state-export.th")
    assert result["layout"] == "stage2"
    original = torch.load(stage2, map_location="cpu", weights_only=True)
    back = load_file(exported)
    assert back.keys() == original.keys()  # the original's layout, key for key
    hint = [k for k in original if ".input_hint_block." in k and k.startswith("appearance_control_model.")]
    assert all(torch.equal(back[k], original[k]) for k in original if k not in hint)
    assert all(back[k].shape == original[k].shape and not back[k].any() for k in hint)  # unused: written as zeros

    first = _folder_tensors(converted)
    for source in (exported, tmp_path / "model_state-export.th"):
        again = tmp_path / f"again-{source.suffix[1:]}"
        convert_checkpoint(source, again, components=TINY)
        second = _folder_tensors(again)
        assert first.keys() == second.keys()
        assert all(torch.equal(first[k], second[k]) and first[k].dtype == second[k].dtype for k in first)


def test_stage1_init_controlnet_and_sd_layouts(models, tmp_path):
    # stage 1: control_model.* is the appearance model; no pose ControlNet -> a stage-1 pipeline
    torch.save({"state_dict": original_state_dict(models, "stage1"), "global_step": 10000}, tmp_path / "s1.th")
    report = convert_checkpoint(tmp_path / "s1.th", tmp_path / "s1", components=TINY)
    assert "stage-1" in report.layout and not (tmp_path / "s1" / "controlnet").exists()
    pipe = _load(tmp_path / "s1", with_controlnet=False)
    _assert_same(models["appearance_unet"], pipe.appearance_unet)
    # ...plus the pose ControlNet from its own file: the original's stage-2 initialisation
    torch.save(original_state_dict(models, "controlnet"), tmp_path / "openpose.pth")
    convert_checkpoint(tmp_path / "s1.th", tmp_path / "s2init", components=TINY, controlnet=tmp_path / "openpose.pth")
    _assert_same(models["controlnet"], _load(tmp_path / "s2init").controlnet)

    # control_sd15_ini: SD + a ControlNet; the appearance model = ControlNet encoder + the UNet's decoder
    torch.save(original_state_dict(models, "init"), tmp_path / "ini.ckpt")
    convert_checkpoint(tmp_path / "ini.ckpt", tmp_path / "ini", components=TINY)
    pipe = _load(tmp_path / "ini")
    _assert_same(models["controlnet"], pipe.controlnet)
    acm, cn, unet = pipe.appearance_unet.state_dict(), models["controlnet"].state_dict(), models["unet"].state_dict()
    assert all(torch.equal(v, cn[k] if k in cn else unet[k]) for k, v in acm.items())

    # a ControlNet file alone, and an SD single file (safetensors)
    assert _convert_cli(["controlnet", "--checkpoint", str(tmp_path / "openpose.pth"), "--out",
                         str(tmp_path / "cn"), "--components", TINY]) == 0
    from diffusers import ControlNetModel

    _assert_same(models["controlnet"], ControlNetModel.from_pretrained(tmp_path / "cn"))
    save_file(original_state_dict(models, "sd"), tmp_path / "sd.safetensors")
    assert _convert_cli(["sd", "--checkpoint", str(tmp_path / "sd.safetensors"), "--out", str(tmp_path / "sd"),
                         "--components", TINY, "--dtype", "float16"]) == 0
    tensors = load_file(tmp_path / "sd" / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(v.dtype == torch.float16 for v in tensors.values())
    assert torch.equal(tensors["conv_in.weight"], models["unet"].conv_in.weight.half())


def test_missing_parts_come_from_sd_folder_or_file(models, tmp_path, capsys):
    state = original_state_dict(models, "stage2")
    trained_only = {k: v for k, v in state.items() if k.startswith(("appearance_control_model.", "pose_control"))}
    torch.save(trained_only, tmp_path / "trained.th")
    assert _convert_cli(["magicdance", "--checkpoint", str(tmp_path / "trained.th"), "--out", str(tmp_path / "x"),
                         "--components", TINY]) == 1
    err = capsys.readouterr().err
    assert "UNet (model.diffusion_model.*), VAE (first_stage_model.*), text encoder" in err and "--sd" in err
    assert not (tmp_path / "x").exists()

    # --sd as a single file: only the parts the checkpoint lacks are taken from it
    save_file(original_state_dict(models, "sd"), tmp_path / "sd.safetensors")
    convert_checkpoint(tmp_path / "trained.th", tmp_path / "a", components=TINY, sd=tmp_path / "sd.safetensors")
    # --sd as a diffusers folder (the tokenizer comes from it too)
    convert_checkpoint(tmp_path / "sd.safetensors", tmp_path / "sd", "sd", components=TINY)
    report = convert_checkpoint(tmp_path / "trained.th", tmp_path / "b", components=TINY, sd=tmp_path / "sd")
    assert str(tmp_path / "sd" / "tokenizer") in report.components["tokenizer"]
    for out in ("a", "b"):
        pipe = _load(tmp_path / out)
        for name in PARTS:
            _assert_same(models[name], getattr(pipe, name))


def test_scheduler_comes_from_the_sd_folder_when_it_has_one(models, tmp_path, capsys):
    state = original_state_dict(models, "stage2")
    torch.save({k: v for k, v in state.items() if k.startswith(("appearance_control_model.", "pose_control"))},
               tmp_path / "trained.th")
    save_file(original_state_dict(models, "sd"), tmp_path / "sd.safetensors")
    convert_checkpoint(tmp_path / "sd.safetensors", tmp_path / "sd", "sd", components=TINY)
    config_file = tmp_path / "sd" / "scheduler" / "scheduler_config.json"
    config = json.loads(config_file.read_text())
    config.update(_class_name="DPMSolverMultistepScheduler", steps_offset=7)  # the user's own choice
    config_file.write_text(json.dumps(config))
    out = tmp_path / "pipe"
    assert _convert_cli(["magicdance", "--checkpoint", str(tmp_path / "trained.th"), "--out", str(out),
                         "--components", TINY, "--sd", str(tmp_path / "sd")]) == 0
    assert f"scheduler        copied from {tmp_path / 'sd' / 'scheduler'}" in capsys.readouterr().out
    written = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert (written["_class_name"], written["steps_offset"]) == ("DPMSolverMultistepScheduler", 7)
    assert type(_load(out).scheduler).__name__ == "DPMSolverMultistepScheduler"
    # a --sd single file has no scheduler: the component configs' is used, and the report says so
    convert_checkpoint(tmp_path / "trained.th", tmp_path / "file", components=TINY, sd=tmp_path / "sd.safetensors")
    assert json.loads((tmp_path / "file" / "scheduler" / "scheduler_config.json").read_text())["_class_name"] == \
        json.loads((Path(TINY) / "scheduler" / "scheduler_config.json").read_text())["_class_name"]


def test_other_sizes_through_an_ldm_yaml(tmp_path):
    from magicpose.models.components import random_component

    yaml = tmp_path / "tiny_ldm.yaml"
    yaml.write_text(TINY_LDM_YAML)
    targets = ldm.load_target_configs(TINY, yaml)
    built = {}
    for seed, name in enumerate(("unet", "appearance_unet", "controlnet", "vae")):
        cls = {"vae": "AutoencoderKL", "controlnet": "ControlNetModel"}.get(name, "UNet2DConditionModel")
        import diffusers

        torch.manual_seed(seed)
        built[name] = getattr(diffusers, cls).from_config(targets.configs[name])
        _randomise(built[name], seed)
    built["appearance_unet"].load_state_dict(
        {k: v for k, v in built["unet"].state_dict().items() if k.startswith(("conv_norm_out", "conv_out"))},
        strict=False)
    built["text_encoder"] = random_component("text_encoder", Path(TINY) / "text_encoder")
    torch.save(original_state_dict(built, "stage2"), tmp_path / "other.th")
    with pytest.raises(UserError, match=r"other\.th: .*VAE"):  # the tiny diffusers configs do not fit it
        convert_checkpoint(tmp_path / "other.th", tmp_path / "no", components=TINY)
    assert _convert_cli(["magicdance", "--checkpoint", str(tmp_path / "other.th"), "--out", str(tmp_path / "yes"),
                         "--components", TINY, "--original-config", str(yaml)]) == 0
    pipe = _load(tmp_path / "yes")
    for name in PARTS:
        _assert_same(built[name], getattr(pipe, name))


# -------------------------------------------------------------------------------------------- strictness

@pytest.mark.parametrize("damage, expected", [
    ("extra", r"1 unexpected key\(s\) in the UNet \(model\.diffusion_model\.\*\): model\.diffusion_model\.extra\.w"),
    ("stray", r"1 key\(s\) belong to no component of a MagicDance stage-2 checkpoint: something\.else"),
    ("missing", r"1 key\(s\) of the ControlNet missing: pose_control_model\.zero_convs\.1\.0\.weight"),
    ("shape", r"first_stage_model\.encoder\.conv_in\.weight has shape \(16, 3, 5, 5\), the VAE config .* "
              r"expects \(16, 3, 3, 3\)"),
])
def test_unknown_missing_and_misshapen_keys_are_named(models, tmp_path, capsys, damage, expected):
    state = original_state_dict(models, "stage2")
    if damage == "extra":
        state["model.diffusion_model.extra.weight"] = torch.zeros(1)
    elif damage == "stray":
        state["something.else"] = torch.zeros(1)
    elif damage == "missing":
        del state["pose_control_model.zero_convs.1.0.weight"]
    else:
        state["first_stage_model.encoder.conv_in.weight"] = torch.zeros(16, 3, 5, 5)
    torch.save(state, tmp_path / "bad.th")
    out = tmp_path / "out"
    assert _convert_cli(["magicdance", "--checkpoint", str(tmp_path / "bad.th"), "--out", str(out),
                         "--components", TINY]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert re.search(expected, err), err
    assert not out.exists() and not out.with_name("out.partial").exists()


class _Pwn:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        import os

        return (os.system, (f"echo pwned > {self.target}",))


@pytest.mark.parametrize("zip_format", [True, False])
def test_pickle_with_code_is_refused_unrun(tmp_path, capsys, zip_format):
    marker = tmp_path / "PWNED"
    path = tmp_path / "model_state-110000.th"
    torch.save({"model.diffusion_model.x": torch.zeros(1), "evil": _Pwn(marker)}, path,
               _use_new_zipfile_serialization=zip_format)
    assert _convert_cli(["magicdance", "--checkpoint", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "refused" in err and "system" in err and str(path) in err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_every_torch_load_is_weights_only():
    lines = [line for path in (REPO / "magicpose").rglob("*.py") for line in path.read_text().splitlines()
             if "torch.load(" in line and not line.lstrip().startswith("#")]
    assert lines and all("weights_only=True" in line for line in lines), lines


# -------------------------------------------------------------------------------------------- end to end

def test_cli_folder_runs_with_magicpose_animate(stage2, tmp_path, capsys):
    from magicpose.cli import main

    out = tmp_path / "MagicPose"
    assert _convert_cli(["magicdance", "--checkpoint", str(stage2), "--out", str(out), "--components", TINY]) == 0
    printed = capsys.readouterr().out
    assert "appearance_unet" in printed and "dropped 16 key(s)" in printed and "position_ids" in printed
    assert _convert_cli(["magicdance", "--checkpoint", str(stage2), "--out", str(out)]) == 1  # exists already
    assert "--overwrite" in capsys.readouterr().err

    random_image(0).save(tmp_path / "ref.png")
    (tmp_path / "poses").mkdir()
    for i in range(2):
        stick_pose(i).save(tmp_path / "poses" / f"{i}.png")
    argv = ["animate", "--config", str(TINY_CONFIG), "--reference", str(tmp_path / "ref.png"), "--poses",
            str(tmp_path / "poses"), "--out", str(tmp_path / "anim"), "--steps", "2", f"model.pretrained={out}",
            "model.components=null"]
    assert main(argv) == 0
    assert len(list((tmp_path / "anim" / "frames").iterdir())) == 2


def test_convert_help_imports_nothing_heavy():
    code = ("import sys, argparse; from magicpose.commands.convert import add_parser; p = argparse.ArgumentParser(); "
            "add_parser(p.add_subparsers()); print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
