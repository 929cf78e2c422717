#!/usr/bin/env bash
# Stage 1: appearance control pretraining on dataset/TikTok-v4, from pretrained_weights/control_sd15_ini.ckpt as
# released (converted once on first use) or a diffusers SD-1.5 folder; on every GPU there is (Lightning: devices auto).
#   bash scripts/appearance_control_pretraining.sh [--resume] [key=value ...]     e.g. trainer.devices=4 data.batch_size=16
# Add --resume to continue a killed run. The original's 8-GPU launch: append -c configs/trainer/ddp_8gpu.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python; [ -x "$PY" ] || PY=python3
exec "$PY" -m magicpose fit -c configs/magicpose/stage1_appearance.yaml "$@"
