#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite offline on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The pose-extraction backend (mediapipe) needs numpy<2 and a non-headless OpenCV: its own venv, .venv-pose.
bash scripts/setup_pose.sh
# The web demo's browser test drives the OS's chromium (apt-get install chromium when missing; no browser download).
bash scripts/setup_browser.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export TOKENIZERS_PARALLELISM=false
export PYTHONHASHSEED=0
.venv/bin/ruff check magicpose tests scripts
exec .venv/bin/python -m pytest "$@"
