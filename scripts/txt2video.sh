#!/usr/bin/env bash
# Follow-Your-Pose: a prompt + a skeleton video -> a video, with the released weights.
#   bash scripts/txt2video.sh "PROMPT" SKELETON_VIDEO_OR_DIR [OUT_DIR] [extra magicpose fyp-sample args...]
# e.g.
#   bash scripts/txt2video.sh "Iron man on the beach" pose_example/dance_001.mp4
#   bash scripts/txt2video.sh "a robot dancing" poses.mp4 out/ --frames 24 --context-length 16 --steps 30
#
# Weights: the converted folder $FYP_PIPELINE (default pretrained_weights/FollowYourPose); when it is missing,
# the original release is converted into it once, from $FYP_CHECKPOINTS (default pretrained_weights/, else
# checkpoints/ where the original README put them; the files of the HF repo YueMafighting/FollowYourPose_v1):
# followyourpose_checkpoint-1000/, pose_encoder.pth, stable-diffusion-v1-4/.
# FYP_CONFIG picks another config (default configs/followyourpose/inference.yaml; the tiny one needs no weights).
set -euo pipefail
cd "$(dirname "$0")/.."
PIPELINE=${FYP_PIPELINE:-pretrained_weights/FollowYourPose}
SRC=${FYP_CHECKPOINTS:-pretrained_weights}
CONFIG=${FYP_CONFIG:-configs/followyourpose/inference.yaml}
if [ $# -lt 2 ]; then
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
  exit 1
fi
prompt=$1; skeleton=$2; shift 2
out=${1:-outputs/fyp/$(basename "${skeleton%.*}")}
[ $# -gt 0 ] && shift

PY=.venv/bin/python
[ -x "$PY" ] || PY=python3

extra=()
if [ "$CONFIG" = configs/followyourpose/inference.yaml ]; then
  if [ ! -d "$PIPELINE/unet" ]; then
    # the original README's checkpoints/ still works when pretrained_weights/ does not hold the release
    if [ -z "${FYP_CHECKPOINTS:-}" ] && [ ! -d "$SRC/followyourpose_checkpoint-1000" ] \
        && [ -d checkpoints/followyourpose_checkpoint-1000 ]; then
      echo "note: the release is in checkpoints/ (the original README's place); this project's is pretrained_weights/" >&2
      SRC=checkpoints
    fi
    ckpt=$SRC/followyourpose_checkpoint-1000
    if [ ! -d "$ckpt" ] || [ ! -d "$SRC/stable-diffusion-v1-4" ]; then
      cat >&2 <<MSG
error: no Follow-Your-Pose weights. Looked for:
  $PIPELINE/ (a converted folder: unet/ pose_adapter/ vae/ text_encoder/ tokenizer/ scheduler/)
  $ckpt/pytorch_model.bin, $SRC/pose_encoder.pth, $SRC/stable-diffusion-v1-4/ (the original release;
  checkpoints/ is also looked at, where the original README put it)
Download the release (HF: YueMafighting/FollowYourPose_v1, files under checkpoints/) into $SRC/ and convert it once:
  magicpose convert followyourpose --checkpoint $ckpt --pose-encoder $SRC/pose_encoder.pth \\
      --sd $SRC/stable-diffusion-v1-4 --out $PIPELINE
MSG
      exit 1
    fi
    echo "converting $ckpt into $PIPELINE (once; later runs reuse it)" >&2
    args=(--checkpoint "$ckpt" --sd "$SRC/stable-diffusion-v1-4" --out "$PIPELINE" --overwrite)
    [ -f "$SRC/pose_encoder.pth" ] && args+=(--pose-encoder "$SRC/pose_encoder.pth")
    "$PY" -m magicpose convert followyourpose "${args[@]}" >&2
  fi
  extra=("model.pretrained=$(cd "$PIPELINE" && pwd)")
fi
# key=value overrides must come last for argparse
exec "$PY" -m magicpose fyp-sample --config "$CONFIG" --prompt "$prompt" --skeleton "$skeleton" --out "$out" \
  "$@" "${extra[@]}"
