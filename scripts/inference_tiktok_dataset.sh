#!/usr/bin/env bash
# Generate every test video of a TikTok-format dataset with the released MagicPose weights (DisCo protocol:
# reference = first frame of each video), ready for scripts/evaluate_tiktok.sh.
#   bash scripts/inference_tiktok_dataset.sh DATA_ROOT [OUT_DIR] [extra magicpose infer-tiktok args...]
# e.g.
#   bash scripts/inference_tiktok_dataset.sh dataset/TikTok-v4                # disco_test_set -> outputs/tiktok_test/
#   bash scripts/inference_tiktok_dataset.sh dataset/TikTok-v4 outputs/tt --split test_set --steps 30
# Interrupt and run it again to continue: frames already written are kept.
#
# Weights as scripts/inference_any_image_pose.sh: pretrained_weights/MagicPose/, else
# pretrained_weights/model_state-110000.{safetensors,th} as released (converted once on first use);
# $MAGICPOSE_CHECKPOINT: another checkpoint file or pipeline folder.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
  echo "usage:" >&2
  sed -n '4,7p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 1
fi
data=$1; shift
out=outputs/tiktok_test
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ] && [ "${1#*=}" = "$1" ]; then out=$1; shift; fi
PY=.venv/bin/python; [ -x "$PY" ] || PY=python3
weights=()
[ -n "${MAGICPOSE_CHECKPOINT:-}" ] && weights=("model.pretrained=$MAGICPOSE_CHECKPOINT")
# key=value arguments must stay last for argparse
exec "$PY" -m magicpose infer-tiktok --config configs/magicpose/inference.yaml \
  --data "$data" --out "$out" "$@" "${weights[@]+"${weights[@]}"}"
