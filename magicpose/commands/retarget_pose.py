"""`magicpose retarget-pose`: a driving pose sequence moved onto the reference person's body proportions
(`magicpose.pose.retarget`), written as keypoints JSON + pose maps. Also what `animate --retarget` runs inline.

Torch-free, so it also runs in `.venv-pose`. A reference IMAGE is posed through the pose environment
(`magicpose.commands.pose_env`); a reference keypoints JSON needs nothing else.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicpose.commands.outputs import check_output_folder, publish
from magicpose.errors import UserError
from magicpose.pose.extract import STYLES

if TYPE_CHECKING:
    from PIL import Image

    from magicpose.pose.openpose import PoseFrame

OUTPUT_NAMES = ("keypoints", "pose_maps", "reference.json", "retarget.json")
RECORD = "retarget.json"

EPILOG = """what it does: every bone of the driving dancer (OpenPose's tree, from the neck outwards) gets the
reference's length, with one ratio per bone for the whole sequence (reference length / the 90th percentile of
the driving lengths, which foreshortening only ever shortens), so nothing jitters; face and hands scale with
the head and forearms; the dancer's root motion, scaled by the ratio of body heights, starts from where the
reference stands. Missing keypoints stay missing; a point whose parent is missing hangs from its nearest
present ancestor. The output is in the reference's pixels, so its maps line up with the reference image.

outputs in --out: keypoints/<frame>.json (OpenPose JSON), pose_maps/<frame>.png (in --style), reference.json
(the reference's keypoints used), retarget.json (every ratio, the placement, the inputs).

examples:
  magicpose retarget-pose --reference me.json --poses poses/dance --out poses/dance_on_me
  magicpose retarget-pose --reference me.png --poses poses/dance/keypoints --out poses/fyp --style mmpose
  magicpose animate -c configs/magicpose/inference.yaml --reference me.png --poses poses/dance_on_me/pose_maps \\
      --out out/
A reference image is posed with mediapipe in the pose environment (bash scripts/setup_pose.sh); a reference
keypoints JSON (extract-pose writes one per image) works without it."""

REFERENCE_HINT = "pass the reference's keypoints JSON instead (extract-pose writes one per image)"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "retarget-pose",
        help="move a driving pose sequence onto the reference person's body proportions",
        description="Retarget OpenPose keypoints of a driving dancer to the reference person's bone lengths, "
                    "head and hand sizes and position, and draw the pose maps.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--reference", required=True, type=Path, metavar="IMAGE_OR_JSON",
                   help="the person to animate: an image (posed in the pose environment) or its keypoints JSON")
    p.add_argument("--poses", required=True, type=Path, nargs="+", metavar="KEYPOINTS",
                   help="the driving sequence: a folder of keypoints JSON (or extract-pose's output folder, or "
                        "pose maps with their keypoints), or keypoints .json files in frame order")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    p.add_argument("--style", choices=STYLES, default="openpose",
                   help="pose-map style: openpose for MagicPose (default), mmpose for Follow-Your-Pose")
    p.add_argument("--size", type=int, metavar="PIXELS",
                   help="shorter side of the written canvas (keypoints and maps; default: the reference's size)")
    p.add_argument("--percentile", type=float, default=90.0, metavar="P",
                   help="driving bone length = this percentile of its per-frame lengths (default: %(default)s)")
    p.add_argument("--threshold", type=float, default=0.0,
                   help="keypoints with confidence at or below this are missing (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --out")
    p.set_defaults(func=run)


# ----------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------


def driving_files(poses: Sequence[Path]) -> list[Path]:
    """One folder (see `find_keypoints`) or keypoints .json files; frame names must be unique."""
    from magicpose.pose.retarget import find_keypoints

    if len(poses) == 1:
        files = find_keypoints(poses[0])
    else:
        others = [p for p in poses if p.suffix.lower() != ".json"]
        if others:
            raise UserError(f"{others[0]}: with several --poses, give keypoints .json files (or give one folder "
                            "or keypoints .json files, not several folders)")
        files = list(poses)
    stems = [f.stem for f in files]
    twice = next((s for s in stems if stems.count(s) > 1), None)
    if twice is not None:
        raise UserError(f"{twice}.json: two driving frames share this name; the outputs are named after them")
    return files


def load_reference(path: Path, alternative: str = REFERENCE_HINT) -> PoseFrame:
    """The reference's keypoints: read from a JSON, or extracted from an image through the pose environment."""
    from magicpose.media import IMAGE_EXTENSIONS
    from magicpose.pose.openpose import read_keypoints_json

    if not path.is_file():
        raise UserError(f"{path}: no such file (the reference: an image or its keypoints JSON)")
    if path.suffix.lower() == ".json":
        return read_keypoints_json(path)
    if path.suffix.lower().lstrip(".") not in IMAGE_EXTENSIONS:
        raise UserError(f"{path}: not an image or a keypoints .json file")
    from magicpose.commands.pose_env import extract_image_keypoints

    with tempfile.TemporaryDirectory(prefix="magicpose-reference-") as work:
        print(f"posing the reference {path} with mediapipe in the pose environment")
        return read_keypoints_json(extract_image_keypoints(path, Path(work) / "pose", alternative))


def scaled_size(width: int, height: int, side: int, longer: bool = False) -> tuple[int, int]:
    """`width` x `height` scaled so its shorter (or longer) side is `side` pixels."""
    scale = side / (max(width, height) if longer else min(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


# ----------------------------------------------------------------------------------------------------------
# retarget-pose
# ----------------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from magicpose.pose.retarget import read_sequence, retarget_frames

    check_output_folder(args.out, OUTPUT_NAMES, args.overwrite)
    if args.size is not None and args.size < 1:
        raise UserError(f"--size must be at least 1 pixel, got {args.size}")
    files = driving_files(args.poses)
    driving = read_sequence(files)
    reference = load_reference(args.reference)
    result = retarget_frames(reference, driving, percentile=args.percentile, threshold=args.threshold)
    frames = result.frames
    if args.size is not None:
        size = scaled_size(reference.width, reference.height, args.size)
        frames = [frame.resized(*size) for frame in frames]
        reference = reference.resized(*size)
    record = {
        "command": "retarget-pose",
        "reference": str(args.reference),
        "poses": [str(p) for p in args.poses],
        "pose_files": [f.name for f in files],
        "style": args.style,
        "size": [reference.width, reference.height],
        **result.record(),
    }
    names = [f.stem for f in files]
    publish(args.out, OUTPUT_NAMES, lambda staging: _write(staging, names, frames, reference, args.style, record))
    print(f"retargeted {len(frames)} frames onto the reference's body (height ratio {result.plan.height_ratio:.3f})"
          f" in {args.out}: pose_maps/, keypoints/, {RECORD}")
    return 0


def _write(folder: Path, names: list[str], frames: list[PoseFrame], reference: PoseFrame, style: str,
           record: dict[str, Any]) -> None:
    from magicpose.pose.extract import write_pose
    from magicpose.pose.openpose import write_keypoints_json

    (folder / "keypoints").mkdir()
    (folder / "pose_maps").mkdir()
    for name, frame in zip(names, frames):
        write_pose(name, frame, folder / "keypoints", folder / "pose_maps", style)
    write_keypoints_json(folder / "reference.json", reference)
    (folder / RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------------------------------------
# animate --retarget
# ----------------------------------------------------------------------------------------------------------


def retargeted_maps(
    reference_image: Path,
    image_size: tuple[int, int],
    poses: Path,
    reference_keypoints: Path | None,
    side: int,
    resize_mode: str = "crop",
) -> tuple[list[Image.Image], list[Path], dict[str, Any]]:
    """OpenPose maps of `poses`' keypoints retargeted to the reference, drawn on the reference image's canvas
    scaled so that `to_square(map, side, resize_mode)` only crops or pads; the keypoints files; the record.

    The reference's keypoints come from `reference_keypoints`, else from posing `reference_image`.
    """
    from PIL import Image

    from magicpose.pose.openpose import read_keypoints_json, render_pose
    from magicpose.pose.retarget import check_canvas, read_sequence, retarget_frames

    try:
        files = driving_files([poses])
    except UserError as err:
        raise UserError(f"--retarget needs the poses' OpenPose keypoints: {err}") from err
    driving = read_sequence(files)
    if reference_keypoints is not None:
        reference = read_keypoints_json(reference_keypoints)
    else:
        reference = load_reference(reference_image, "pass the reference's keypoints with --reference-keypoints JSON")
    reference = check_canvas(reference, *image_size, str(reference_keypoints or reference_image))
    result = retarget_frames(reference, driving)
    size = scaled_size(*image_size, side, longer=resize_mode == "pad")
    maps = [Image.fromarray(render_pose(frame, size=size)) for frame in result.frames]
    record = {"reference_keypoints": str(reference_keypoints) if reference_keypoints else "extracted",
              **result.record()}
    return maps, files, record
