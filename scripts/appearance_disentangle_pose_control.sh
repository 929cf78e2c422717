#!/usr/bin/env bash
# Stage 2: appearance-disentangled pose control. The appearance UNet comes from your stage-1 run
# (runs/appearance_control_pretraining) or else the released pretrained_weights/model_state-10000.th; the OpenPose
# ControlNet from pretrained_weights/control_v11p_sd15_openpose.pth as released (or its diffusers folder). Original
# files are converted once on first use. Runs on every GPU there is (Lightning: devices auto).
#   bash scripts/appearance_disentangle_pose_control.sh [--resume] [key=value ...]
# A stage-1 result from elsewhere: model.paths.appearance_unet=PATH (a folder or a model_state-*.th).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python; [ -x "$PY" ] || PY=python3
exec "$PY" -m magicpose fit -c configs/magicpose/stage2_pose.yaml "$@"
