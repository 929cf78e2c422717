#!/usr/bin/env bash
# Follow-Your-Pose: a prompt + a skeleton video -> a video, with the released weights.
#   bash scripts/txt2video.sh "PROMPT" SKELETON_VIDEO_OR_DIR [OUT_DIR] [extra magicpose fyp-sample args...]
# e.g.
#   bash scripts/txt2video.sh "Iron man on the beach" pose_example/dance_001.mp4
#   bash scripts/txt2video.sh "a robot dancing" poses.mp4 out/ --frames 24 --context-length 16 --steps 30
#
# Weights (configs/followyourpose/inference.yaml, model.pretrained): the first that exists of
# pretrained_weights/FollowYourPose/ (a converted folder), pretrained_weights/followyourpose_checkpoint-1000/ and
# checkpoints/followyourpose_checkpoint-1000/ (the release, HF YueMafighting/FollowYourPose_v1, where this project
# and the original README put it), converted once on first use with the stable-diffusion-v1-4/ and pose_encoder.pth
# beside it. $FYP_CHECKPOINT: another checkpoint folder or converted folder. FYP_CONFIG picks another config
# (default configs/followyourpose/inference.yaml; configs/followyourpose/tiny.yaml needs no weights).
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${FYP_CONFIG:-configs/followyourpose/inference.yaml}
if [ $# -lt 2 ]; then
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
  exit 1
fi
prompt=$1; skeleton=$2; shift 2
out=outputs/fyp/$(basename "${skeleton%.*}")
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ] && [ "${1#*=}" = "$1" ]; then out=$1; shift; fi
PY=.venv/bin/python; [ -x "$PY" ] || PY=python3
weights=()
[ -n "${FYP_CHECKPOINT:-}" ] && weights=("model.pretrained=$FYP_CHECKPOINT")
# key=value overrides must come last for argparse
exec "$PY" -m magicpose fyp-sample --config "$CONFIG" --prompt "$prompt" --skeleton "$skeleton" --out "$out" \
  "$@" "${weights[@]+"${weights[@]}"}"
