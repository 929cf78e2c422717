"""Running `magicpose extract-pose` in the pose environment from a command of the main one.

mediapipe needs numpy<2 and lives only in `.venv-pose` (`bash scripts/setup_pose.sh`), so a command in `.venv`
(torch) that needs poses (`fyp-sample --video`, a reference image for `retarget-pose` / `animate --retarget`)
runs extraction there as a subprocess, with this checkout's package first on its path (an editable install in
`.venv-pose` may point at another checkout).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import magicpose
from magicpose.errors import UserError
from magicpose.paths import REPO_ROOT

SKELETON_DIR = "skeleton"  # in the command's --out
POSE_MAPS, KEYPOINTS, REPORT = "pose_maps", "keypoints", "report.json"  # extract-pose's layout (magicpose.pose.extract)
SETUP = "run `bash scripts/setup_pose.sh` to create it"
SETUP_HINT = f"{SETUP}, or pass ready-made skeleton maps with --skeleton"


def pose_python() -> Path:
    """The pose environment's python: `$MAGICPOSE_POSE_VENV` (as for setup_pose.sh, relative to the repo) or
    `.venv-pose` in the repository."""
    venv = Path(os.environ.get("MAGICPOSE_POSE_VENV") or ".venv-pose")
    return (venv if venv.is_absolute() else REPO_ROOT / venv) / "bin" / "python"


def _reusable(folder: Path, video: Path, style: str) -> bool:
    """An earlier extraction in `folder` made `style` maps from this very video, after its last change."""
    report = folder / REPORT
    try:
        made = json.loads(report.read_text())
    except (OSError, ValueError):
        return False
    same_input = isinstance(made, dict) and made.get("input") == str(video) and made.get("style") == style
    fresh = same_input and report.stat().st_mtime >= video.stat().st_mtime
    return fresh and any((folder / POSE_MAPS).glob("*.png"))


def _failure(source: Path, done: subprocess.CompletedProcess) -> UserError:
    """extract-pose's own one-line error when it gave one, else its last line and exit code."""
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    said = [line for line in lines if line.startswith("magicpose extract-pose: error:")]
    if said:
        return UserError(said[-1].removeprefix("magicpose "))
    last = lines[-1] if lines else "no message"
    return UserError(f"{source}: pose extraction in the pose environment failed (exit {done.returncode}): {last}")


def check_pose_env(missing_hint: str) -> Path:
    """The pose environment's python; one line naming it and how to create it (`missing_hint`) if absent."""
    python = pose_python()
    if not python.exists():
        raise UserError(f"{python}: no pose environment, which {missing_hint}")
    return python


def run_extract_pose(source: Path, folder: Path, style: str, overwrite: bool, missing_hint: str) -> str:
    """`magicpose extract-pose --input source --out folder --style style` in the pose environment; its summary.

    Without the environment: one line naming it, how to create it, and `missing_hint` (what else to pass).
    """
    python = check_pose_env(missing_hint)
    command = [str(python), "-m", "magicpose", "extract-pose", "--input", str(source), "--out", str(folder),
               "--style", style, *(["--overwrite"] if overwrite else [])]
    package_root = str(Path(magicpose.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
           "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}  # mediapipe's log noise
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise _failure(source, done)
    return done.stdout.strip()


def extract_skeleton(video: Path, out: Path, overwrite: bool = False, style: str = "mmpose",
                     hint: str = SETUP_HINT, source: str = "--video") -> Path:
    """Pose maps of the raw `video` in `out/skeleton/pose_maps` (extract-pose's layout), in `style` (`mmpose`:
    Follow-Your-Pose's skeletons; `openpose`: MagicPose's ControlNet maps).

    An earlier extraction of the same video in the same style there is reused; one of another video is replaced only
    with `overwrite` (extract-pose refuses otherwise). Returns the pose-map folder. `hint` (what to do without a pose
    environment) and `source` (what named the video) go into the errors.
    """
    video = video.resolve()
    if not video.is_file():
        raise UserError(f"{video}: no such video file ({source})")
    folder = out.resolve() / SKELETON_DIR
    if _reusable(folder, video, style):
        print(f"reusing the poses in {folder} (extracted from {video})")
        return folder / POSE_MAPS
    check_pose_env(f"{source} needs for mediapipe; {hint}")
    print(f"extracting poses from {video} with mediapipe into {folder}")
    print(run_extract_pose(video, folder, style, overwrite, f"{source} needs for mediapipe; {hint}"))
    if not any((folder / POSE_MAPS).glob("*.png")):
        raise UserError(f"{video}: no frame passed the pose filter, so there is no skeleton (see {folder / REPORT})")
    return folder / POSE_MAPS


def extract_image_keypoints(image: Path, folder: Path, alternative: str) -> Path:
    """OpenPose keypoints of one image (the pose environment's mediapipe, extract-pose's failure filter), written
    to `folder` (replaced); returns the JSON file. `alternative` completes the missing-environment line."""
    image = image.resolve()
    if not image.is_file():
        raise UserError(f"{image}: no such image file")
    hint = f"a reference image needs for mediapipe; {SETUP}, or {alternative}"
    run_extract_pose(image, folder, "openpose", True, hint)
    found = folder / KEYPOINTS / f"{image.stem}.json"
    if not found.is_file():
        try:
            dropped = json.loads((folder / REPORT).read_text())["dropped_frames"][0]["detail"]
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            dropped = "no keypoints were written"
        raise UserError(f"{image}: no usable pose found in the image ({dropped})")
    return found
