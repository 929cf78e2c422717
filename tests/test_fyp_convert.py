"""Follow-Your-Pose released-weight layout: synthetic checkpoints load strictly and round-trip."""

from __future__ import annotations

import shutil

import pytest
import torch
from diffusers import T2IAdapter

from magicpose.cli import main
from magicpose.config import FypModelSpec
from magicpose.convert.safe_load import load_pickle
from magicpose.convert.testing import write_synthetic_release
from magicpose.models.components import random_component
from magicpose.models.fyp_components import build_fyp_components
from magicpose.models.video_unet import VideoUNet

from .conftest import REPO
from .test_fyp_models import _OriginalAdapter

TINY = REPO / "configs/models/fyp_tiny"


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A synthetic release (DDP `module.` prefix) and a tiny SD folder, converted once through the CLI."""
    root = tmp_path_factory.mktemp("fyp_release")
    ckpt_dir, encoder = write_synthetic_release(root, TINY, vae_scale_factor=2, seed=3, module_prefix=True)
    sd = root / "sd"
    for name in ("vae", "text_encoder"):
        torch.manual_seed(0)
        random_component(name, TINY / name).save_pretrained(sd / name)
    shutil.copytree(TINY / "unet", sd / "unet")
    shutil.copytree(TINY / "scheduler", sd / "scheduler")
    shutil.copytree(REPO / "configs/models/sd15/tokenizer", sd / "tokenizer")
    out = root / "FollowYourPose"
    argv = ["convert", "followyourpose", "--checkpoint", str(ckpt_dir), "--pose-encoder", str(encoder),
            "--sd", str(sd), "--out", str(out)]
    assert main(argv) == 0
    return {"root": root, "ckpt": ckpt_dir / "pytorch_model.bin", "encoder": encoder, "sd": sd, "out": out}


def test_synthetic_checkpoint_has_the_original_key_layout(release):
    state = load_pickle(release["ckpt"])
    assert all(k.startswith("module.") for k in state)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    block = "down_blocks.0.attentions.0.transformer_blocks.0."
    width = 16  # fyp_tiny level-0 width; rank 160 > 16 -> 8, the original's guard
    assert state[block + "conv_temporal.down.weight"].shape == (8, width, 3)
    assert state[block + "conv_temporal.up.weight"].shape == (width, 8, 3)
    for key in ("attn_temp.to_q.weight", "attn_temp.to_out.0.bias", "norm_temp.weight", "attn1.to_q.weight",
                "attn2.to_k.weight", "ff.net.0.proj.weight"):
        assert block + key in state
    assert "conv_in.weight" in state and "down_blocks.0.downsamplers.0.conv.weight" in state
    adapter = {k.removeprefix("skeleton_adapter."): v.shape for k, v in state.items() if k.startswith("skeleton_")}
    reference = _OriginalAdapter([16, 16, 32, 32], unshuffle=2)  # the original Adapter class, re-written
    assert adapter == {k: v.shape for k, v in reference.state_dict().items()}
    assert set(load_pickle(release["encoder"])) == set(reference.state_dict())


def test_converted_folder_loads_strictly_and_holds_every_tensor(release):
    parts = build_fyp_components(FypModelSpec(pretrained=str(release["out"]), components=None))
    assert isinstance(parts["unet"], VideoUNet) and isinstance(parts["pose_adapter"], T2IAdapter)
    original = {k.removeprefix("module."): v for k, v in load_pickle(release["ckpt"]).items()}
    ours = parts["unet"].state_dict()
    for key, value in original.items():
        if not key.startswith("skeleton_adapter."):
            assert torch.equal(ours["unet." + key], value), key
    assert len(ours) == sum(not k.startswith("skeleton_adapter.") for k in original)
    assert set(parts) == {"vae", "text_encoder", "tokenizer", "unet", "pose_adapter", "scheduler"}
    report = (release["out"] / "conversion.json").read_text()
    assert "module." in report and "identical" in report


def test_export_round_trips_to_the_original_layout(release, tmp_path):
    out = tmp_path / "pytorch_model.bin"
    assert main(["convert", "followyourpose", "--export", str(release["out"]), "--out", str(out)]) == 0
    exported = load_pickle(out)
    original = {k.removeprefix("module."): v for k, v in load_pickle(release["ckpt"]).items()}
    assert set(exported) == set(original)
    assert all(torch.equal(exported[k], original[k]) for k in original)
    # and the exported file converts again (no prefix, no separate encoder this time)
    again = tmp_path / "again"
    assert main(["convert", "followyourpose", "--checkpoint", str(out), "--components", str(TINY),
                 "--out", str(again)]) == 0
    assert (again / "pose_adapter").is_dir() and (again / "tokenizer").is_dir()


def test_missing_or_extra_keys_are_refused_naming_the_file(release, tmp_path, capsys):
    original = load_pickle(release["ckpt"])
    broken = dict(original)
    del broken["module.down_blocks.1.attentions.0.transformer_blocks.0.attn_temp.to_q.weight"]
    broken["module.some_new_layer.weight"] = torch.zeros(1)
    path = tmp_path / "pytorch_model.bin"
    torch.save(broken, path)
    argv = ["convert", "followyourpose", "--checkpoint", str(path), "--components", str(TINY),
            "--out", str(tmp_path / "x")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err
    assert "1 missing" in err and "attn_temp.to_q.weight" in err and "1 unexpected" in err
    assert not (tmp_path / "x").exists()
    # an adapter of the wrong width is refused too
    torch.save({"conv_in.weight": torch.zeros(8, 12, 3, 3), "conv_in.bias": torch.zeros(8)}, tmp_path / "enc.pth")
    argv = ["convert", "followyourpose", "--checkpoint", str(release["ckpt"]), "--pose-encoder",
            str(tmp_path / "enc.pth"), "--components", str(TINY), "--out", str(tmp_path / "y")]
    assert main(argv) == 1
    assert "enc.pth" in capsys.readouterr().err
