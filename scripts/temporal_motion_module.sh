#!/usr/bin/env bash
# Stage 3: the temporal motion module (AnimateDiff layout) on 16-frame clips, everything of stage 2 frozen. The
# stage-2 model comes from your stage-2 run (runs/magicdance) or else the released MagicPose weights; the motion
# module from pretrained_weights/mm_sd_v15_v2.ckpt as released (converted once on first use), or pass
# model.paths.motion_adapter=null to start from a zero-initialised one. Runs on every GPU there is.
#   bash scripts/temporal_motion_module.sh [--resume] [key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python; [ -x "$PY" ] || PY=python3
exec "$PY" -m magicpose fit -c configs/magicpose/stage3_temporal.yaml "$@"
