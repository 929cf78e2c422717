"""The package's floors (imports that must never exist, by test) and the scripts' behaviour without weights."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from .conftest import REPO

PACKAGE = REPO / "magicpose"

# The floors of ../shared/reference/architecture.md: a module imports from lower floors only. The package root
# (`magicpose/__init__.py`, the version) sits below everything.
FLOORS = {
    "errors": 1, "paths": 1, "media": 1, "device": 1, "original_names": 1,
    "models": 2, "pose": 2, "config": 2,
    "pipelines": 3, "convert": 3, "data": 3, "eval": 3,
    "training": 4, "toy": 4, "bench": 4,
    "cli": 5, "commands": 5, "demo": 5, "__main__": 5,
}  # fmt: skip
# Imports within a floor are arrows too; only these exist. Floor 1 shares `UserError` (errors.py imports nothing);
# the model builders take config schemas; the toy quickstart trains through `training.fit`; `python -m magicpose`
# is the CLI; the web demo runs the commands' code path (`commands.animate`, `fyp_sample`, `outputs`, `pose_env`)
# and `magicpose demo` (commands/demo.py, argument parsing only) starts it.
SIDEWAYS = {("media", "errors"), ("device", "errors"), ("paths", "errors"), ("models", "config"),
            ("toy", "training"), ("__main__", "cli"), ("demo", "commands"), ("commands", "demo")}
# Third-party packages a room must not pull in: inference never loads Lightning, and the demo neither.
FORBIDDEN_PACKAGES = {"pipelines": ("pytorch_lightning", "lightning"), "models": ("pytorch_lightning", "lightning"),
                      "demo": ("pytorch_lightning", "lightning")}


def _room(path):
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return None if parts == ("__init__",) else parts[0]


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):  # every import, also those inside functions
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def _arrows():
    """(file, its room, the room it imports) for every import of our own package outside the file's room."""
    for path in sorted(PACKAGE.rglob("*.py")):
        room = _room(path)
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "magicpose" and len(parts) > 1 and parts[1] != room:
                yield path.relative_to(REPO), room, parts[1]


def test_every_module_has_a_floor():
    rooms = {_room(p) for p in PACKAGE.rglob("*.py")} - {None}
    assert rooms <= set(FLOORS), sorted(rooms - set(FLOORS))


def test_no_upward_or_unlisted_sideways_arrow():
    offenders = []
    for path, room, target in _arrows():
        if target not in FLOORS:
            continue  # the package root
        up = FLOORS[target] > FLOORS[room]
        sideways = FLOORS[target] == FLOORS[room] and (room, target) not in SIDEWAYS
        if up or sideways:
            offenders.append(f"{path} (floor {FLOORS[room]}) imports magicpose.{target} (floor {FLOORS[target]})")
    assert not offenders, "\n".join(offenders)


def test_the_named_arrows_never_exist():
    """The issue's list, spelled out (the floors imply it; this names what a failure means)."""
    never = {
        "pipelines": {"training"}, "models": {"data", "training", "pose", "commands"}, "pose": {"data", "eval"},
        "data": {"models", "eval", "training"}, "eval": {"data", "toy", "training"},
    }  # fmt: skip
    for room in FLOORS:
        if FLOORS[room] < 5:
            never.setdefault(room, set()).update({"commands", "cli", "demo"})
    never["config"] = set(FLOORS) - {"config", "errors", "paths", "media", "original_names"}
    for room in ("media", "errors", "paths"):
        never[room] = set(FLOORS) - {room, "errors"}
    offenders = [f"{path} imports magicpose.{target}" for path, room, target in _arrows()
                 if target in never.get(room, ())]
    assert not offenders, offenders


@pytest.mark.parametrize("room", sorted(FORBIDDEN_PACKAGES))
def test_no_forbidden_packages(room):
    offenders = [
        f"{path.relative_to(REPO)} imports {name}"
        for path in (PACKAGE / room).rglob("*.py")
        for name in _imports(path)
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN_PACKAGES[room])
    ]
    assert not offenders


def test_argparse_lives_in_commands_and_cli_only():
    offenders = [str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py")
                 if _room(p) not in ("commands", "cli") and "argparse" in set(_imports(p))]
    assert not offenders


def test_help_and_reading_a_config_import_no_torch():
    """`magicpose --help` builds every command's parser, and a YAML is read, without loading torch or diffusers."""
    code = ("import sys; from magicpose.cli import build_parser; build_parser(); "
            "from magicpose.config import load_config, schema_for; "
            "load_config(['configs/magicpose/stage2_pose.yaml'], schema=schema_for('magicpose', 'fit')); "
            "load_config(['configs/followyourpose/tiny.yaml'], schema=schema_for('followyourpose', 'inference')); "
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'pytorch_lightning') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert res.stdout.strip() == "[]", res.stdout + res.stderr


def test_the_pose_environment_can_start_the_cli():
    """`.venv-pose` (mediapipe, no omegaconf, no torch) runs `magicpose extract-pose`: the CLI's start (parsers, the
    check for the originals' flags) must import neither."""
    code = ("import sys; from magicpose.cli import build_parser, _original_flags; "
            "_original_flags(build_parser(), ['extract-pose', '--input', 'x', '--skeleton_path', 'y']); "
            "print(sorted(m for m in ('torch', 'omegaconf', 'yaml') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert res.stdout.strip() == "[]", res.stdout + res.stderr


def test_no_unsafe_torch_load_and_no_hub_ids():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{path}: {line.strip()}"
        assert "runwayml/" not in text and "lllyasviel/" not in text, path


def test_inference_script_names_missing_weights(tmp_path):
    """No weights: one line naming every place looked at (the converted folder and the released files)."""
    from PIL import Image

    Image.new("RGB", (64, 64)).save(tmp_path / "ref.png")
    (tmp_path / "poses").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "poses" / "0001.png")
    env = {"PATH": f"{REPO / '.venv' / 'bin'}:/usr/bin:/bin", "MAGICPOSE_CACHE": str(tmp_path / "cache")}
    res = subprocess.run(["bash", "scripts/inference_any_image_pose.sh", str(tmp_path / "ref.png"),
                          str(tmp_path / "poses"), str(tmp_path / "out"), "device=cpu"],
                         cwd=REPO, capture_output=True, text=True, env=env)
    assert res.returncode == 1, res.stderr
    line = res.stderr.strip().splitlines()[-1]
    assert "model.pretrained: none of these exists" in line, res.stderr
    assert "pretrained_weights/MagicPose" in line and "model_state-110000.th" in line
    assert "pretrained_weights/README.md" in line


def test_gradio_is_imported_by_the_demo_page_only():
    """gradio is an optional extra (`magicpose[demo]`): only `magicpose/demo/app.py` imports it, and only
    `magicpose demo` imports that module, so the package works without it."""
    importers = sorted(str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py")
                       if any(name == "gradio" or name.startswith("gradio.") for name in _imports(p)))
    assert importers == ["magicpose/demo/app.py"]
    app_importers = sorted(str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py")
                           if "magicpose.demo.app" in set(_imports(p)) and p.name != "app.py")
    assert app_importers == ["magicpose/demo/server.py"]
