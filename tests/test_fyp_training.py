"""Follow-Your-Pose training: both stages' trainable sets, a smoke step each, `magicpose fit` for both stages."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from magicpose.cli import main
from magicpose.config import FypFitConfig, FypModelSpec, load_config
from magicpose.data.video_caption import VideoCaptionDataset
from magicpose.errors import UserError
from magicpose.models.fyp_components import build_fyp_components
from magicpose.toy import generate_toy_dataset
from magicpose.training.followyourpose import FollowYourPoseTraining, make_fyp_loader

from .conftest import REPO

STAGE1 = REPO / "configs/followyourpose/tiny_stage1.yaml"
STAGE2 = REPO / "configs/followyourpose/tiny_stage2.yaml"
PATTERNS = ("attn1.to_q", "attn2.to_q", "attn_temp", "conv_temporal")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A toy TikTok-format dataset (stage 1) and a captions file over its frame folders (stage 2)."""
    root = tmp_path_factory.mktemp("fyp_data") / "toy"
    generate_toy_dataset(root, videos=2, test_videos=1, frames=6, size=48, seed=0)
    videos = sorted(p for p in (root / "train_set").iterdir() if p.is_dir())
    lines = [json.dumps({"video": f"toy/train_set/{v.name}", "caption": f"dancer number {i}",
                         "pose": f"toy/pose_map_train_set/{v.name}"}) for i, v in enumerate(videos)]
    captions = root.parent / "captions.jsonl"
    captions.write_text("\n".join(lines) + "\n")
    return {"root": root, "captions": captions}


def _config(path, data, run_dir, *overrides):
    return load_config([path], [f"data.root={data['root']}", f"data.captions={data['captions']}",
                                f"run_dir={run_dir}", *overrides], schema=FypFitConfig)


def _step_and_check(module: FollowYourPoseTraining, config, expected_trainable: set[str]) -> None:
    """One loss/backward/step: grads exactly on the trainable set; frozen parameters bit-identical after the step."""
    params = dict(module.named_parameters())
    assert {n for n, p in params.items() if p.requires_grad} == expected_trainable == module.trained_state_keys()
    batch = next(iter(make_fyp_loader(config, rank=0, world_size=1, global_step=0)))
    frozen = {n: p.detach().clone() for n, p in params.items() if not p.requires_grad}
    before = {n: params[n].detach().clone() for n in expected_trainable}
    optimizer = module.configure_optimizers()["optimizer"]
    loss = module.compute_loss(batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    loss.backward()
    assert {n for n, p in params.items() if p.grad is not None} == expected_trainable
    optimizer.step()
    assert all(torch.equal(params[n], value) for n, value in frozen.items())
    assert any(not torch.equal(params[n], before[n]) for n in expected_trainable)


def test_stage1_trains_exactly_the_pose_adapter(data, tmp_path):
    config = _config(STAGE1, data, tmp_path / "run")
    module = FollowYourPoseTraining(config)
    expected = {n for n, _ in module.named_parameters() if n.startswith("pose_adapter.")}
    assert expected
    _step_and_check(module, config, expected)


def test_stage2_trains_exactly_the_original_four_module_kinds(data, tmp_path):
    config = _config(STAGE2, data, tmp_path / "run", "train.pose_in_stage2=true")
    module = FollowYourPoseTraining(config)
    expected = {n for n, _ in module.named_parameters()
                if n.startswith("unet.") and any(f"{p}." in n for p in PATTERNS)}
    blocks = len(module.unet.transformer_blocks())
    assert len(expected) == 9 * blocks  # to_q x2, attn_temp q/k/v/out.w/out.b, conv_temporal down/up
    assert not any("norm_temp" in n for n in expected)  # the original's norm_temp stays frozen
    _step_and_check(module, config, expected)


def test_video_caption_dataset_windows_and_errors(data, tmp_path):
    dataset = VideoCaptionDataset(data["captions"], frames=4, stride=4, size=32, seed=0, with_pose=True)
    item = dataset.item(1, epoch=0)
    assert item["pixel_values"].shape == (4, 3, 32, 32) and item["pose_pixel_values"].shape == (4, 3, 32, 32)
    assert item["caption"] == "dancer number 1" and item["pixel_values"].min() >= -1
    assert torch.equal(item["pixel_values"], dataset.item(1, epoch=0)["pixel_values"])  # seeded by (seed, epoch, index)
    with pytest.raises(UserError, match="fewer than the 7"):
        VideoCaptionDataset(data["captions"], frames=7, size=32).item(0, 0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"video": "missing.mp4", "caption": "x"}\n')
    with pytest.raises(UserError, match="does not exist"):
        VideoCaptionDataset(bad)


def test_fit_both_stages_through_the_cli(data, tmp_path):
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    common = [f"data.root={data['root']}", f"data.captions={data['captions']}", "train.max_steps=2"]
    assert main(["fit", "-c", str(STAGE1), f"run_dir={s1}", *common]) == 0
    adapter = load_file(s1 / "weights/step-0000002/pose_adapter/diffusion_pytorch_model.safetensors")
    assert (s1 / "pipeline/unet").is_dir() and (s1 / "checkpoints/last.ckpt").is_file()
    saved = torch.load(s1 / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert saved and all(k.startswith("pose_adapter.") for k in saved)  # trained-only checkpoints

    assert main(["fit", "-c", str(STAGE2), f"run_dir={s2}", f"model.pretrained={s1 / 'pipeline'}", *common]) == 0
    delta = load_file(s2 / "weights/step-0000002/unet/trainable.safetensors")
    assert delta and all(any(f"{p}." in k for p in PATTERNS) for k in delta)
    exported = load_file(s2 / "pipeline/pose_adapter/diffusion_pytorch_model.safetensors")
    assert all(torch.equal(exported[k], adapter[k]) for k in adapter)  # stage 2 keeps the stage-1 adapter frozen
    # the per-step delta on top of the stage-1 pipeline is the exported stage-2 UNet
    spec = FypModelSpec(pretrained=str(s1 / "pipeline"), components=None, unet_delta=str(s2 / "weights/step-0000002/unet"))
    rebuilt = build_fyp_components(spec, ("unet",))["unet"].state_dict()
    final = load_file(s2 / "pipeline/unet/diffusion_pytorch_model.safetensors")
    assert all(torch.equal(rebuilt[k], final[k]) for k in final)


def test_gradient_checkpointing_keeps_pose_and_temporal_layers(data, tmp_path):
    """The original dropped the pose under checkpointing; here loss and gradients do not change."""
    config = _config(STAGE2, data, tmp_path / "run", "train.pose_in_stage2=true", "data.frames=3")
    module = FollowYourPoseTraining(config)
    batch = next(iter(make_fyp_loader(config, rank=0, world_size=1, global_step=0)))
    results = []
    for checkpointing in (False, True):
        if checkpointing:
            module.unet.enable_gradient_checkpointing()
        module.zero_grad(set_to_none=True)
        loss = module.compute_loss(batch, torch.Generator().manual_seed(0))
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}))
    (plain_loss, plain), (ckpt_loss, ckpt) = results
    assert torch.allclose(plain_loss, ckpt_loss, atol=1e-6) and plain.keys() == ckpt.keys()
    assert all(torch.allclose(plain[n], ckpt[n], atol=1e-5) for n in plain)


def test_fit_writes_validation_videos_every_sample_every_steps(data, tmp_path, recwarn):
    from magicpose.media import count_frames

    run = tmp_path / "run"
    skeleton = sorted((data["root"] / "pose_map_train_set").iterdir())[0]  # a folder of pose images
    argv = ["fit", "-c", str(STAGE2), f"run_dir={run}", f"data.captions={data['captions']}", "train.max_steps=2",
            "train.sample_every=2", "train.sample_prompts=[a robot dancing,Iron man on the beach]",
            f"train.sample_skeleton={skeleton}", "inference.frames=2", "inference.stride=2", "inference.steps=1"]
    assert main(argv) == 0
    assert [p.name for p in (run / "samples").iterdir()] == ["step-0000002"]  # every 2 steps, not at step 1
    folder = run / "samples/step-0000002"
    assert sorted(p.name for p in folder.iterdir()) == ["00_a_robot_dancing.mp4", "01_iron_man_on_the_beach.mp4"]
    assert count_frames(folder / "00_a_robot_dancing.mp4") == 2
    assert not [w for w in recwarn if type(w.message).__name__ == "SampleWarning"]  # with the skeleton, no problem


def test_sampling_problems_are_one_warning_and_never_stop_training(data, tmp_path):
    run = tmp_path / "run"
    argv = ["fit", "-c", str(STAGE2), f"run_dir={run}", f"data.captions={data['captions']}", "train.max_steps=2",
            "train.sample_every=1", "train.sample_prompts=[x]", f"train.sample_skeleton={tmp_path}/missing.mp4",
            "inference.frames=2", "inference.steps=1", "inference.context_length=2",
            "inference.context_overlap=2"]  # an overlap as long as the window: the pipeline refuses it
    with pytest.warns(UserWarning) as caught:
        assert main(argv) == 0
    messages = [str(w.message) for w in caught if type(w.message).__name__ == "SampleWarning"]
    assert len(messages) == 2, messages  # the skeleton (then pose-free), and the first failure (then off)
    assert "missing.mp4: no such file or folder; validation samples are pose-free" in messages[0]
    assert "validation samples at step 1 failed" in messages[1] and "sampling is off" in messages[1]
    assert (run / "pipeline/unet").is_dir() and not list((run / "samples").glob("*"))


def test_sample_every_without_prompts_is_a_warning_not_silence():
    from magicpose.config import FypInferenceConfig, FypTrainConfig
    from magicpose.training.fyp_samples import SampleWarning, sample_callbacks

    assert sample_callbacks("run", FypTrainConfig(sample_every=0, sample_prompts=["x"]), FypInferenceConfig()) == []
    with pytest.warns(SampleWarning, match="train.sample_prompts is empty"):
        assert sample_callbacks("run", FypTrainConfig(sample_every=5), FypInferenceConfig()) == []
    (callback,) = sample_callbacks("run", FypTrainConfig(sample_every=5, sample_prompts=["x"]), FypInferenceConfig())
    assert callback.folder.as_posix() == "run/samples" and callback.every == 5


def test_stage2_script_honours_an_adapter_given_on_the_command_line(tmp_path):
    """The stage-1 adapter check applies only when the command line does not say where the adapter comes from."""
    import subprocess

    def run(*overrides):
        return subprocess.run(["bash", "scripts/train_followyourpose.sh", "stage2", *overrides], cwd=REPO,
                              capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "FYP_RUNS": str(tmp_path)})

    res = run()
    assert res.returncode == 1 and "no stage-1 pose adapter" in res.stderr
    res = run(f"model.paths.pose_adapter={tmp_path}/adapter", "data.frames=twelve")
    assert res.returncode == 1 and "no stage-1 pose adapter" not in res.stderr
    assert "magicpose fit: error: command line: bad value for 'data.frames'" in res.stderr  # Python's turn
