"""`magicpose prepare-video`: a TikTok-layout dataset folder (frames, pose maps, keypoints) from a video
(see `magicpose.pose.prepare`). Torch-free: it runs in `.venv-pose`."""

from __future__ import annotations

import argparse
from pathlib import Path

from magicpose.commands.extract_pose import add_filter_arguments, filter_from_args

PREPARE_EPILOG = """writes, for --split train_set and a video dance.mp4:
  ROOT/train_set/dance/0001.png            frames (resampled to --fps if given)
  ROOT/pose_map_train_set/dance/0001.png   pose maps (body + hands + face)
  ROOT/keypoints_train_set/dance/0001.json OpenPose keypoints
  ROOT/reports/train_set/dance.json        dropped frames and why
Frames failing the pose filter are dropped from all three trees (numbering keeps the gap).

example:
  .venv-pose/bin/magicpose prepare-video --input dance.mp4 --out dataset/mine --split train_set --fps 15"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "prepare-video",
        help="make a TikTok-layout dataset folder (frames, pose maps, keypoints) from a video",
        description="Decode a video, detect poses, drop frames failing the original's filter from every "
                    "tree (reported), and write frames, pose maps and keypoints in the TikTok layout.",
        epilog=PREPARE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--input", required=True, type=Path, metavar="VIDEO",
                        help="video file (a folder of frames also works, without --fps)")
    parser.add_argument("--out", required=True, type=Path, metavar="ROOT", help="dataset root")
    parser.add_argument("--split", default="train_set", help="split folder name (default: %(default)s)")
    parser.add_argument("--name", help="video folder name (default: the input's file name without extension)")
    parser.add_argument("--fps", type=float, metavar="N",
                        help="keep N frames per second (default: every frame; never duplicates frames)")
    add_filter_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from magicpose.pose.prepare import prepare_video

    report, report_path = prepare_video(
        args.input, args.out, args.split, args.name, args.fps, args.backend, args.weights,
        filter_from_args(args), args.overwrite,
    )
    print(report.summary(report_path))
    return 0
