"""`magicpose benchmark`: FLOPs and wall clock of the sampling loop, the training step, the data loader
(`magicpose.bench`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from magicpose.errors import UserError

# what each benchmark measures by default: component configs, frame side
DEFAULTS = {"flops": ("configs/models/sd15", 512), "data": (None, 512), "train": ("configs/models/mid", 256)}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("benchmark", help="count FLOPs / time the sampling loop (see README)")
    p.add_argument("what", choices=["flops", "data", "train"],
                   help="flops: FLOPs per generated frame, original loop vs ours, and the motion module's cost "
                        "(main UNet on --context-length frames, with vs without; the window scheduler's overhead); "
                        "data: training data-loader samples/s (needs --root); "
                        "train: stage-2 step vs a plain ControlNet training step (--components, --size)")
    p.add_argument("--root", type=Path, help="data: a TikTok-format dataset (e.g. from `magicpose toy-data`)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4], help="data: DataLoader worker counts")
    p.add_argument("--frames", type=int, nargs="+", default=[1, 8, 16], help="frame batch sizes F to measure")
    p.add_argument("--steps", type=int, default=50, help="denoising steps")
    p.add_argument("--size", type=int, help="frame side in pixels (flops, data: 512; train: 256)")
    p.add_argument("--components",
                   help="component configs (flops: configs/models/sd15 on the meta device; train: configs/models/mid)")
    p.add_argument("--wallclock-components", default="configs/models/tiny",
                   help="component configs for the CPU wall-clock comparison")
    p.add_argument("--wallclock-frames", type=int, default=8, help="frames for the wall-clock comparison")
    p.add_argument("--context-length", type=int, default=16,
                   help="flops: frames the motion module attends across, i.e. one window: the main UNet is counted on "
                        "this many frames with and without <components>/motion_adapter (0: skip the motion module)")
    p.add_argument("--context-overlap", type=int, default=4,
                   help="flops: frames shared by neighbouring windows, for the window scheduler's overhead")
    p.add_argument("--video-frames", type=int, nargs="+", default=[16, 64, 256],
                   help="flops: video lengths for the window overhead (frames computed per output frame)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    components, size = DEFAULTS[args.what]
    components, size = args.components or components, args.size or size
    if args.what == "data":
        from magicpose.bench.data import benchmark_loader

        if args.root is None:
            raise UserError("benchmark data needs --root DATASET (make one with `magicpose toy-data`)")
        benchmark_loader(args.root, size=size, workers=tuple(args.workers))
        return 0
    if args.what == "train":
        from magicpose.bench.training import format_results, training_step_benchmark

        results = training_step_benchmark(components, size)
        print(format_results(results, components, size, 2))
        return 0
    from magicpose.bench.sampling import run_flops

    run_flops(components, list(args.frames), args.steps, size, args.wallclock_components, args.wallclock_frames,
              args.json, args.context_length, args.context_overlap, list(args.video_frames))
    return 0
