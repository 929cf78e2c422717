"""The originals' single files where a folder is expected (`magicpose.convert.cache`): converted once, strictly,
into a cache folder keyed by name, size and mtime; lists of alternatives; the error without conversion."""

from __future__ import annotations

import os

import pytest
import torch

from magicpose.convert.cache import CACHE_ENV, cache_folder, convert_sources, detect
from magicpose.convert.testing import original_state_dict, write_synthetic_release
from magicpose.errors import UserError

from .conftest import REPO, tiny_spec, write_tiny_sd_folder

TINY = str(REPO / "configs/models/tiny")
FYP_TINY = str(REPO / "configs/models/fyp_tiny")


@pytest.fixture(scope="module")
def models():
    from magicpose.models.components import build_components

    components = build_components(tiny_spec())
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():  # different from a copy of the UNet, so a wrong source cannot pass
        for param in components["appearance_unet"].parameters():
            param.add_(torch.randn(param.shape, generator=gen) * 0.01)
    return components


@pytest.fixture(scope="module")
def released(models, tmp_path_factory):
    """The MagicDance release's files, named as released, in pretrained_weights/."""
    root = tmp_path_factory.mktemp("release") / "pretrained_weights"
    root.mkdir()
    for name, layout in (("control_sd15_ini.ckpt", "init"), ("control_v11p_sd15_openpose.pth", "controlnet"),
                         ("model_state-10000.th", "stage1"), ("model_state-110000.th", "stage2")):
        torch.save(original_state_dict(models, layout), root / name)
    return root


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Equal weights; the appearance UNet's final norm/conv is never used and converts from the UNet's."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa if not k.startswith("conv_"))


def test_detect_reads_what_a_file_holds_from_its_keys(released):
    assert detect(released / "control_sd15_ini.ckpt") == "magicdance"
    assert detect(released / "model_state-10000.th") == "magicdance"
    assert detect(released / "control_v11p_sd15_openpose.pth") == "controlnet"


def test_released_files_load_where_folders_are_expected_and_convert_once(models, released, monkeypatch):
    from magicpose.models.components import build_components

    monkeypatch.delenv(CACHE_ENV, raising=False)
    lines: list[str] = []
    spec = tiny_spec(paths={
        "tokenizer": str(REPO / "configs/models/sd15/tokenizer"),
        "unet": [str(released / "stable-diffusion-v1-5/unet"), str(released / "control_sd15_ini.ckpt")],
        "appearance_unet": str(released / "model_state-10000.th"),
        "controlnet": str(released / "control_v11p_sd15_openpose.pth"),
    })
    resolved = convert_sources(spec, lines.append)
    built = build_components(resolved)
    assert _same(built["unet"], models["unet"])
    assert _same(built["appearance_unet"], models["appearance_unet"])
    assert _same(built["controlnet"], models["controlnet"])
    # beside the files, keyed by name, size and mtime; a line before and after each conversion
    stat = (released / "model_state-10000.th").stat()
    assert resolved.paths["appearance_unet"] == str(
        released / ".converted" / f"model_state-10000-{stat.st_size}-{int(stat.st_mtime)}" / "appearance_unet")
    assert sum(line.startswith("converting ") for line in lines) == 3
    assert sum(line.startswith("converted ") for line in lines) == 3
    # the second time: reused, said in one line each
    lines.clear()
    assert convert_sources(spec, lines.append) == resolved
    assert len(lines) == 3 and all("using its conversion in" in line for line in lines)
    # a replaced file (new mtime) converts again
    os.utime(released / "control_v11p_sd15_openpose.pth", (1, 1))
    assert cache_folder(released / "control_v11p_sd15_openpose.pth").name.endswith("-1")


def test_a_released_checkpoint_as_the_pipeline(models, released, tmp_path, monkeypatch):
    from magicpose.pipelines.magicpose import MagicPosePipeline

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    spec = tiny_spec(pretrained=[str(tmp_path / "MagicPose"), str(released / "model_state-110000.th")],
                     components=TINY, paths={})
    pipe = MagicPosePipeline.from_spec(convert_sources(spec, lambda line: None))
    assert _same(pipe.controlnet, models["controlnet"]) and _same(pipe.vae, models["vae"])
    assert str(spec.pretrained[1]) not in str(convert_sources(spec, lambda line: None).pretrained)
    assert (tmp_path / "cache").is_dir()


def test_errors_name_the_file_and_what_to_do(released, tmp_path, monkeypatch):
    from magicpose.models.components import build_components

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    # a file given to the builder directly (no conversion step) says how to convert it
    with pytest.raises(UserError, match=r"model_state-10000\.th: an original checkpoint file.*convert_sources"):
        build_components(tiny_spec(paths={"appearance_unet": str(released / "model_state-10000.th")}),
                         ("appearance_unet",))
    # a component the file does not hold
    with pytest.raises(UserError, match=r"openpose\.pth: holds no unet \(model\.paths\.unet\)"):
        convert_sources(tiny_spec(paths={"unet": str(released / "control_v11p_sd15_openpose.pth")}),
                        lambda line: None)
    # no alternative exists
    with pytest.raises(UserError, match=r"model\.paths\.controlnet: none of these exists: .*a.*b"):
        convert_sources(tiny_spec(paths={"controlnet": [str(tmp_path / "a"), str(tmp_path / "b")]}),
                        lambda line: None)
    # a file that is no checkpoint of ours
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match=r"other\.pth: not a checkpoint this package knows"):
        convert_sources(tiny_spec(paths={"controlnet": str(tmp_path / "other.pth")}), lambda line: None)


def test_follow_your_pose_release_files(tmp_path, monkeypatch):
    from magicpose.config.followyourpose import FypModelSpec
    from magicpose.models.fyp_components import build_fyp_components

    monkeypatch.delenv(CACHE_ENV, raising=False)
    ckpt_dir, encoder = write_synthetic_release(tmp_path / "checkpoints", FYP_TINY, vae_scale_factor=2, seed=3)
    # the release's layout: SD-1.4 beside the checkpoint folder gives the parts the checkpoint lacks
    sd = write_tiny_sd_folder(tmp_path / "checkpoints" / "stable-diffusion-v1-4", FYP_TINY)
    spec = FypModelSpec(components=FYP_TINY, pretrained=str(ckpt_dir), paths={"pose_adapter": str(encoder)})
    resolved = convert_sources(spec, lambda line: None)
    assert resolved.pretrained.startswith(str(tmp_path / "checkpoints" / ".converted" / "followyourpose_checkpoint-1000-"))
    assert resolved.paths["pose_adapter"].endswith("/pose_adapter")
    built = build_fyp_components(resolved)
    from diffusers import AutoencoderKL

    assert _same(built["vae"], AutoencoderKL.from_pretrained(sd / "vae"))
    state = torch.load(ckpt_dir / "pytorch_model.bin", weights_only=True)
    ours = built["unet"].state_dict()
    assert all(torch.equal(ours["unet." + k], v) for k, v in state.items() if not k.startswith("skeleton_adapter."))
    enc = torch.load(encoder, weights_only=True)
    assert sum(v.numel() for v in built["pose_adapter"].state_dict().values()) == sum(v.numel() for v in enc.values())


def test_processes_starting_together_convert_once(released, tmp_path, monkeypatch):
    """DDP ranks start together: the lock lets one convert while the others wait and reuse its folder. flock locks
    belong to open file descriptions, so threads that each open the lock file contend like processes."""
    import threading

    from magicpose.convert.cache import converted_folder

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    lines: list[str] = []
    folders: list = []
    workers = [threading.Thread(target=lambda: folders.append(
        converted_folder(released / "control_v11p_sd15_openpose.pth", TINY, lines.append))) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(set(folders)) == 1 and (folders[0] / "controlnet").is_dir()
    assert sum(line.startswith("converting ") for line in lines) == 1
    assert sum("using its conversion in" in line for line in lines) == 2
