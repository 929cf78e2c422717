#!/usr/bin/env bash
# Generate every test video of a TikTok-format dataset with the released MagicPose weights (DisCo protocol:
# reference = first frame of each video), ready for scripts/evaluate_tiktok.sh.
#   bash scripts/inference_tiktok_dataset.sh DATA_ROOT [OUT_DIR] [extra magicpose infer-tiktok args...]
# e.g.
#   bash scripts/inference_tiktok_dataset.sh dataset/TikTok-v4                # -> outputs/tiktok_test/
#   bash scripts/inference_tiktok_dataset.sh dataset/TikTok-v4 outputs/tt --split disco_test_set --steps 30
# Interrupt and run it again to continue: frames already written are kept.
#
# Weights: a converted pipeline folder, $MAGICPOSE_PIPELINE (default pretrained_weights/MagicPose), or the
# folder that scripts/inference_any_image_pose.sh converted on first use under pretrained_weights/.converted/.
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

PY=.venv/bin/python
[ -x "$PY" ] || PY=python3

complete() {  # a pipeline folder with every component
  local dir=$1 sub
  for sub in unet appearance_unet controlnet vae text_encoder tokenizer scheduler; do
    [ -d "$dir/$sub" ] || return 1
  done
}

PIPELINE=${MAGICPOSE_PIPELINE:-pretrained_weights/MagicPose}
if ! complete "$PIPELINE"; then
  found=
  for dir in $(ls -dt pretrained_weights/.converted/*/ 2>/dev/null); do
    if complete "$dir"; then found=${dir%/}; break; fi
  done
  if [ -z "$found" ]; then
    cat >&2 <<MSG
error: no MagicPose pipeline folder at $PIPELINE/ (unet/ appearance_unet/ controlnet/ vae/ text_encoder/ tokenizer/ scheduler/).
Convert the original checkpoint once (see pretrained_weights/README.md):
  magicpose convert magicdance --checkpoint pretrained_weights/model_state-110000.th --out $PIPELINE
MSG
    exit 1
  fi
  PIPELINE=$found
fi

# model.pretrained goes in through a config overlay: `key=value` arguments must stay last for argparse.
overlay=$(mktemp "${TMPDIR:-/tmp}/magicpose-weights.XXXXXX.yaml")
trap 'rm -f "$overlay"' EXIT
printf 'model:\n  pretrained: "%s"\n' "$(cd "$PIPELINE" && pwd)" > "$overlay"
"$PY" -m magicpose infer-tiktok --config configs/magicpose/inference.yaml --config "$overlay" \
  --data "$data" --split test_set --out "$out" "$@"
