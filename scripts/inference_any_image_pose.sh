#!/usr/bin/env bash
# Animate any reference image with a pose sequence using the released MagicPose weights.
#   bash scripts/inference_any_image_pose.sh REFERENCE_IMAGE POSES_DIR_OR_VIDEO [OUT_DIR] [extra magicpose args...]
# e.g.
#   bash scripts/inference_any_image_pose.sh example_data/image/181020.png example_data/pose_sequence/001
# Extra arguments go to `magicpose animate` (e.g. --steps 30 --overwrite inference.prompt="a dancer").
set -euo pipefail
cd "$(dirname "$0")/.."
PIPELINE=${MAGICPOSE_PIPELINE:-pretrained_weights/MagicPose}
if [ $# -lt 2 ]; then
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
  exit 1
fi
ref=$1; poses=$2; shift 2
out=${1:-outputs/animate/$(basename "${ref%.*}")_$(basename "${poses%.*}")}
[ $# -gt 0 ] && shift

missing=()
for sub in unet appearance_unet controlnet vae text_encoder tokenizer scheduler; do
  [ -d "$PIPELINE/$sub" ] || missing+=("$PIPELINE/$sub/")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "error: the MagicPose weights are not where configs/magicpose/inference.yaml expects them. Missing:" >&2
  printf '  %s\n' "${missing[@]}" >&2
  cat >&2 <<MSG
Put these files under pretrained_weights/ (see pretrained_weights/README.md):
  pretrained_weights/model_state-110000.th        MagicPose final checkpoint (non-commercial research licence)
  pretrained_weights/stable-diffusion-v1-5/       SD-1.5 in diffusers format (for the VAE, text encoder, tokenizer)
then convert once:
  magicpose convert magicdance --checkpoint pretrained_weights/model_state-110000.th \\
      --sd pretrained_weights/stable-diffusion-v1-5 --out $PIPELINE
MSG
  exit 1
fi

PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
exec "$PY" -m magicpose animate --config configs/magicpose/inference.yaml \
  --reference "$ref" --poses "$poses" --out "$out" "$@"
