"""`magicpose evaluate`: the TikTok protocol (DisCo's, quirks and all, and a fixed version) on two frame folders."""

from __future__ import annotations

import argparse
from pathlib import Path

EVALUATE_EPILOG = """examples:
  magicpose evaluate --pred out/tiktok/pred --gt out/tiktok/gt --out out/tiktok/metrics.json
  magicpose evaluate --pred out/pred --gt out/gt --out m.json --protocol disco --frechet fast

--protocol disco reproduces the published numbers (PSNR with DisCo's uint8 overflow, LPIPS fed [0, 1],
L1 divided by H*W); fixed corrects them; both (default) reports the two side by side. FID, FID-VID and
FVD need weight files in --weights-dir (names and sources: docs/evaluation.md); a missing one skips only
the metrics that need it. --frechet fast gives the same Frechet distances (to ~1e-6) in seconds instead of
about a minute each on a CPU.

Face-Cos (ArcFace cosine of the generated vs the real face) runs when a face model is given (--face-model)
or found as --weights-dir/arcface_r100.pth; faces are aligned with the ground truth's OpenPose keypoints,
read from --keypoints DIR or from the dataset named in the infer.json beside --pred.

flicker (ours; no weights; on by default): mean |(pred_t - pred_t-1) - (gt_t - gt_t-1)| of consecutive
frames on [0, 1], mean over each video's pairs then over videos, with the temporal energies mean |pred_t -
pred_t-1| and |gt_t - gt_t-1| and their ratio (> 1: the prediction flickers; < 1: it is static or blurry)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from magicpose.eval.frechet import FRECHET_METHODS
    from magicpose.eval.metrics import ALL_METRICS, CLIP_LENGTH, DEFAULT_SIZE

    metric_names = (*ALL_METRICS, "face_cos", "flicker")  # = protocol.EVAL_METRICS, without importing torch for --help

    p = sub.add_parser(
        "evaluate",
        help="TikTok metrics of predicted vs ground-truth frames (L1, SSIM, PSNR, LPIPS, FID, FID-VID, FVD, Face-Cos, "
             "flicker)",
        description="Score predicted frames against ground truth with the DisCo/MagicPose protocol "
                    "and/or its corrected form; writes one JSON with every switch, counts and weight hashes.",
        epilog=EVALUATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--pred", required=True, type=Path, help="predicted frames: DIR/<video>/<frame>.png (or flat)")
    p.add_argument("--gt", required=True, type=Path, help="ground-truth frames, same names as --pred")
    p.add_argument("--out", required=True, type=Path, help="metrics JSON to write")
    p.add_argument("--protocol", choices=["disco", "fixed", "both"], default="both",
                   help="disco: the published code's numbers; fixed: corrected; both (default)")
    p.add_argument("--weights-dir", type=Path, default=Path("pretrained_weights/eval"),
                   help="folder of the feature-network files (default pretrained_weights/eval)")
    p.add_argument("--metrics", nargs="+", metavar="NAME",
                   help=f"subset of {' '.join(metric_names)} (fid-vid, face-cos also accepted; default: all but "
                        "face_cos, which is added when a face model is given or found)")
    p.add_argument("--face-model", type=Path,
                   help="ArcFace iResNet backbone.pth for Face-Cos (default: --weights-dir/arcface_r100.pth if present)")
    p.add_argument("--keypoints", type=Path,
                   help="ground-truth OpenPose JSON, DIR/<video>/<frame>.json, for Face-Cos "
                        "(default: DATA/keypoints_<split> of the infer.json beside --pred)")
    p.add_argument("--keypoints-resize", choices=["crop", "pad"],
                   help="how the keypoints' frames were made square (default: infer.json's, else crop)")
    p.add_argument("--size", type=int, default=DEFAULT_SIZE,
                   help=f"frame side the metrics use; other sizes are resized (default {DEFAULT_SIZE}; 0 keeps them)")
    p.add_argument("--clip-length", type=int, default=CLIP_LENGTH, help="frames per clip for FID-VID/FVD (16)")
    p.add_argument("--clip-stride", type=int, default=1, help="frames between clip starts (1, DisCo's)")
    p.add_argument("--pad-short-videos", action="store_true",
                   help="give videos shorter than a clip one clip padded with their last frame (DisCo: none)")
    p.add_argument("--frechet", choices=list(FRECHET_METHODS), default="sqrtm",
                   help="sqrtm: pytorch-fid's scipy sqrtm (bit-exact, slow on CPU); fast: symmetric eigen/SVD")
    p.add_argument("--batch-size", type=int, default=8, help="frames or clips per network call")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--ignore-unpaired", action="store_true",
                   help="evaluate the frames present on both sides instead of refusing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from magicpose.eval.protocol import EvalOptions, evaluate, write_record

    protocols = ("disco", "fixed") if args.protocol == "both" else (args.protocol,)
    options = EvalOptions(
        protocols=protocols,
        metrics=tuple(dict.fromkeys(m.replace("-", "_").lower() for m in args.metrics)) if args.metrics else None,
        weights_dir=args.weights_dir,
        face_model=args.face_model,
        keypoints=args.keypoints,
        keypoints_resize=args.keypoints_resize,
        size=args.size,
        clip_length=args.clip_length,
        clip_stride=args.clip_stride,
        pad_short_videos=args.pad_short_videos,
        frechet=args.frechet,
        batch_size=args.batch_size,
        device=args.device,
        ignore_unpaired=args.ignore_unpaired,
        progress=not args.no_progress,
    )
    record = evaluate(args.pred, args.gt, options)
    write_record(record, args.out)
    for metric, reason in record["skipped"].items():
        print(f"skipped {metric}: {reason}", file=sys.stderr)
    print(format_table(record))
    if "face" in record:
        f = record["face"]["frames"]
        print(f"faces: {f['scored']} frames scored, {f['no_face']} without a face, {f['no_keypoints']} without keypoints")
    print(f"wrote {args.out} ({record['counts']['frames']} frames, {record['counts']['clips']} clips)")
    return 0


def format_table(record: dict) -> str:
    """One row per metric, one column per protocol."""
    from magicpose.eval.protocol import REPORT_KEYS

    names = list(record["metrics"])
    rows = [m for m in REPORT_KEYS if any(m in record["metrics"][n] for n in names)]
    width = max([10, *(len(m) + 1 for m in rows)])  # the flicker energies have long names
    lines = ["metric".ljust(width) + "".join(f"{n:>14}" for n in names)]
    for metric in rows:
        values = [record["metrics"][n].get(metric) for n in names]
        cells = "".join(f"{v:>14.6g}" if v is not None else f"{'-':>14}" for v in values)
        lines.append(f"{metric:<{width}}" + cells)
    return "\n".join(lines)
