"""`magicpose check-data`: list every problem of a TikTok-format dataset (see `magicpose.data.check`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = """Walk a TikTok-format dataset, decode every frame and pose map, and list each problem
with its path: missing or orphan pose maps, unreadable images, size mismatches, empty video folders,
stray files, videos too short to train on, keypoints JSON that does not parse."""

EPILOG = """layout checked (pairs match by file-name stem):
  ROOT/<split>/<video>/<frame>.{png,jpg}         ROOT/pose_map_<split>/<video>/<frame>.png
  ROOT/keypoints_<split>/<video>/<frame>.json    ROOT/mask_<split>/<video>/<frame>.png   (optional)

examples:
  magicpose check-data data/TikTok
  magicpose check-data data/TikTok --split train_set --quarantine data/TikTok-quarantine

exit status: 1 when a problem blocks training (unreadable image, size mismatch, bad keypoints JSON,
missing split or pose-map folder, no usable video), else 0. With --quarantine, moved files no longer
count; run the check again to see the dataset as it is now."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "check-data",
        help="list every problem of a TikTok-format dataset (decodes every image)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("root", type=Path, metavar="ROOT",
                        help="dataset root (holds <split> and pose_map_<split>)")
    parser.add_argument("--split", dest="splits", action="extend", nargs="+", metavar="S",
                        help="split(s) to check (default: every folder with a pose_map_ twin)")
    parser.add_argument("--quarantine", type=Path, metavar="DIR",
                        help="move offending frames with their pose maps (and stray files) to DIR, "
                             "keeping the layout; nothing is deleted")
    parser.add_argument("--min-frames", type=int, default=2, metavar="N",
                        help="usable frames a video needs for training (default: 2)")
    parser.add_argument("--show", type=int, default=10, metavar="N",
                        help="problems listed per kind (default: 10)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="decoding threads (default: min(8, CPU count))")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the report; 1 when something blocks training."""
    from magicpose.data.check import check_dataset

    report = check_dataset(
        args.root, args.splits, args.quarantine, args.min_frames, args.workers, verbose=True
    )
    print(report.format(limit=args.show))
    sys.stdout.flush()
    return 1 if report.blocks_training else 0
