"""Feature networks of the evaluation (random weights, real layouts): sizes, strict loading, missing files, LPIPS."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from magicpose.errors import UserError
from magicpose.eval import networks as N
from magicpose.eval.networks.weights import sha256_of
from magicpose.eval.protocol import EvalOptions, evaluate


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random networks saved under their published names and layouts (the real files are 400 MB, offline)."""
    folder = tmp_path_factory.mktemp("eval_weights")
    N.save_random_weights(folder)
    return folder


CASES = {
    # network, input at the protocol's size, output shape
    "inception": (N.FIDInceptionV3, (1, 3, 256, 256), (1, 2048)),
    "i3d": (N.InceptionI3d, (1, 3, 16, 224, 224), (1, 400)),
    "resnet3d": (N.ResNet3D50, (1, 3, 16, 112, 112), (1, 2048)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_feature_networks_run_at_protocol_sizes(name):
    cls, shape, out = CASES[name]
    net = N.informative_init_(cls())
    with torch.no_grad():
        x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
        y = net(x)
        assert tuple(y.shape) == out and torch.isfinite(y).all()
        assert not torch.allclose(y, net(x.flip(-1)))  # features depend on the input


def test_lpips_runs_at_protocol_size_and_input_ranges():
    net = N.informative_init_(N.LPIPSVGG())
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand((1, 3, 256, 256), generator=gen), torch.rand((1, 3, 256, 256), generator=gen)
    with torch.no_grad():
        disco = net(a, b, normalize=False)  # [0, 1] fed as is: DisCo's call
        fixed = net(a, b, normalize=True)  # mapped to [-1, 1] first: what LPIPS expects
        assert disco.shape == (1,) and float(disco) > 0 and float(fixed) > 0
        assert not torch.allclose(disco, fixed)
        small_a, small_b = a[..., :64, :64], b[..., :64, :64]
        assert torch.allclose(net(small_a, small_b, normalize=True), net(2 * small_a - 1, 2 * small_b - 1))
        assert float(net(small_a, small_a)) == 0.0


def test_weight_files_load_and_a_wrong_key_fails_clearly(weights, tmp_path):
    loaders = {
        "inception": lambda p: N.load_inception(p),
        "i3d": lambda p: N.load_i3d(p),
        "resnet3d": lambda p: N.load_resnet3d(p),
        "lpips_vgg": lambda p: N.load_lpips(weights / N.WEIGHT_FILES["vgg16"].filename, p),
        "vgg16": lambda p: N.load_lpips(p, weights / N.WEIGHT_FILES["lpips_vgg"].filename),
    }
    for key, load in loaders.items():
        path = weights / N.WEIGHT_FILES[key].filename
        if key != "vgg16":  # (loaded together with lpips_vgg just before)
            load(path)  # the real layout loads (the 3D ResNet one is wrapped in {"state_dict": {"module.*": ...}})
        raw = torch.load(path, map_location="cpu", weights_only=True)
        state = raw["state_dict"] if key == "resnet3d" else raw
        victim = sorted(k for k in state if not k.endswith("num_batches_tracked"))[-1]
        state[victim + "_renamed"] = state.pop(victim)
        bad = tmp_path / f"bad_{key}.pth"
        torch.save(raw, bad)
        with pytest.raises(UserError) as info:
            load(bad)
        message = str(info.value)
        assert str(bad) in message and "missing keys" in message and "unexpected keys" in message, message
        assert victim.removeprefix("module.") in message and "\n" not in message


def test_wrong_shape_and_unreadable_files_fail_clearly(weights, tmp_path):
    state = torch.load(weights / N.WEIGHT_FILES["i3d"].filename, map_location="cpu", weights_only=True)
    state["logits.conv3d.bias"] = torch.zeros(600)  # a 600-class I3D is not the protocol's network
    torch.save(state, tmp_path / "i3d600.pt")
    with pytest.raises(UserError, match=r"i3d600.pt: does not match .* wrong shapes logits.conv3d.bias \[600\]"):
        N.load_i3d(tmp_path / "i3d600.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(UserError, match="junk.pt: cannot read as a weight file"):
        N.load_i3d(tmp_path / "junk.pt")
    # Without `num_batches_tracked` (files older than torch 0.4.1) the load still succeeds.
    state = torch.load(weights / N.WEIGHT_FILES["inception"].filename, map_location="cpu", weights_only=True)
    torch.save({k: v for k, v in state.items() if "num_batches" not in k}, tmp_path / "old.pth")
    N.load_inception(tmp_path / "old.pth")


def _frames(root, videos: int = 1, count: int = 3, size: int = 32, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for v in range(videos):
        for i in range(count):
            path = root / f"video{v}" / f"{i:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)


def test_identical_prediction_and_ground_truth(weights, tmp_path):
    _frames(tmp_path / "gt")
    options = EvalOptions(metrics=("l1", "ssim", "psnr", "lpips", "fid"), weights_dir=weights, size=32,
                          frechet="fast", progress=False)  # fmt: skip
    record = evaluate(tmp_path / "gt", tmp_path / "gt", options)
    assert record["skipped"] == {}
    for protocol in ("disco", "fixed"):
        m = record["metrics"][protocol]
        assert m["l1"] == 0.0 and m["psnr"] == 100.0 and m["ssim"] == pytest.approx(1.0)
        assert m["lpips"] == 0.0
        assert abs(m["fid"]) < 1e-6
    assert record["counts"] == {"videos": 1, "frames": 3, "clips": 0, "resized_frames": 0,
                                "unpaired_pred": 0, "unpaired_gt": 0}  # fmt: skip
    sha = sha256_of(weights / N.WEIGHT_FILES["inception"].filename)
    assert record["weights"]["inception"]["sha256"] == sha
    assert record["weights"]["inception"]["matches_known_sha256"] is False  # random weights: not the real file


def test_missing_weight_file_is_named_and_other_metrics_run(weights, tmp_path):
    _frames(tmp_path / "gt", seed=0)
    _frames(tmp_path / "pred", seed=1)
    partial = tmp_path / "weights"
    partial.mkdir()
    for key in ("vgg16", "lpips_vgg"):  # only LPIPS' files
        shutil.copy(weights / N.WEIGHT_FILES[key].filename, partial)
    record = evaluate(tmp_path / "pred", tmp_path / "gt", EvalOptions(weights_dir=partial, size=32, progress=False))
    assert set(record["skipped"]) == {"fid", "fid_vid", "fvd"}
    assert str(partial / "pt_inception-2015-12-05-6726825d.pth") in record["skipped"]["fid"]
    assert str(partial / "i3d_pretrained_400.pt") in record["skipped"]["fvd"]
    assert str(partial / "resnet-50-kinetics.pth") in record["skipped"]["fid_vid"]
    for protocol in ("disco", "fixed"):
        assert set(record["metrics"][protocol]) == {"l1", "ssim", "psnr", "lpips", "flicker", "flicker_energy_pred",
                                                    "flicker_energy_gt", "flicker_energy_ratio"}  # weight-free too
    disco, fixed = record["metrics"]["disco"], record["metrics"]["fixed"]
    assert disco["l1"] == pytest.approx(fixed["l1"] * 255 / (32 * 32))  # L1 / (H*W) vs a plain mean
    assert disco["lpips"] != fixed["lpips"]  # [0, 1] vs [-1, 1] inputs
