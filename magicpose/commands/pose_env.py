"""Running `magicpose extract-pose` in the pose environment from a command of the main one.

mediapipe needs numpy<2 and lives only in `.venv-pose` (`bash scripts/setup_pose.sh`), so a command in `.venv`
(torch) that needs poses, `fyp-sample --video`, runs extraction there as a subprocess, with this checkout's
package first on its path (an editable install in `.venv-pose` may point at another checkout).
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
POSE_MAPS, REPORT = "pose_maps", "report.json"  # extract-pose's layout (magicpose.pose.extract)
SETUP_HINT = "run `bash scripts/setup_pose.sh` to create it, or pass ready-made skeleton maps with --skeleton"


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


def _failure(video: Path, done: subprocess.CompletedProcess) -> UserError:
    """extract-pose's own one-line error when it gave one, else its last line and exit code."""
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    said = [line for line in lines if line.startswith("magicpose extract-pose: error:")]
    if said:
        return UserError(said[-1].removeprefix("magicpose "))
    last = lines[-1] if lines else "no message"
    return UserError(f"{video}: pose extraction in the pose environment failed (exit {done.returncode}): {last}")


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
    python = pose_python()
    if not python.exists():
        raise UserError(f"{python}: no pose environment, which {source} needs for mediapipe; {hint}")
    command = [str(python), "-m", "magicpose", "extract-pose", "--input", str(video), "--out", str(folder),
               "--style", style, *(["--overwrite"] if overwrite else [])]
    package_root = str(Path(magicpose.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
           "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}  # mediapipe's log noise
    print(f"extracting poses from {video} with mediapipe into {folder}")
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise _failure(video, done)
    print(done.stdout.strip())
    if not any((folder / POSE_MAPS).glob("*.png")):
        raise UserError(f"{video}: no frame passed the pose filter, so there is no skeleton (see {folder / REPORT})")
    return folder / POSE_MAPS
