"""`magicpose convert`: original checkpoints -> our folders (magicdance, controlnet, sd, followyourpose,
motion-module), and back (export, followyourpose --export, motion-module --to-original)."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """examples:
  magicpose convert magicdance --checkpoint pretrained_weights/model_state-110000.th --out pretrained_weights/MagicPose
  magicpose convert magicdance --checkpoint pretrained_weights/model_state-10000.th \\
      --controlnet pretrained_weights/control_v11p_sd15_openpose.pth --out stage2_init/   # the original's stage-2 init
  magicpose convert controlnet --checkpoint control_v11p_sd15_openpose.pth --out pretrained_weights/control_v11p_sd15_openpose
  magicpose convert sd --checkpoint v1-5-pruned-emaonly.safetensors --out pretrained_weights/stable-diffusion-v1-5
  magicpose convert export --pipeline pretrained_weights/MagicPose --out model_state-export.safetensors --pickle
  magicpose convert followyourpose --checkpoint pretrained_weights/followyourpose_checkpoint-1000 \\
      --pose-encoder pretrained_weights/pose_encoder.pth --sd pretrained_weights/stable-diffusion-v1-4 \\
      --out pretrained_weights/FollowYourPose
  magicpose convert motion-module --checkpoint pretrained_weights/mm_sd_v15_v2.ckpt --out pretrained_weights/mm_sd_v15_v2

You rarely need to run this: every model.paths.* / model.pretrained may name the original file, and the commands
convert it once on first use into .converted/ beside it (docs/migrating.md).
Pickles are read with torch.load(weights_only=True) only: a file that holds anything but tensors is refused unread.
Every key is converted or dropped for a stated reason (printed, and saved as conversion.json in the output)."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("convert", help="convert original SD / ControlNet / MagicDance checkpoints (and back)",
                              description="Convert checkpoints in the original (LDM) layout into folders that "
                                          "`magicpose animate` / `fit` load, and export ours back.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", metavar="WHAT")
    sub.required = True

    def common(q: argparse.ArgumentParser, configs: bool = True) -> None:
        q.add_argument("--checkpoint", required=True, type=Path,
                       help=".ckpt / .pth / .th (weights-only pickle) or .safetensors")
        q.add_argument("--out", required=True, type=Path, help="output folder")
        if configs:
            q.add_argument("--components", metavar="DIR",
                           help="component configs the weights go into (default configs/models/sd15)")
            q.add_argument("--original-config", metavar="YAML",
                           help="LDM model YAML (unet_config / control_stage_config / appearance_control_stage_config "
                                "/ pose_control_stage_config / first_stage_config): checkpoints of other sizes")
        q.add_argument("--dtype", default="keep", choices=["keep", "float32", "float16", "bfloat16"],
                       help="dtype of the written weights (default: as in the checkpoint)")
        q.add_argument("--overwrite", action="store_true", help="replace an existing --out")

    q = sub.add_parser("magicdance", help="MagicDance stage-1/-2 checkpoint (or control_sd15_ini) -> pipeline folder",
                       description="model_state-*.th or control_sd15_ini.ckpt -> a MagicPosePipeline folder "
                                   "(model.pretrained=OUT).")
    common(q)
    q.add_argument("--sd", metavar="PATH",
                   help="Stable Diffusion 1.5 (diffusers folder or single file) for the parts the checkpoint lacks")
    q.add_argument("--controlnet", metavar="PATH",
                   help="pose ControlNet (.pth / .safetensors / diffusers folder) for a checkpoint without one")
    q.set_defaults(func=_cmd_convert)

    q = sub.add_parser("controlnet", help="ControlNet checkpoint (e.g. control_v11p_sd15_openpose.pth) -> folder")
    common(q)
    q.add_argument("--prefix", help="key prefix of the ControlNet (default: found: control_model. / "
                                    "pose_control_model. / none)")
    q.set_defaults(func=_cmd_convert)

    q = sub.add_parser("sd", help="Stable Diffusion 1.x single file -> diffusers folder (unet, vae, text encoder)")
    common(q)
    q.set_defaults(func=_cmd_convert)

    q = sub.add_parser("export", help="our pipeline folder -> the original's state-dict layout",
                       description="A MagicPosePipeline folder -> one state dict in the layout of the original "
                                   "model_state-*.th (stage 2 with a controlnet/, else stage 1).")
    q.add_argument("--pipeline", required=True, type=Path, help="a MagicPosePipeline folder")
    q.add_argument("--out", required=True, type=Path, help="output .safetensors file")
    q.add_argument("--pickle", nargs="?", const=True, default=None, metavar="FILE",
                   help="also write a weights-only pickle (default: --out with the suffix .th)")
    q.add_argument("--layout", default="auto", choices=["auto", "stage1", "stage2"],
                   help="stage2: model_state-110000.th keys; stage1: model_state-10000.th keys")
    q.add_argument("--overwrite", action="store_true", help="replace existing output files")
    q.set_defaults(func=_cmd_export)
    _add_followyourpose(sub)
    _add_fyp_config(sub)
    _add_motion_module(sub)


def _add_followyourpose(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser("followyourpose", help="Follow-Your-Pose release (checkpoint-1000 + pose_encoder.pth) -> folder",
                       description="followyourpose_checkpoint-1000 (the accelerate folder or its pytorch_model.bin) "
                                   "and pose_encoder.pth -> a Follow-Your-Pose pipeline folder for "
                                   "`magicpose fyp-sample` (model.pretrained=OUT). With --export: the reverse.")
    q.add_argument("--checkpoint", type=Path,
                   help="followyourpose_checkpoint-1000/ or its pytorch_model.bin (UNet3D + skeleton_adapter)")
    q.add_argument("--pose-encoder", type=Path, help="pose_encoder.pth (used when the checkpoint has no adapter)")
    q.add_argument("--sd", metavar="DIR", help="Stable Diffusion 1.4/1.5 diffusers folder: its unet config, and its "
                                               "vae / text_encoder / tokenizer / scheduler are copied into --out")
    q.add_argument("--components", default="configs/models/sd15", metavar="DIR",
                   help="component configs when --sd is not given (default configs/models/sd15)")
    q.add_argument("--export", type=Path, metavar="PIPELINE",
                   help="instead: write this pipeline folder's unet + adapter in the original layout to --out "
                        "(.bin / .pth: weights-only pickle; .safetensors)")
    q.add_argument("--out", required=True, type=Path, help="output folder (or file with --export)")
    q.add_argument("--dtype", default="keep", choices=["keep", "float32", "float16", "bfloat16"],
                   help="dtype of the written weights (default: as in the checkpoint)")
    q.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    q.set_defaults(func=_cmd_followyourpose)


def _add_motion_module(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser("motion-module", help="AnimateDiff motion module (mm_sd_v15*.ckpt) -> MotionAdapter folder",
                       description="An AnimateDiff motion-module file as released (mm_sd_v14.ckpt, mm_sd_v15.ckpt, "
                                   "mm_sd_v15_v2.ckpt, v3; .ckpt / .pth / .safetensors) -> a diffusers MotionAdapter "
                                   "folder (model.paths.motion_adapter=OUT). Widths, layers, the mid block and the "
                                   "frame count (the positional tables' length: 24 for v1, 32 for v2) are read from "
                                   "the file; heads and norm groups, which no tensor shows, are AnimateDiff's (8, 32) "
                                   "unless --config names a MotionAdapter config folder. Every key is converted or "
                                   "dropped for a stated reason; a positional table that is not the sinusoidal one "
                                   "diffusers computes is refused. With --to-original: the reverse.",
                       epilog="examples:\n  magicpose convert motion-module --checkpoint pretrained_weights/"
                              "mm_sd_v15_v2.ckpt --out pretrained_weights/mm_sd_v15_v2\n  magicpose convert "
                              "motion-module --to-original pretrained_weights/mm_sd_v15_v2 --out mm_export.ckpt\n\n"
                              "You rarely need to run this: model.paths.motion_adapter may name the .ckpt itself; it "
                              "is converted once on first use into .converted/ beside it.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("--checkpoint", type=Path, help="the motion-module file (.ckpt / .pth weights-only pickle, or "
                                                   ".safetensors; a 'state_dict' wrapper is unwrapped)")
    q.add_argument("--config", metavar="DIR", help="a MotionAdapter config folder (e.g. configs/models/sd15/"
                                                   "motion_adapter) to use instead of the inferred config; the file "
                                                   "must agree with it")
    q.add_argument("--to-original", type=Path, metavar="ADAPTER_DIR",
                   help="instead: write this MotionAdapter folder in the original layout to --out (.safetensors by "
                        "that suffix, else a weights-only pickle such as .ckpt)")
    q.add_argument("--out", required=True, type=Path, help="output folder (a file with --to-original)")
    q.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    q.set_defaults(func=_cmd_motion_module)


def _cmd_motion_module(args: argparse.Namespace) -> int:
    from magicpose.convert.animatediff import convert_motion_module, export_motion_module
    from magicpose.errors import UserError

    if args.to_original is not None:
        if args.checkpoint is not None or args.config is not None:
            raise UserError("convert motion-module --to-original: takes a MotionAdapter folder and --out only "
                            "(no --checkpoint / --config)")
        path = export_motion_module(args.to_original, args.out, overwrite=args.overwrite)
        print(f"exported {args.to_original} -> {path} (the original AnimateDiff motion-module layout)")
        return 0
    if args.checkpoint is None:
        raise UserError("convert motion-module: --checkpoint is required (or --to-original ADAPTER_DIR)")
    report = convert_motion_module(args.checkpoint, args.out, args.config, overwrite=args.overwrite)
    print("\n".join(report.lines()))
    return 0


def _add_fyp_config(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser("fyp-config", help="an original Follow-Your-Pose YAML (pose_train / pose_sample) -> our config",
                       description="configs/pose_train.yaml (training) or configs/pose_sample.yaml (sampling) of the "
                                   "original Follow-Your-Pose -> a config for `magicpose fit` / `magicpose fyp-sample` "
                                   "over configs/followyourpose/stage2.yaml / inference.yaml. Every key is mapped or "
                                   "named in one warning with the reason.",
                       epilog="examples:\n  magicpose convert fyp-config FollowYourPose/configs/pose_train.yaml "
                              "--out configs/my_pose_train.yaml\n  magicpose fit -c configs/my_pose_train.yaml\n"
                              "  magicpose convert fyp-config FollowYourPose/configs/pose_sample.yaml --out "
                              "configs/my_pose_sample.yaml\n  magicpose fyp-sample -c configs/my_pose_sample.yaml "
                              "--skeleton pose_example/dance_001.mp4 --out outputs/fyp",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("original", type=Path, metavar="ORIGINAL.yaml", help="the original's YAML")
    q.add_argument("--out", required=True, type=Path, help="our YAML to write")
    q.add_argument("--kind", default="auto", choices=["auto", "train", "sample"],
                   help="auto (default): train when the YAML has training keys (train_data, max_train_steps, ...)")
    q.add_argument("--pipeline", default="pretrained_weights/FollowYourPose", metavar="DIR",
                   help="the converted release the config loads (magicpose convert followyourpose --out DIR)")
    q.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    q.set_defaults(func=_cmd_fyp_config)


def _cmd_fyp_config(args: argparse.Namespace) -> int:
    import sys

    from omegaconf import OmegaConf

    from magicpose.config.original_fyp import convert_original, needs_manual_conversion, read_original
    from magicpose.errors import UserError
    from magicpose.paths import resolve_path

    if args.out.exists() and not args.overwrite:
        raise UserError(f"{args.out}: exists; pass --overwrite to replace it")
    conv = convert_original(read_original(args.original), args.out, None if args.kind == "auto" else args.kind,
                            args.pipeline)
    header = f"# {args.original} (the original Follow-Your-Pose, {conv.kind}), by `magicpose convert fyp-config`\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(header + OmegaConf.to_yaml(OmegaConf.create(conv.ordered())))
    command = "fit" if conv.kind == "train" else "fyp-sample"
    print(f"wrote {args.out} (for `magicpose {command} -c {args.out}`)")
    for note in conv.notes:
        print(f"  note: {note}")
    if conv.unmapped:
        lines = "\n".join(f"  {key}: {why}" for key, why in conv.unmapped)
        print(f"warning: {len(conv.unmapped)} key(s) of {args.original} not mapped:\n{lines}", file=sys.stderr)
    if needs_manual_conversion(conv) and not (resolve_path(args.pipeline) / "unet").is_dir():
        print(f"weights: {conv.weights['checkpoint']} and {conv.weights['sd']} are not side by side as released; "
              f"convert them once:\n  {conv.convert_weights_command()}")
    return 0


def _cmd_followyourpose(args: argparse.Namespace) -> int:
    from magicpose.convert.followyourpose import convert_followyourpose, export_followyourpose
    from magicpose.errors import UserError

    if args.export is not None:
        path = export_followyourpose(args.export, args.out, overwrite=args.overwrite)
        print(f"exported {args.export} -> {path} (the original pytorch_model.bin layout)")
        return 0
    if args.checkpoint is None:
        raise UserError("convert followyourpose: --checkpoint is required (or --export PIPELINE)")
    report = convert_followyourpose(args.checkpoint, args.out, pose_encoder=args.pose_encoder, sd=args.sd,
                                    components=args.components, dtype=args.dtype, overwrite=args.overwrite)
    print("\n".join(report.lines()))
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from magicpose.convert.magicdance import convert_checkpoint

    report = convert_checkpoint(
        args.checkpoint, args.out, args.what,
        components=getattr(args, "components", None), original_config=getattr(args, "original_config", None),
        sd=getattr(args, "sd", None), controlnet=getattr(args, "controlnet", None),
        prefix=getattr(args, "prefix", None), dtype=args.dtype, overwrite=args.overwrite,
    )
    print("\n".join(report.lines()))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from magicpose.convert.magicdance import export_original

    pickle_out = args.pickle
    if pickle_out is True:
        pickle_out = args.out.with_suffix(".th")
    result = export_original(args.pipeline, args.out, pickle_out=pickle_out, layout=args.layout,
                             overwrite=args.overwrite)
    print(f"exported {args.pipeline} ({result['layout']} layout, {result['tensors']} tensors) -> {result['out']}"
          + (f" and {result['pickle']}" if result["pickle"] else ""))
    return 0
