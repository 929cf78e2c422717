#!/usr/bin/env bash
# Stage 2: appearance-disentangled pose control, from the stage-1 run (runs/appearance_control_pretraining)
# and the OpenPose ControlNet (pretrained_weights/control_v11p_sd15_openpose), 8 GPUs.
#   bash scripts/appearance_disentangle_pose_control.sh [key=value ...]
# A stage-1 checkpoint from elsewhere: model.paths.appearance_unet=PATH/appearance_unet. Add --resume to continue.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python; [ -x "$PY" ] || PY=python3
exec "$PY" -m magicpose fit -c configs/magicpose/stage2_pose.yaml -c configs/trainer/ddp_8gpu.yaml "$@"
