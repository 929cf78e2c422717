#!/usr/bin/env bash
# Animate any reference image with a pose sequence using the released MagicPose weights.
#   bash scripts/inference_any_image_pose.sh REFERENCE_IMAGE POSES_DIR_OR_VIDEO [OUT_DIR] [extra magicpose args...]
# e.g.
#   bash scripts/inference_any_image_pose.sh example_data/image/out-of-domain/astronaut.png example_data/pose_sequence/001
# Extra arguments go to `magicpose animate` (e.g. --steps 30 --overwrite inference.prompt="a dancer").
#
# Weights (configs/magicpose/inference.yaml, model.pretrained): the first that exists of pretrained_weights/MagicPose/
# (a converted pipeline folder) and pretrained_weights/model_state-110000.{safetensors,th} as released, converted once
# on first use into pretrained_weights/.converted/ ($MAGICPOSE_CACHE: elsewhere). $MAGICPOSE_CHECKPOINT: another
# checkpoint file or pipeline folder.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
  exit 1
fi
ref=$1; poses=$2; shift 2
out=outputs/animate/$(basename "${ref%.*}")_$(basename "${poses%.*}")
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ] && [ "${1#*=}" = "$1" ]; then out=$1; shift; fi
PY=.venv/bin/python; [ -x "$PY" ] || PY=python3
weights=()
[ -n "${MAGICPOSE_CHECKPOINT:-}" ] && weights=("model.pretrained=$MAGICPOSE_CHECKPOINT")
# key=value arguments must stay last for argparse
exec "$PY" -m magicpose animate --config configs/magicpose/inference.yaml \
  --reference "$ref" --poses "$poses" --out "$out" "$@" "${weights[@]+"${weights[@]}"}"
