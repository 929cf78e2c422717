"""Training: smoke fit, stage hand-off, exact resume, DDP on CPU."""

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
from magicpose.toy import generate_toy_dataset
from magicpose.training.data import StepSampler
from magicpose.training.magicpose import MagicPoseTraining, make_train_loader

from .conftest import REPO

STAGE1 = REPO / "configs/magicpose/tiny/stage1.yaml"
STAGE2 = REPO / "configs/magicpose/tiny/stage2.yaml"


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy") / "toy"
    generate_toy_dataset(root, videos=3, test_videos=1, frames=6, size=64, seed=0)
    return root


def _config(path, toy_root, run_dir, *overrides):
    return load_config([path], [f"data.root={toy_root}", f"run_dir={run_dir}", *overrides], schema=FitConfig)


def _fit(path, toy_root, run_dir, *overrides, resume=False):
    argv = ["fit", "-c", str(path), f"data.root={toy_root}", f"run_dir={run_dir}", *overrides]
    assert main([*argv, "--resume"] if resume else argv) == 0


def test_smoke_step_grads_reach_every_trainable_parameter_and_frozen_ones_stay(toy_root, tmp_path):
    config = _config(STAGE2, toy_root, tmp_path / "run", "model.paths.appearance_unet=null")
    module = MagicPoseTraining(config)
    batch = next(iter(make_train_loader(config, rank=0, world_size=1, global_step=0)))
    frozen = {n: p.detach().clone() for n, p in module.named_parameters() if not p.requires_grad}
    trainable = dict((n, p) for n, p in module.named_parameters() if p.requires_grad)
    assert trainable and all(n.startswith(("model.appearance_unet.", "model.controlnet.")) for n in trainable)
    assert not any(n.startswith("model.unet.") for n in trainable)
    # only the appearance UNet's tail after its last recorded attn1 input is left out
    assert module.unreached and all(n.startswith(("up_blocks.1.attentions.1", "conv_norm_out", "conv_out"))
                                    for n in module.unreached)

    optimizer = module.configure_optimizers()["optimizer"]
    loss = module.compute_loss(batch, torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss)
    assert [n for n, p in trainable.items() if p.grad is None] == []
    before = {n: p.detach().clone() for n, p in trainable.items()}
    optimizer.step()
    assert any(not torch.equal(before[n], p) for n, p in trainable.items())
    for name, param in module.named_parameters():
        if name in frozen:
            assert torch.equal(frozen[name], param), name


def test_stage1_then_stage2_from_the_saved_folder_then_animate(toy_root, tmp_path):
    _fit(STAGE1, toy_root, tmp_path / "s1", "train.max_steps=2")
    s1 = tmp_path / "s1"
    assert (s1 / "config.yaml").is_file() and (s1 / "samples" / "step-0000002.mp4").is_file()
    ckpt = torch.load(s1 / "checkpoints" / "last.ckpt", weights_only=False)
    assert {k.split(".")[1] for k in ckpt["state_dict"]} == {"appearance_unet"}  # only what trained
    stage1_weights = load_file(s1 / "weights" / "step-0000002" / "appearance_unet" / "diffusion_pytorch_model.safetensors")

    appearance = s1 / "pipeline" / "appearance_unet"
    config = _config(STAGE2, toy_root, tmp_path / "s2", f"model.paths.appearance_unet={appearance}")
    module = MagicPoseTraining(config)
    state = module.model.appearance_unet.state_dict()
    assert all(torch.equal(state[k], v) for k, v in stage1_weights.items())

    _fit(STAGE2, toy_root, tmp_path / "s2", f"model.paths.appearance_unet={appearance}", "train.max_steps=2",
         "train.sample_every=0")
    pipeline = tmp_path / "s2" / "pipeline"
    assert (pipeline / "controlnet").is_dir()
    poses = toy_root / "pose_map_test_set" / "video_0003"
    ref = toy_root / "test_set" / "video_0003" / "0000.png"
    code = main(["animate", "-c", str(REPO / "configs/magicpose/tiny.yaml"), "--reference", str(ref),
                 "--poses", str(poses), "--out", str(tmp_path / "anim"), "--steps", "2",
                 f"model.pretrained={pipeline}", "model.components=null"])
    assert code == 0 and len(list((tmp_path / "anim" / "frames").iterdir())) == 6


def test_existing_run_is_not_overwritten_and_resume_needs_a_checkpoint(toy_root, tmp_path, capsys):
    run = tmp_path / "r"
    argv = ["fit", "-c", str(STAGE1), f"data.root={toy_root}", f"run_dir={run}", "train.max_steps=1",
            "train.sample_every=0"]
    assert main([*argv, "--resume"]) == 1
    assert "nothing to resume" in capsys.readouterr().err
    assert main(argv) == 0
    assert main(argv) == 1
    assert "--resume" in capsys.readouterr().err


def test_killed_and_resumed_run_matches_an_uninterrupted_one(toy_root, tmp_path):
    common = ["train.sample_every=0", "train.checkpoint_every=2", "train.keep_last=5"]
    _fit(STAGE1, toy_root, tmp_path / "full", "train.max_steps=4", *common)
    _fit(STAGE1, toy_root, tmp_path / "cut", "train.max_steps=2", *common)
    _fit(STAGE1, toy_root, tmp_path / "cut", "train.max_steps=4", *common, resume=True)
    name = "weights/step-0000004/appearance_unet/diffusion_pytorch_model.safetensors"
    full, resumed = load_file(tmp_path / "full" / name), load_file(tmp_path / "cut" / name)
    assert full.keys() == resumed.keys()
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    two = load_file(tmp_path / "cut" / name.replace("0000004", "0000002"))
    assert any(not torch.equal(two[k], full[k]) for k in full)  # it did train between steps 2 and 4


def test_step_sampler_shards_disjointly_and_resumes_mid_stream():
    ranks = [list(zip(range(7), iter(StepSampler(10, r, 2, seed=3)))) for r in range(2)]
    items = [{i % 10 for _, i in rank[:5]} for rank in ranks]
    assert not items[0] & items[1]
    stream = iter(StepSampler(10, 1, 2, seed=3))
    full = [next(stream) for _ in range(12)]
    resumed = iter(StepSampler(10, 1, 2, seed=3, start=7))
    assert [next(resumed) for _ in range(5)] == full[7:]


def test_ddp_two_cpu_processes_disjoint_data_different_noise_identical_weights(toy_root, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, str(REPO / "tests" / "ddp_probe.py"), str(tmp_path), str(toy_root),
                          str(STAGE1)], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert not set(ranks[0]["items"]) & set(ranks[1]["items"])
    assert all(a != b for a, b in zip(ranks[0]["noise"], ranks[1]["noise"]))
    assert ranks[0]["checksum"] == ranks[1]["checksum"] and ranks[0]["first"] == ranks[1]["first"]


def test_gradient_checkpointing_works_with_the_reference_bank(toy_root, tmp_path):
    grads = []
    for checkpointing in (False, True):
        config = _config(STAGE2, toy_root, tmp_path / "run", "model.paths.appearance_unet=null",
                         f"train.gradient_checkpointing={checkpointing}")
        module = MagicPoseTraining(config).train()
        batch = next(iter(make_train_loader(config, rank=0, world_size=1, global_step=0)))
        module.compute_loss(batch, torch.Generator().manual_seed(0)).backward()
        grads.append(torch.cat([p.grad.flatten() for p in module.trainable_parameters()]))
    assert module.model.appearance_unet.is_gradient_checkpointing
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)
    assert grads[0].abs().sum() > 0


def test_ema_weights_are_saved_next_to_the_trained_ones(toy_root, tmp_path):
    _fit(STAGE1, toy_root, tmp_path / "ema", "train.max_steps=2", "train.sample_every=0", "train.ema_decay=0.9")
    step = tmp_path / "ema" / "weights" / "step-0000002"
    raw = load_file(step / "appearance_unet" / "diffusion_pytorch_model.safetensors")
    ema = load_file(step / "ema" / "appearance_unet" / "diffusion_pytorch_model.safetensors")
    assert raw.keys() == ema.keys() and any(not torch.equal(raw[k], ema[k]) for k in raw)


def test_train_unet_switch_trains_saves_and_exports_the_main_unet(toy_root, tmp_path):
    """The toy-world switch: the main UNet joins the trainable set, its weights are saved and exported."""
    config = _config(STAGE2, toy_root, tmp_path / "unused", "model.paths.appearance_unet=null", "train.train_unet=true")
    module = MagicPoseTraining(config)
    assert module.model.unet.training and all(p.requires_grad for p in module.model.unet.parameters())
    batch = next(iter(make_train_loader(config, rank=0, world_size=1, global_step=0)))
    module.compute_loss(batch, torch.Generator().manual_seed(0)).backward()
    assert [n for n, p in module.model.unet.named_parameters() if p.grad is None] == []

    run = tmp_path / "run"
    _fit(STAGE1, toy_root, run, "train.max_steps=2", "train.sample_every=0", "train.train_unet=true",
         "train.ema_decay=0.9")
    step = run / "weights" / "step-0000002"
    assert (step / "unet").is_dir() and (step / "ema" / "unet").is_dir()
    exported = load_file(run / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors")
    ema = load_file(step / "ema" / "unet" / "diffusion_pytorch_model.safetensors")
    assert set(exported) == set(ema), (set(exported) ^ set(ema))
    assert all(torch.equal(exported[k], ema[k]) for k in ema)
    untouched = MagicPoseTraining(_config(STAGE1, toy_root, tmp_path / "x")).model.unet.state_dict()
    assert any(not torch.equal(untouched[k], exported[k]) for k in exported)


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_min_snr_weight_is_min_snr_gamma_times_the_x0_error_for_every_prediction_type(toy_root, tmp_path, kind):
    from diffusers.training_utils import compute_snr

    config = _config(STAGE1, toy_root, tmp_path / "run", f"train.prediction_type={kind}", "train.min_snr_gamma=5.0")
    module = MagicPoseTraining(config)
    sched = module.noise_scheduler
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 3, 8, 8, generator=gen), torch.randn(4, 3, 8, 8, generator=gen)
    x0_hat = x0 + 0.1 * torch.randn(4, 3, 8, 8, generator=gen)
    t = torch.tensor([5, 100, 500, 900])
    noisy = sched.add_noise(x0, noise, t)
    alpha = sched.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1)
    sigma = (1 - sched.alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1)
    eps_hat = (noisy - alpha * x0_hat) / sigma  # the epsilon / v predictions that imply x0_hat
    as_kind = {"epsilon": (eps_hat, noise), "sample": (x0_hat, x0),
               "v_prediction": (alpha * eps_hat - sigma * x0_hat, alpha * noise - sigma * x0)}
    prediction, target = as_kind[kind]
    snr = compute_snr(sched, t)
    x0_error = ((x0_hat - x0) ** 2).mean(dim=(1, 2, 3))
    expected = (torch.minimum(snr, torch.full_like(snr, 5.0)) * x0_error).mean()
    torch.testing.assert_close(module._weighted_mse(prediction, target, t), expected, rtol=1e-4, atol=1e-6)


def test_sampling_during_a_train_unet_run_keeps_training_the_unet_and_its_attention(toy_root, tmp_path):
    """A sample clip at step 1 (no EMA: the pipeline shares the live modules) must not freeze the main UNet that
    `train.train_unet` trains, nor replace the attention processors (and their backend) it was configured with."""
    import pytorch_lightning as pl

    from magicpose.training.fit import build_trainer

    run = tmp_path / "run"
    config = _config(STAGE1, toy_root, run, "train.train_unet=true", "train.sample_every=1", "train.ema_decay=null",
                     "train.max_steps=3", "train.checkpoint_every=100")
    module = MagicPoseTraining(config)
    unet = module.model.unet
    processors = dict(unet.attn_processors)
    backends = {name: getattr(p, "backend", None) for name, p in processors.items()}
    seen = []

    class Probe(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            seen.append({
                "weight": unet.conv_in.weight.detach().clone(),
                "requires_grad": all(p.requires_grad for p in unet.parameters()),
                "same_processors": all(a is processors[n] for n, a in unet.attn_processors.items()),
            })

    build_trainer(config, run, [Probe()]).fit(module)  # the module adds its SampleClip (configure_callbacks)
    assert len(seen) == 3 and len(list((run / "samples").glob("*.mp4"))) == 3
    assert all(s["requires_grad"] for s in seen), [s["requires_grad"] for s in seen]
    assert all(s["same_processors"] for s in seen)
    assert {n: getattr(p, "backend", None) for n, p in unet.attn_processors.items()} == backends
    assert not torch.equal(seen[0]["weight"], seen[1]["weight"])  # trained after the first sample
    assert not torch.equal(seen[1]["weight"], seen[2]["weight"])


def test_sample_clip_failure_is_one_warning_and_a_missing_sample_split_is_said_at_fit_start(toy_root, tmp_path):
    """The original swallowed a failing sample clip silently; here a failure is a warning with its reason, once, and
    the run goes on; a sample split that does not exist is reported when fitting starts."""
    import warnings

    from magicpose.training.callbacks import SampleWarning
    from magicpose.training.fit import build_trainer

    run = tmp_path / "fails"
    config = _config(STAGE1, toy_root, run, "train.sample_every=1", "train.max_steps=2", "train.checkpoint_every=100",
                     "inference.guidance_mode=bogus")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_trainer(config, run, []).fit(MagicPoseTraining(config))
    said = [str(w.message) for w in caught if issubclass(w.category, SampleWarning)]
    assert len(said) == 1 and "sample clip at step 1 failed" in said[0] and "bogus" in said[0], said
    assert not list((run / "samples").glob("*.mp4"))

    run = tmp_path / "nosplit"
    config = _config(STAGE1, toy_root, run, "train.sample_every=1", "train.max_steps=1", "data.val_split=nosuch")
    with pytest.warns(SampleWarning, match=r"no sample clips during training \(data.val_split=nosuch\): .*nosuch"):
        MagicPoseTraining(config).configure_callbacks()
