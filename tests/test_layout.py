"""The package's floors: imports that must never exist, and the scripts' behaviour without weights."""

from __future__ import annotations

import ast
import subprocess

import pytest

from .conftest import REPO

PACKAGE = REPO / "magicpose"
FORBIDDEN = {
    "pipelines": ("magicpose.training", "pytorch_lightning", "lightning", "magicpose.cli"),
    "models": ("magicpose.data", "magicpose.training", "magicpose.cli", "magicpose.pipelines"),
    "data": ("magicpose.models", "magicpose.training", "magicpose.pipelines"),
    "eval": ("magicpose.training",),
}


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


@pytest.mark.parametrize("floor", sorted(FORBIDDEN))
def test_no_forbidden_imports(floor):
    offenders = [
        f"{path.relative_to(REPO)} imports {name}"
        for path in (PACKAGE / floor).rglob("*.py")
        for name in _imports(path)
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN[floor])
    ]
    assert not offenders


def test_no_unsafe_torch_load_and_no_hub_ids():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{path}: {line.strip()}"
        assert "runwayml/" not in text and "lllyasviel/" not in text, path


def test_inference_script_names_missing_weights(tmp_path):
    res = subprocess.run(
        ["bash", "scripts/inference_any_image_pose.sh", "ref.png", "poses/"],
        cwd=REPO, capture_output=True, text=True, env={"MAGICPOSE_PIPELINE": str(tmp_path / "MagicPose"), "PATH": "/usr/bin:/bin"},
    )
    assert res.returncode == 1
    assert f"{tmp_path}/MagicPose/" in res.stderr and "model_state-110000.th" in res.stderr
    assert "magicpose convert magicdance" in res.stderr
