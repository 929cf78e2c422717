"""The `magicpose` command (also `python -m magicpose`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from magicpose.errors import UserError

DESCRIPTION = """MagicPose: animate a reference image of a person with a pose sequence (and train, convert,
evaluate). Every command reads OmegaConf YAML configs; `key=value` arguments override any config key."""

ANIMATE_EPILOG = """examples:
  magicpose animate --config configs/magicpose/tiny.yaml --reference me.png --poses poses/ --out out/
  magicpose animate --config configs/magicpose/inference.yaml --reference me.png --poses dance.mp4 \\
      --out out/ --steps 30 inference.prompt="a person dancing"

outputs in --out: frames/NNNN.png, animation.mp4, animation.gif, grid.mp4 (reference | pose | result),
run.json (resolved config, seed, versions). An existing result is never replaced without --overwrite."""


def _add_animate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "animate",
        help="generate frames of a reference image following a pose sequence",
        description="Generate one frame per pose map, in the appearance of the reference image.",
        epilog=ANIMATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", "-c", action="append", required=True, metavar="YAML",
                   help="config file (repeat to merge several, later ones win)")
    p.add_argument("--reference", required=True, type=Path, help="image of the person to animate")
    p.add_argument("--poses", required=True, type=Path,
                   help="folder of pose maps (sorted naturally: 2.png before 10.png) or a video of them")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--steps", type=int, help="denoising steps (inference.steps)")
    p.add_argument("--guidance-scale", type=float, help="Image-CFG scale (inference.guidance_scale)")
    p.add_argument("--guidance-mode", choices=["controlnet_important", "balance"],
                   help="controlnet_important: guide on reference+pose vs the plain UNet (the paper's Image-CFG); "
                        "balance: text CFG with reference and pose in both halves")
    p.add_argument("--seed", type=int, help="random seed (inference.seed)")
    p.add_argument("--fps", type=float, help="frame rate of the written videos (inference.fps)")
    p.add_argument("--size", type=int, help="output side in pixels; frames are square (inference.size)")
    p.add_argument("--pad", action="store_true",
                   help="pad inputs to a square instead of centre-cropping them (inference.resize_mode=pad)")
    p.add_argument("--frames-per-batch", type=int, help="frames denoised together (inference.frames_per_batch)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1, ... (device)")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --out")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="any config key, e.g. inference.prompt=...")
    p.set_defaults(func=_cmd_animate)


def _flag_overrides(args: argparse.Namespace, mapping: dict[str, str]) -> list[str]:
    out = [f"{key}={getattr(args, attr)}" for attr, key in mapping.items() if getattr(args, attr) is not None]
    return out


def _cmd_animate(args: argparse.Namespace) -> int:
    from magicpose.animate import AnimateRequest, check_output_folder, run_animate
    from magicpose.config import load_config

    check_output_folder(args.out, args.overwrite)
    overrides = _flag_overrides(args, {
        "steps": "inference.steps", "guidance_scale": "inference.guidance_scale",
        "guidance_mode": "inference.guidance_mode", "seed": "inference.seed", "fps": "inference.fps",
        "size": "inference.size", "frames_per_batch": "inference.frames_per_batch", "device": "device",
    })
    if args.pad:
        overrides.append("inference.resize_mode=pad")
    config = load_config(args.config, overrides + list(args.overrides))
    record = run_animate(config, AnimateRequest(args.reference, args.poses, args.out, args.overwrite))
    print(f"wrote {record['num_frames']} frames to {args.out} in {record['seconds']:.1f} s")
    return 0


FIT_EPILOG = """examples:
  magicpose fit -c configs/magicpose/stage1_appearance.yaml                 # stage 1 (appearance control)
  magicpose fit -c configs/magicpose/stage2_pose.yaml data.batch_size=4     # stage 2 (+ pose ControlNet)
  magicpose fit -c configs/magicpose/stage2_pose.yaml --resume              # continue a killed run
multi-GPU / multi-node: the same command under torchrun or srun (see scripts/ and scripts/slurm/)."""


def _add_fit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit", help="train MagicPose (stage 1 or 2) from YAML configs",
                       description="Train MagicPose with Lightning. The run folder (run_dir) gets the resolved "
                                   "config, resume checkpoints, safetensors of the trained modules, TensorBoard "
                                   "logs, sample clips and, at the end, a pipeline folder for `magicpose animate`.",
                       epilog=FIT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "-c", action="append", required=True, metavar="YAML",
                   help="config file (repeat to merge several, later ones win)")
    p.add_argument("--resume", action="store_true", help="continue the run in run_dir from its last checkpoint")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="any config key, e.g. train.max_steps=1000")
    p.set_defaults(func=_cmd_fit)


def _cmd_fit(args: argparse.Namespace) -> int:
    from magicpose.config_fyp import SYSTEM, config_system

    if config_system(args.config) == SYSTEM:  # Follow-Your-Pose configs say `system: followyourpose`
        from magicpose.training.followyourpose import cli_fit

        return cli_fit(args)
    from magicpose.config import FitConfig, load_config
    from magicpose.training.fit import run_fit

    config = load_config(args.config, list(args.overrides), schema=FitConfig)
    run_dir = run_fit(config, resume=args.resume)
    print(f"trained; run folder {run_dir} (pipeline for `magicpose animate`: {run_dir / 'pipeline'})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="magicpose", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_animate(sub)
    _add_fit(sub)
    for add_parser in _command_registrars():
        add_parser(sub)
    _add_benchmark(sub)
    return parser


def _command_registrars():
    """Commands defined next to their code; each module keeps heavy imports inside its handler."""
    from magicpose.convert.cli import add_parser as convert
    from magicpose.data.check import add_parser as check_data
    from magicpose.data.toy import add_parser as toy_data
    from magicpose.eval.cli import add_parser as evaluate
    from magicpose.fyp_sample import add_parser as fyp_sample
    from magicpose.infer_tiktok import add_parser as infer_tiktok
    from magicpose.pose.extract import add_parser as extract_pose
    from magicpose.pose.prepare import add_parser as prepare_video

    return [toy_data, check_data, extract_pose, prepare_video, convert, fyp_sample, infer_tiktok, evaluate]


def _add_benchmark(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("benchmark", help="count FLOPs / time the sampling loop (see README)")
    p.add_argument("what", choices=["flops", "data", "train"],
                   help="flops: FLOPs per generated frame, original loop vs ours; "
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
    p.add_argument("--json", type=Path, help="also write the results here")
    p.set_defaults(func=_cmd_benchmark)


def _cmd_benchmark(args: argparse.Namespace) -> int:
    defaults = {"flops": ("configs/models/sd15", 512), "data": (None, 512), "train": ("configs/models/mid", 256)}
    components, size = defaults[args.what]
    args.components, args.size = args.components or components, args.size or size
    if args.what == "data":
        from magicpose.data.tiktok import benchmark_loader

        if args.root is None:
            raise UserError("benchmark data needs --root DATASET (make one with `magicpose toy-data`)")
        benchmark_loader(args.root, size=args.size, workers=tuple(args.workers))
        return 0
    if args.what == "train":
        from magicpose.training.benchmark import format_results, training_step_benchmark

        results = training_step_benchmark(args.components, args.size)
        print(format_results(results, args.components, args.size, 2))
        return 0
    from magicpose.benchmark import run_benchmark

    run_benchmark(args)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as err:
        print(f"magicpose {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
