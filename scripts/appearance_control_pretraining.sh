#!/usr/bin/env bash
# Stage 1: appearance control pretraining on dataset/TikTok-v4 with SD-1.5 from pretrained_weights/, 8 GPUs.
#   bash scripts/appearance_control_pretraining.sh [key=value ...]       e.g. trainer.devices=4 data.batch_size=16
# Add --resume to continue a killed run. Same command on 1 GPU: append -c configs/trainer/single_gpu.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python; [ -x "$PY" ] || PY=python3
exec "$PY" -m magicpose fit -c configs/magicpose/stage1_appearance.yaml -c configs/trainer/ddp_8gpu.yaml "$@"
