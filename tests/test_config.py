"""The config system: YAML bases, overrides, unknown keys named with the nearest valid one."""

from __future__ import annotations

import pytest

from magicpose.config import load_config
from magicpose.errors import UserError

from .conftest import REPO


def test_shipped_configs_load():
    tiny = load_config([REPO / "configs/magicpose/tiny.yaml"])
    assert tiny.inference.size == 64 and tiny.model.paths["tokenizer"].endswith("sd15/tokenizer")
    real = load_config([REPO / "configs/magicpose/inference.yaml"])
    assert real.inference.steps == 50 and real.inference.guidance_scale == 7.0
    assert real.model.pretrained[0] == "pretrained_weights/MagicPose"  # else the released file, converted


def test_base_chain_later_files_and_overrides_win(tmp_path):
    (tmp_path / "base.yaml").write_text("inference:\n  steps: 30\n  size: 128\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\ninference:\n  steps: 20\n")
    (tmp_path / "extra.yaml").write_text("inference:\n  size: 256\n")
    config = load_config([tmp_path / "child.yaml", tmp_path / "extra.yaml"], ["inference.seed=3"])
    assert (config.inference.steps, config.inference.size, config.inference.seed) == (20, 256, 3)
    assert config.inference.guidance_scale == 7.0  # schema default


def test_unknown_key_in_a_file_names_the_file_the_key_and_a_suggestion(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("inference:\n  guidance_scal: 3\n")
    with pytest.raises(UserError, match=r"bad.yaml: unknown key 'inference.guidance_scal' \(did you mean 'inference.guidance_scale'\?\)"):
        load_config([bad])
    (tmp_path / "bad2.yaml").write_text("modle: {}\n")
    with pytest.raises(UserError, match="did you mean 'model'"):
        load_config([tmp_path / "bad2.yaml"])


def test_free_form_component_paths_accept_any_component_key():
    config = load_config([], ["model.paths.controlnet=/weights/openpose"])
    assert config.model.paths["controlnet"] == "/weights/openpose"


@pytest.mark.parametrize(
    ("content", "needle"),
    [("inference: [1, 2\n", "not valid YAML"), ("- a\n- b\n", "must be a mapping"), ("base: self.yaml\n", "loops")],
)
def test_broken_files_are_user_errors(tmp_path, content, needle):
    path = tmp_path / "self.yaml"
    path.write_text(content)
    with pytest.raises(UserError, match=needle):
        load_config([path])


def test_missing_file_and_bad_override():
    with pytest.raises(UserError, match="no such config file"):
        load_config(["/nonexistent.yaml"])
    with pytest.raises(UserError, match="key=value"):
        load_config([], ["inference.steps"])
    with pytest.raises(UserError, match="bad value for 'inference.steps'"):
        load_config([], ["inference.steps=many"])


def test_training_stage_configs_are_short_diffs_over_one_base():
    from magicpose.config import FitConfig

    for name, stage, batch in (("stage1_appearance", 1, 32), ("stage2_pose", 2, 8)):
        config = load_config([REPO / f"configs/magicpose/{name}.yaml", REPO / "configs/trainer/ddp_8gpu.yaml"],
                             schema=FitConfig)
        assert (config.train.stage, config.data.batch_size, config.trainer.devices) == (stage, batch, 8)
        assert config.train.lr == 1e-5 and config.model.paths["unet"].startswith("pretrained_weights/")
        assert len((REPO / f"configs/magicpose/{name}.yaml").read_text().splitlines()) < 20
    with pytest.raises(UserError, match="did you mean 'train.max_steps'"):
        load_config([REPO / "configs/magicpose/base.yaml"], ["train.max_step=3"], schema=FitConfig)
