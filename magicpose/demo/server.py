"""Loading the demo's models from their configs and serving the page (what `magicpose demo` runs)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from magicpose.demo.sessions import AnimateSession, FypSession, Limits
from magicpose.errors import UserError


def load_sessions(config: list[str], fyp_config: list[str] | None, out: Path, limits: Limits,
                  device: str | None = None) -> tuple[AnimateSession, FypSession | None]:
    """Both models, loaded (original files converted on first use); a config of the wrong system is one line."""
    from magicpose.config import FypConfig, MagicPoseConfig, check_system, config_system, load_config

    overrides = [f"device={device}"] if device else []
    if config_system(config) != "magicpose":
        raise UserError(f"--config: {', '.join(config)} is a {config_system(config)} config; "
                        "pass it as --fyp-config (--config takes a MagicPose config)")
    started = time.perf_counter()
    animate = AnimateSession(load_config(config, overrides, schema=MagicPoseConfig), out, limits=limits)
    print(f"MagicPose model ({', '.join(config)}) on {animate.device}, loaded in {time.perf_counter() - started:.1f} s")
    fyp = None
    if fyp_config:
        started = time.perf_counter()
        loaded = load_config(fyp_config, overrides, schema=FypConfig)
        check_system(loaded)
        fyp = FypSession(loaded, out, limits=limits)
        print(f"Follow-Your-Pose model ({', '.join(fyp_config)}) on {fyp.device}, "
              f"loaded in {time.perf_counter() - started:.1f} s")
    return animate, fyp


def serve(config: list[str], fyp_config: list[str] | None, host: str, port: int, out: Path,
          max_file_size_mb: float, max_frames: int, device: str | None = None, threads: int | None = None) -> int:
    """Load the models, then serve the page until interrupted."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    from magicpose.demo.app import DemoInfo, build_app, launch

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log = logging.getLogger("magicpose.demo")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    animate, fyp = load_sessions(config, fyp_config, out, Limits(max_frames=max_frames), device)
    app = build_app(animate, fyp, DemoInfo(", ".join(config), ", ".join(fyp_config) if fyp_config else None))
    print(f"results go to {out}")
    launch(app, host, port, out, int(max_file_size_mb * 1024 * 1024))  # bytes: Gradio reads "0.5mb" as a bad unit
    return 0
