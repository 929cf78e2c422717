"""`magicpose quickstart`: the CPU quickstart (toy data -> stage 1 -> stage 2 -> animate -> evaluate).

The run itself is `magicpose.toy.quickstart.run_quickstart`; this module declares the flags (the help text below
is the quickstart's documentation) and turns a failed learning check into exit code 1. `bash scripts/quickstart.sh`
sets up `.venv` and runs this command.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# The quickstart's documentation (its --help description and epilog).
EPILOG = """The CPU quickstart: toy data -> stage 1 -> stage 2 -> animate held-out dancers -> evaluate, in minutes.

    bash scripts/quickstart.sh               # full run (about 10 minutes on 2 CPU cores), learning check on
    QUICKSTART_FAST=1 bash scripts/quickstart.sh   # or --fast: the same path with few steps (CI), no check
    QUICKSTART_TEMPORAL=1 bash scripts/quickstart.sh   # or --temporal: then stage 3, the motion module (~7 min more)
    bash scripts/quickstart.sh --temporal-only     # stage 3 alone, on the finished quickstart in OUT
    bash scripts/quickstart.sh --retarget-only     # the retargeting proof, on the finished quickstart in OUT
    bash scripts/quickstart.sh --pretrained        # no training: the shipped toy model (pretrained_weights/toy)
    bash scripts/train_toy.sh                      # (re-)train the shipped toy model: --toy-model --export

Writes `OUT/` (default `outputs/quickstart/`): `animation.mp4` (the generated held-out clips side by side),
`grid.mp4` (one row per held-out video: reference | pose | generated | ground truth, 4x enlarged),
`metrics.json` (scale, timings, metric means for the generated frames and both baselines, the check), plus
`data/` (the toy dataset) and `runs/stage1`, `runs/stage2` (the training runs; `runs/stage2/pipeline` is a
MagicPosePipeline for `magicpose animate`). A re-run replaces an earlier quickstart folder (one holding
`.quickstart`); any other non-empty OUT is refused.

The learning check (`--check`, on unless `--fast` or `--no-check`) fails the run (exit code 1) unless
* pose following: the per-frame gain in figure-mask IoU of the generated frames over the copy-the-reference
  baseline is, on average, at least `--min-iou-gain` (default 0.05) and at least `--min-iou-gain-se` (default 3)
  standard errors (a clear gain, not noise), and
* appearance from the reference: mean whole-frame colour distance (per-channel Wasserstein-1,
  `magicpose.toy.metrics.colour_distance`) to the ground truth of the frames generated from the right reference
  <= `--max-colour-ratio` (default 0.8) x the same distance when the same poses are generated from another
  held-out identity's reference.

With `--temporal` (or `--temporal-only` on a finished OUT) a motion module (stage 3, zero-initialised, everything
of stage 2 frozen) trains on clips of the toy videos, and the same held-out dancers are animated again with the
same seeds and sampling settings, with one initial noise per frame (AnimateDiff's setting, the one the module is
trained for) and with one shared per video (the quickstart's, itself a flicker remedy). `OUT/temporal.mp4` shows
reference | pose | stage 2 | stage 3 | ground truth (noise per frame); metrics.json gains `temporal`: flicker error
(frame, figure, background; `magicpose.eval.temporal`), mask IoU and colour distance of both stages with paired
gains and standard errors, in both settings. Its check (noise per frame; enforced like the learning check): the
frame flicker improves by more than 3 standard errors, and mask IoU and colour distance are no worse beyond 2
standard errors.

With `--retarget-only` on a finished OUT, each evaluated held-out dancer A is animated with the next one's (B's)
motion from B's pose maps as they are and from B's keypoints retargeted onto A's first frame
(`magicpose.pose.retarget`), against the toy world's ground truth of A's body doing B's motion
(`magicpose.toy.retarget_proof`). metrics.json gains `retarget` (figure-mask IoU, input keypoint error, mask
extent error; paired gains and standard errors) and `OUT/retarget.mp4` shows reference | raw pose | generated |
retargeted pose | generated | ground truth. Its check (enforced like the learning check): the mask IoU and the
keypoint error improve by more than 3 standard errors.

With `--pretrained [DIR]` nothing trains: the shipped toy model (`pretrained_weights/toy`, trained by
`bash scripts/train_toy.sh`; its sha256 sums are checked) animates the same held-out dancers in under a minute and
OUT (default `outputs/quickstart-pretrained/`) gets `animation.mp4`, `grid.mp4` and `metrics.json` with the same
metrics, the toy model's targets (`magicpose.toy.shipped.toy_targets`: IoU gain >= 0.15, figure colour distance
right/wrong reference <= 0.5, L1 and SSIM no worse than copying the reference) and its ablations (Image-CFG 1,
appearance branch off, pose branch off). `--toy-model` trains that model's recipe (the `TOY_MODEL` scale, about
an hour on 2 CPU cores: 64 min here) instead of the quickstart's, and `--export DIR` writes a run's model as such a folder.
"""
DESCRIPTION = EPILOG.split("\n\n")[0]

OUT = Path("outputs/quickstart")
PRETRAINED_OUT = Path("outputs/quickstart-pretrained")  # never the from-scratch run's folder
# flags that override a field of the preset `Scale` (`--fast`: FAST, else FULL)
SCALE_FLAGS = (
    "stage1_steps", "stage2_steps", "batch_size", "sampler_steps", "threads", "eval_videos", "eval_frames",
    "guidance_scale", "stage3_steps", "clip_batch", "eval_every",
)  # fmt: skip


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quickstart",
        help="CPU quickstart: toy data -> train -> animate held-out dancers -> evaluate (about 10 min)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    p.add_argument("--out", type=Path, help=f"output folder (default {OUT}; with --pretrained: {PRETRAINED_OUT})")
    p.add_argument(
        "--fast",
        action="store_true",
        default=os.environ.get("QUICKSTART_FAST", "") not in ("", "0"),
        help="few steps and frames (CI smoke run, ~1-2 min); implies --no-check (env QUICKSTART_FAST=1)",
    )
    p.add_argument(
        "--check", dest="check", action="store_true", default=None, help="enforce the learning check"
    )
    p.add_argument(
        "--no-check", dest="check", action="store_false", help="report only, never fail on metrics"
    )
    p.add_argument(
        "--min-iou-gain", type=float, default=0.05, help="mean generated IoU - copy-reference IoU, at least"
    )
    p.add_argument(
        "--min-iou-gain-se",
        type=float,
        default=3.0,
        help="... and at least this many standard errors of the per-frame gain (a clear, not a lucky, gain)",
    )
    p.add_argument(
        "--max-colour-ratio",
        type=float,
        default=0.8,
        help="colour distance right reference / wrong reference, at most",
    )
    for name in SCALE_FLAGS:
        kind = float if name == "guidance_scale" else int
        p.add_argument("--" + name.replace("_", "-"), type=kind, help=f"override the preset's {name}")
    p.add_argument(
        "--seed", type=int, default=0, help="toy-world seed (training seeds come from the configs)"
    )
    p.add_argument(
        "--temporal",
        action="store_true",
        default=os.environ.get("QUICKSTART_TEMPORAL", "") not in ("", "0"),
        help="also train the motion module (stage 3) and compare it with stage 2 (env QUICKSTART_TEMPORAL=1)",
    )
    p.add_argument(
        "--temporal-only",
        action="store_true",
        help="only stage 3 and the comparison, on the finished quickstart in --out (its data and stage-2 run)",
    )
    p.add_argument(
        "--retarget-only",
        action="store_true",
        help="only the retargeting proof (A animated with B's motion, raw vs retargeted), on the finished "
        "quickstart in --out",
    )
    p.add_argument(
        "--pretrained",
        nargs="?",
        type=Path,
        const=Path("pretrained_weights/toy"),
        help="no training: animate and evaluate with the shipped toy model (DIR, default pretrained_weights/toy)",
    )
    p.add_argument(
        "--toy-model",
        action="store_true",
        help="train the shipped toy model's recipe (TOY_MODEL scale, ~1 h on 2 cores) instead of the quickstart's",
    )
    p.add_argument("--export", type=Path, help="after training: write the run's model as a shipped toy-model "
                   "folder here (what bash scripts/train_toy.sh does with pretrained_weights/toy)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from magicpose.errors import UserError
    from magicpose.toy.quickstart import (
        FAST,
        FULL,
        TOY_MODEL,
        QuickstartOptions,
        check_passed,
        run_quickstart,
    )

    if args.pretrained is not None:
        from magicpose.toy.shipped import run_pretrained

        run_pretrained(args.out or PRETRAINED_OUT, args.pretrained, threads=args.threads or FULL.threads)
        return 0
    if args.export is not None and (args.temporal_only or args.retarget_only):
        raise UserError("--export: only with a training run (not with --temporal-only or --retarget-only)")
    check = not args.fast if args.check is None else args.check
    overrides = {name: getattr(args, name) for name in SCALE_FLAGS if getattr(args, name) is not None}
    options = QuickstartOptions(
        out=args.out or OUT,
        scale=replace(FAST if args.fast else TOY_MODEL if args.toy_model else FULL, **overrides),
        fast=args.fast,
        check=check,
        min_iou_gain=args.min_iou_gain,
        min_iou_gain_se=args.min_iou_gain_se,
        max_colour_ratio=args.max_colour_ratio,
        seed=args.seed,
        temporal=args.temporal,
        temporal_only=args.temporal_only,
        retarget_only=args.retarget_only,
    )
    record = run_quickstart(options)
    if args.export is not None:
        from magicpose.toy.shipped import ablation_table, export_toy_model, targets_text

        shipped = export_toy_model(Path(options.out).resolve(), args.export, record)
        print(f"\nexported to {args.export} (fp16; re-evaluated from the exported files):")
        print(targets_text(shipped["targets"]) + "\n\n" + ablation_table(shipped["ablations"]))
    failed = [] if not check else [
        *(["learning check"] if not (args.temporal_only or args.retarget_only) and not check_passed(record["check"])
          else []),
        *(["retargeting check"] if args.retarget_only and not record["retarget"]["check"]["passed"] else []),
        *(["temporal check"] if "temporal" in record and not record["temporal"]["check"]["passed"] else []),
    ]
    if failed:
        print(f"[quickstart] {' and '.join(failed)} FAILED (see the thresholds above; --no-check reports only)",
              file=sys.stderr)
        return 1
    return 0
