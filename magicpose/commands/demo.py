"""`magicpose demo`: a web page (Gradio) to try both systems: animate a person (MagicPose) and text + skeleton to
video (Follow-Your-Pose). Argument parsing only; the page is `magicpose.demo.app`."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from magicpose.commands.outputs import add_config_argument

EPILOG = """examples:
  magicpose demo --config configs/magicpose/tiny.yaml --fyp-config configs/followyourpose/tiny.yaml
      tiny models with random weights, on a CPU in seconds: proves the whole path, the output is noise
  magicpose demo --config configs/magicpose/inference.yaml --fyp-config configs/followyourpose/inference.yaml
      the released weights (see pretrained_weights/README.md); a GPU is advised
  magicpose demo --config configs/magicpose/toy/demo.yaml
      the toy model that `bash scripts/quickstart.sh` trains (outputs/quickstart/runs/stage2/pipeline)

then open http://127.0.0.1:7860 (the address is printed). To reach it from another machine, tunnel the port
(ssh -L 7860:127.0.0.1:7860 HOST) rather than binding to 0.0.0.0: the page has no login.
Each run writes OUT/animate/<run>/ (or OUT/followyourpose/<run>/): frames/, animation.mp4, animation.gif, grid.mp4,
run.json and frames.zip, as `magicpose animate` / `fyp-sample` would."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="web page (Gradio) to animate a person and to make text + skeleton videos",
        description="Serve a web page with two tabs: 'Animate a person' (a reference image + poses, MagicPose) and "
                    "'Text + skeleton to video' (Follow-Your-Pose, with --fyp-config). Each model is loaded once "
                    "and runs one request at a time. Needs the demo extra: pip install 'magicpose[demo]'.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_argument(p)
    p.add_argument("--fyp-config", action="append", metavar="YAML",
                   help="a Follow-Your-Pose config (repeat to merge); without it that tab only says how to turn it on")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes the page, "
                        "which has no login, to the network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--out", type=Path,
                   help="folder for the runs' results (default: a new temporary folder, printed at start)")
    p.add_argument("--max-file-size", type=float, default=200.0, metavar="MB",
                   help="uploads above this many megabytes are refused (default 200)")
    p.add_argument("--max-frames", type=int, default=300,
                   help="frames an uploaded video or pose set may have, and a video may be made of (default 300)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1, ... for both models (their configs' `device`)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for torch (default: torch's choice). On a busy CPU, 1 can be much faster for "
                        "the tiny models, which are dominated by per-operation overhead")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from magicpose.demo import require_gradio
    from magicpose.errors import UserError

    require_gradio()
    if args.max_frames < 1 or args.max_file_size <= 0:
        raise UserError("--max-frames and --max-file-size must be positive")
    if not 0 < args.port < 65536:
        raise UserError(f"--port: {args.port} is not a port number (1-65535)")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads: {args.threads} must be at least 1")
    from magicpose.demo.server import serve

    out = args.out or Path(tempfile.mkdtemp(prefix="magicpose-demo-"))
    return serve(args.config, args.fyp_config, host=args.host, port=args.port, out=out,
                 max_file_size_mb=args.max_file_size, max_frames=args.max_frames, device=args.device,
                 threads=args.threads)
