"""`magicpose convert fyp-config`: the original Follow-Your-Pose YAMLs -> our configs, and the loader's pointer to it."""

from __future__ import annotations

from pathlib import Path

import pytest

from magicpose.cli import main
from magicpose.config import FypConfig, FypFitConfig, load_config
from magicpose.config.original_fyp import DEFAULT_PIPELINE, convert_original, needs_manual_conversion

from .conftest import REPO

FIXTURES = REPO / "tests/fixtures/followyourpose"
TRAIN_UNMAPPED = {"train_data.prompt", "train_data.sample_start_idx", "validation_data.use_inv_latent",
                  "validation_data.num_inv_steps", "validation_data.dataset_set",
                  "enable_xformers_memory_efficient_attention"}


def _convert(name, out, capsys):
    assert main(["convert", "fyp-config", str(FIXTURES / name), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    warning = captured.err.splitlines()
    assert warning[0].startswith("warning: ") and all(line.startswith("  ") for line in warning[1:])  # one block
    return {line.split(":")[0].strip() for line in warning[1:]}, captured.out


def test_pose_train_yaml_converts_to_a_loadable_stage2_config(tmp_path, capsys):
    out = tmp_path / "configs/pose_train.yaml"
    unmapped, stdout = _convert("pose_train.yaml", out, capsys)
    assert unmapped == TRAIN_UNMAPPED
    assert "pose_adapter: the released adapter" in stdout and "weights:" not in stdout  # converted on first use
    config = load_config([out], schema=FypFitConfig)
    train, data, inf = config.train, config.data, config.inference
    assert (train.stage, train.lr, train.max_steps, train.checkpoint_every, train.seed) == (2, 3e-5, 5000, 1000, 33)
    assert train.trainable_modules == ["attn1.to_q", "attn2.to_q", "attn_temp", "conv_temporal"]
    assert train.gradient_checkpointing is False  # the original's, over stage2.yaml's true
    assert (train.sample_every, len(train.sample_prompts), train.sample_skeleton) == (
        100, 4, "pose_example/vis_kun_pose2.mov")
    assert (data.layout, data.root, data.csv, data.frames, data.stride, data.size, data.batch_size) == (
        "hdvila", "data/hdvila", "caption_rm2048_train.csv", 12, 4, 512, 1)
    assert (inf.frames, inf.steps, inf.guidance_scale, inf.size, inf.seed) == (24, 50, 12.5, 512, 33)
    assert config.trainer.precision == "32-true" and config.run_dir == "outputs/followyourpose"
    assert config.model.paths["unet"] == "checkpoints/stable-diffusion-v1-4/unet"
    assert config.model.paths["pose_adapter"] == [f"{DEFAULT_PIPELINE}/pose_adapter", "checkpoints/pose_encoder.pth"]
    assert train.weight_decay == 1e-2  # what the original did not set comes from stage2.yaml


def test_pose_sample_yaml_converts_to_a_loadable_inference_config(tmp_path, capsys):
    out = tmp_path / "pose_sample.yaml"
    unmapped, stdout = _convert("pose_sample.yaml", out, capsys)
    assert unmapped == {"output_dir", "validation_data.use_inv_latent", "validation_data.num_inv_steps",
                        "validation_data.dataset_set", "train_batch_size", "validation_steps",
                        "gradient_checkpointing", "enable_xformers_memory_efficient_attention"}
    assert "converted once on first use" in stdout and "weights:" not in stdout
    config = load_config([out], schema=FypConfig)
    inf = config.inference
    assert inf.prompts == ["Iron man on the beach", "Stormtrooper on the sea", "Astronaut on the beach"]
    assert (inf.frames, inf.stride, inf.steps, inf.guidance_scale, inf.size, inf.seed) == (32, 5, 50, 12.5, 512, 33)
    assert config.model.pretrained == [DEFAULT_PIPELINE, "checkpoints/followyourpose_checkpoint-1000"]
    assert config.model.dtype == "float32"
    assert main(["convert", "fyp-config", str(FIXTURES / "pose_sample.yaml"), "--out", str(out)]) == 1  # kept


@pytest.mark.parametrize("command", [["fit"], ["fyp-sample", "--skeleton", "x", "--out", "y"]])
def test_fit_and_fyp_sample_on_an_original_yaml_say_to_convert_it(command, capsys):
    original = FIXTURES / ("pose_train.yaml" if command == ["fit"] else "pose_sample.yaml")
    assert main([*command, "-c", str(original)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "an original Follow-Your-Pose config (pretrained_model_path, validation_data" in err
    assert f"magicpose convert fyp-config {original} --out" in err


def test_mapping_rules():
    out = Path("somewhere/ours.yaml")
    conv = convert_original({"pretrained_model_path": "sd", "train_data": {"n_sample_frames": 8, "width": 256,
                                                                           "height": 384},
                             "mixed_precision": "fp16", "adam_beta1": 0.8, "adam_epsilon": 1e-6,
                             "lr_scheduler": "cosine", "resume_from_checkpoint": "ckpt/checkpoint-500",
                             "typo_key": 1}, out, pipeline="PIPE")
    assert conv.kind == "train" and conv.config["trainer"]["precision"] == "16-mixed"
    assert conv.config["train"]["betas"] == [0.8, 0.999]
    paths = conv.config["model"]["paths"]
    assert paths["unet"] == ["PIPE/unet", "ckpt/checkpoint-500"] and paths["vae"] == "sd/vae"  # the released UNet
    assert paths["pose_adapter"] == ["PIPE/pose_adapter", "ckpt/checkpoint-500"]
    assert needs_manual_conversion(conv)  # sd is not beside the checkpoint: the command is printed
    assert dict(conv.unmapped) == {
        "train_data.width": "ours makes square frames; set data.size",
        "train_data.height": "ours makes square frames; set data.size",
        "adam_epsilon": "ours is AdamW's default 1e-8",
        "lr_scheduler": "'cosine': ours is constant after a linear warm-up",
        "typo_key": "not a key of the original's configs",
    }  # fmt: skip
    assert "--checkpoint ckpt/checkpoint-500 --pose-encoder ckpt/pose_encoder.pth --sd sd" in \
        conv.convert_weights_command()
    sample = convert_original({"validation_data": {"prompts": ["a"]}, "mixed_precision": "bf16"}, out, pipeline="P")
    assert sample.kind == "sample" and sample.config["model"] == {
        "pretrained": ["P", "pretrained_weights/followyourpose_checkpoint-1000"], "dtype": "bfloat16"}
    assert not needs_manual_conversion(sample)
    base = (out.parent.resolve() / sample.config["base"]).resolve()  # relative to the written file
    assert base == (REPO / "configs/followyourpose/inference.yaml").resolve()
