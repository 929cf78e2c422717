#!/usr/bin/env bash
# The web demo: a Gradio page with "Animate a person" (MagicPose) and "Text + skeleton to video" (Follow-Your-Pose).
#   bash scripts/demo.sh                       tiny configs, random weights: runs on a CPU out of the box (noise out)
#   bash scripts/demo.sh configs/magicpose/inference.yaml configs/followyourpose/inference.yaml   released weights
#   bash scripts/demo.sh configs/magicpose/toy/demo.yaml    the toy model of `bash scripts/quickstart.sh`
#   bash scripts/demo.sh configs/magicpose/toy/pretrained.yaml    the shipped toy model (pretrained_weights/toy)
#   bash scripts/demo.sh CONFIG FYP_CONFIG --port 8080 --threads 1    any further `magicpose demo` option
# Then open the printed address (http://127.0.0.1:7860 by default). `magicpose demo --help` explains each option.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=configs/magicpose/tiny.yaml
FYP_CONFIG=configs/followyourpose/tiny.yaml
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then CONFIG=$1; shift; FYP_CONFIG=""; fi
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then FYP_CONFIG=$1; shift; fi
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
args=(--config "$CONFIG")
[ -n "$FYP_CONFIG" ] && args+=(--fyp-config "$FYP_CONFIG")
echo "[demo] magicpose demo ${args[*]} $*"
exec "$PY" -m magicpose demo "${args[@]}" "$@"
