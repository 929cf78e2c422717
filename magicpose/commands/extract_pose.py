"""`magicpose extract-pose`: OpenPose keypoints + pose maps for a video or a folder of frames
(see `magicpose.pose.extract`). Torch-free: it runs in `.venv-pose`."""

from __future__ import annotations

import argparse
from pathlib import Path

from magicpose.pose.extract import STYLES, PoseFilter

EXTRACT_EPILOG = """outputs in --out: keypoints/<frame>.json (OpenPose JSON: COCO-18 body, 21-point hands, 70-point
face), pose_maps/<frame>.png (the pose maps, in --style), report.json (every dropped frame and why). Frames are
named after the input images, or 0001, 0002, ... for a video.

styles (the same keypoints, drawn for one system or the other):
  openpose   ControlNet v1.1 OpenPose maps, body + hands + face: for MagicPose (its pose ControlNet).
  mmpose     mmpose/HRNet COCO-17 limbs on black (orange head and torso, green left, blue right limbs):
             for Follow-Your-Pose (its released pose adapter); fyp-sample --video makes these itself.

backends:
  mediapipe  MediaPipe Holistic, models shipped in the mediapipe 0.10.21 wheel (one person per frame).
             Needs the pose environment: bash scripts/setup_pose.sh, then .venv-pose/bin/magicpose ...
  dwpose     DWPose ONNX (YOLOX-L + dw-ll_ucoco_384) on onnxruntime, several people per frame.
             --weights DIR must hold yolox_l.onnx and dw-ll_ucoco_384.onnx (https://huggingface.co/yzd-v/DWPose).

examples:
  .venv-pose/bin/magicpose extract-pose --input dance.mp4 --out poses/dance
  .venv-pose/bin/magicpose extract-pose --input dance.mp4 --out poses/dance_fyp --style mmpose"""


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """--backend, --weights and the failure-filter flags (shared with prepare-video)."""
    from magicpose.pose.backends import BACKEND_NAMES

    parser.add_argument("--backend", choices=BACKEND_NAMES, default="mediapipe",
                        help="pose estimator (default: mediapipe)")
    parser.add_argument("--weights", type=Path, metavar="PATH",
                        help="model folder for the ONNX backends (dwpose: yolox_l.onnx + dw-ll_ucoco_384.onnx)")
    rule = parser.add_argument_group("failure filter (the original's; a frame failing it is dropped and reported)")
    rule.add_argument("--max-people", type=int, default=PoseFilter.max_people, metavar="N",
                      help="drop frames with more than N people (default: %(default)s)")
    rule.add_argument("--min-body-keypoints", type=int, default=PoseFilter.min_body_keypoints, metavar="N",
                      help="drop frames with N or fewer of the 18 body keypoints (default: %(default)s)")
    rule.add_argument("--min-bbox", type=float, default=PoseFilter.min_bbox_fraction, metavar="FRACTION",
                      help="drop frames whose skeleton box covers at most this fraction of the frame "
                           "(default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run")


def filter_from_args(args: argparse.Namespace) -> PoseFilter:
    return PoseFilter(args.max_people, args.min_body_keypoints, args.min_bbox)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "extract-pose",
        help="OpenPose keypoints and pose maps for a video or a folder of frames",
        description="Detect the pose in every frame, drop frames failing the original's filter (reported), "
                    "and write OpenPose keypoints JSON and pose maps for the rest.",
        epilog=EXTRACT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--input", required=True, type=Path, metavar="VIDEO_OR_FRAME_DIR",
                        help="a video file, a folder of frames (sorted naturally), or one image")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    parser.add_argument("--style", choices=STYLES, default="openpose",
                        help="pose-map style: openpose for MagicPose's ControlNet (default), mmpose for "
                             "Follow-Your-Pose's pose adapter")
    add_filter_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from magicpose.pose.extract import REPORT_FILE, extract_pose

    report = extract_pose(args.input, args.out, args.backend, args.weights, filter_from_args(args),
                          args.overwrite, args.style)
    print(report.summary(args.out / REPORT_FILE))
    return 0

