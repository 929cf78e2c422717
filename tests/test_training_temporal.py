"""Stage 3: the motion module trains alone on clips, with everything stage 2 has (trained-only checkpoints, EMA,
exact resume, sample clips, the exported pipeline)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from magicpose.cli import main
from magicpose.config import FitConfig, load_config
from magicpose.errors import UserError
from magicpose.models.components import build_components
from magicpose.pipelines.magicpose import MagicPosePipeline
from magicpose.toy import generate_toy_dataset
from magicpose.training.magicpose import MagicPoseTraining, make_train_loader

from .conftest import REPO, tiny_spec, wake_controlnet

STAGE3 = REPO / "configs/magicpose/tiny/stage3.yaml"
ADAPTER = "weights/step-{:07d}/motion_adapter/diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy") / "toy"
    generate_toy_dataset(root, videos=2, test_videos=1, frames=5, size=64, seed=0)
    return root


@pytest.fixture(scope="module")
def stage2(tmp_path_factory):
    """A tiny stage-2 pipeline folder (random weights, a ControlNet that sees the pose)."""
    parts = build_components(tiny_spec())
    wake_controlnet(parts["controlnet"])
    folder = tmp_path_factory.mktemp("stage2") / "pipeline"
    MagicPosePipeline(**parts).save_pretrained(folder)
    return folder


def _args(toy_root, stage2, run_dir, *overrides):
    return [f"data.root={toy_root}", f"run_dir={run_dir}", f"model.pretrained={stage2}", *overrides]


def test_stage3_step_trains_exactly_the_motion_module(toy_root, stage2, tmp_path):
    config = load_config([STAGE3], _args(toy_root, stage2, tmp_path / "run"), schema=FitConfig)
    module = MagicPoseTraining(config)
    batch = next(iter(make_train_loader(config, rank=0, world_size=1, global_step=0)))
    assert batch["pixel_values"].shape == (2, 3, 3, 64, 64) and batch["ref_pixel_values"].shape == (2, 3, 64, 64)
    trainable = {n: p for n, p in module.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("model.motion_adapter.") for n in trainable)
    assert len(trainable) == len(list(module.model.motion_adapter.parameters()))
    frozen = {n: p.detach().clone() for n, p in module.named_parameters() if not p.requires_grad}
    optimizer = module.configure_optimizers()["optimizer"]
    for _ in range(2):  # zero-initialised output projections: the rest of the module gets gradients from step 2
        optimizer.zero_grad()
        loss = module.compute_loss(batch, torch.Generator().manual_seed(0))
        loss.backward()
        optimizer.step()
    assert torch.isfinite(loss)
    assert [n for n, p in trainable.items() if p.grad is None or not p.grad.any()] == []
    assert all(torch.equal(frozen[n], p) for n, p in module.named_parameters() if n in frozen)


def test_stage3_fit_saves_only_the_module_resumes_exactly_and_exports_a_temporal_pipeline(toy_root, stage2, tmp_path):
    common = ["train.checkpoint_every=2", "train.keep_last=5", "train.ema_decay=0.9", "train.min_snr_gamma=5.0"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["fit", "-c", str(STAGE3), *_args(toy_root, stage2, full, "train.max_steps=4", *common)]) == 0
    assert main(["fit", "-c", str(STAGE3), *_args(toy_root, stage2, cut, "train.max_steps=2", *common,
                                                  "train.sample_every=0")]) == 0
    assert main(["fit", "-c", str(STAGE3), *_args(toy_root, stage2, cut, "train.max_steps=4", *common,
                                                  "train.sample_every=0"), "--resume"]) == 0
    a, b = load_file(full / ADAPTER.format(4)), load_file(cut / ADAPTER.format(4))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(load_file(cut / ADAPTER.format(2))[k], a[k]) for k in a)  # it trained in between
    ckpt = torch.load(full / "checkpoints" / "last.ckpt", weights_only=False)
    assert {k.split(".")[1] for k in ckpt["state_dict"]} == {"motion_adapter"} and "ema" in ckpt
    assert (full / "samples" / "step-0000004.mp4").is_file()
    pipe = MagicPosePipeline.from_pretrained(full / "pipeline")
    assert pipe.motion_adapter is not None
    poses = toy_root / "pose_map_test_set" / "video_0002"
    ref = toy_root / "test_set" / "video_0002" / "0000.png"
    code = main(["animate", "-c", str(REPO / "configs/magicpose/tiny.yaml"), "--reference", str(ref),
                 "--poses", str(poses), "--out", str(tmp_path / "anim"), "--steps", "2",
                 f"model.pretrained={full / 'pipeline'}", "model.components=null"])
    assert code == 0 and len(list((tmp_path / "anim" / "frames").iterdir())) == 5


def test_stage_and_data_must_agree(toy_root, stage2, tmp_path):
    with pytest.raises(UserError, match="data.num_frames"):
        MagicPoseTraining(load_config([STAGE3], _args(toy_root, stage2, tmp_path, "data.num_frames=null"),
                                      schema=FitConfig))
    with pytest.raises(UserError, match="stage 3"):
        MagicPoseTraining(load_config([STAGE3], _args(toy_root, stage2, tmp_path, "train.stage=2"),
                                      schema=FitConfig))


def test_stage3_ddp_two_cpu_processes_disjoint_clips_identical_weights(toy_root, stage2, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, str(REPO / "tests" / "ddp_probe.py"), str(tmp_path), str(toy_root),
                          str(STAGE3), "train.stage=3", f"model.pretrained={stage2}", "data.batch_size=1"],
                         capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert not set(ranks[0]["items"]) & set(ranks[1]["items"])  # each rank its own clips
    assert ranks[0]["checksum"] == ranks[1]["checksum"] and ranks[0]["first"] == ranks[1]["first"]
