#!/usr/bin/env bash
# Quickstart on a CPU: set up .venv if needed, make a toy dataset, train stage 1 and stage 2 of a tiny
# pixel-space MagicPose, animate held-out toy dancers and evaluate them (about 10 minutes on 2 cores).
# Writes outputs/quickstart/{animation.mp4,grid.mp4,metrics.json}; exits 1 if the learning check fails.
#   bash scripts/quickstart.sh [--out DIR] [--no-check] [--help]
#   QUICKSTART_FAST=1 bash scripts/quickstart.sh      # or --fast: same path, few steps (CI), no check
#   bash scripts/quickstart.sh --pretrained           # no training: the shipped toy model (pretrained_weights/toy), < 1 min
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m magicpose quickstart "$@"
