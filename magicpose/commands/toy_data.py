"""`magicpose toy-data`: write the procedural toy dance dataset (see `magicpose.toy`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from magicpose.toy import MAX_SIZE, MIN_SIZE

TOY_DESCRIPTION = """Write a procedural toy dance dataset in the TikTok layout: cartoon dancers (random
skin, hair, clothes and background per video) performing smooth random dances, with OpenPose pose maps
(body, hands, face), keypoint JSON and exact person masks. Small enough to train a tiny MagicPose model on
a CPU; the same arguments always give byte-identical files."""

TOY_EPILOG = """examples:
  magicpose toy-data --out dataset/toy                 # 40 + 8 videos x 48 frames, 128 px
  magicpose toy-data --out dataset/toy64 --size 64 --videos 200 --test-videos 20 --frames 32 --seed 1

written in --out (frames, pose maps, keypoints and masks paired by file name):
  train_set/video_NNNN/NNNN.png   pose_map_train_set/...   keypoints_train_set/...json   mask_train_set/...
  test_set/...   the same four trees, other dancers and dances (video numbers continue after train's)
  toy_world.json   generator version, seed, arguments, every video's identity (body proportions included)
                   and seeds"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "toy-data",
        help="write a procedural toy dance dataset (TikTok layout) for CPU experiments",
        description=TOY_DESCRIPTION,
        epilog=TOY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="ROOT",
        help="dataset folder; must be empty or absent (see --overwrite)",
    )
    p.add_argument(
        "--videos", type=int, default=40, metavar="N", help="train videos, one dancer each (default 40)"
    )
    p.add_argument(
        "--test-videos",
        type=int,
        default=8,
        metavar="T",
        help="test videos, dancers and dances not in the train set (default 8)",
    )
    p.add_argument("--frames", type=int, default=48, metavar="M", help="frames per video (default 48)")
    p.add_argument(
        "--size",
        type=int,
        default=128,
        metavar="S",
        help=f"frame side in pixels, {MIN_SIZE}-{MAX_SIZE}; faces show from 128 (default 128)",
    )
    p.add_argument("--seed", type=int, default=0, metavar="K", help="random seed (default 0)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier toy dataset in ROOT (only folders that have a toy_world.json)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate, generate with a progress bar, print a one-line summary."""
    from tqdm import tqdm

    from magicpose.toy import check_request, check_root, generate_toy_dataset

    check_request(args.out, args.videos, args.test_videos, args.frames, args.size, args.seed)
    check_root(args.out, args.overwrite)  # refuse before the progress bar appears
    total = (args.videos + args.test_videos) * args.frames
    with tqdm(total=total, unit="frame", desc="toy-data", dynamic_ncols=True) as bar:
        summary = generate_toy_dataset(
            args.out, args.videos, args.test_videos, args.frames, args.size, args.seed,
            overwrite=args.overwrite, progress=bar.update,
        )  # fmt: skip
    print(
        f"wrote {summary['frames_written']} frames ({args.videos} train + {args.test_videos} test videos x "
        f"{args.frames} frames, {args.size} px) to {args.out} in {summary['seconds']:.1f} s "
        f"({summary['frames_per_second']:.0f} frames/s)"
    )
    return 0
