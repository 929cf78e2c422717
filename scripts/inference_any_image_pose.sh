#!/usr/bin/env bash
# Animate any reference image with a pose sequence using the released MagicPose weights.
#   bash scripts/inference_any_image_pose.sh REFERENCE_IMAGE POSES_DIR_OR_VIDEO [OUT_DIR] [extra magicpose args...]
# e.g.
#   bash scripts/inference_any_image_pose.sh example_data/image/out-of-domain/astronaut.png example_data/pose_sequence/001
# Extra arguments go to `magicpose animate` (e.g. --steps 30 --overwrite inference.prompt="a dancer").
#
# Weights, in this order:
#   1. a converted pipeline folder: $MAGICPOSE_PIPELINE (default pretrained_weights/MagicPose), or
#   2. the original checkpoint, converted on first use into a cached folder under $MAGICPOSE_CACHE
#      (default pretrained_weights/.converted/): $MAGICPOSE_CHECKPOINT, default
#      pretrained_weights/model_state-110000.safetensors if present, else pretrained_weights/model_state-110000.th.
#      pretrained_weights/stable-diffusion-v1-5/ is passed as --sd when present (only used for parts the
#      checkpoint lacks). The cache is keyed by the checkpoint's name, size and modification time;
#      $MAGICPOSE_CONVERT_ARGS adds arguments to `magicpose convert magicdance` (e.g. "--dtype float16").
set -euo pipefail
cd "$(dirname "$0")/.."
PIPELINE=${MAGICPOSE_PIPELINE:-pretrained_weights/MagicPose}
CACHE=${MAGICPOSE_CACHE:-pretrained_weights/.converted}
SD=pretrained_weights/stable-diffusion-v1-5
if [ $# -lt 2 ]; then
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
  exit 1
fi
ref=$1; poses=$2; shift 2
out=${1:-outputs/animate/$(basename "${ref%.*}")_$(basename "${poses%.*}")}
[ $# -gt 0 ] && shift

PY=.venv/bin/python
[ -x "$PY" ] || PY=python3

complete() {  # a pipeline folder with every component
  local dir=$1 sub
  for sub in unet appearance_unet controlnet vae text_encoder tokenizer scheduler; do
    [ -d "$dir/$sub" ] || return 1
  done
}

if ! complete "$PIPELINE"; then
  ckpt=${MAGICPOSE_CHECKPOINT:-}
  if [ -z "$ckpt" ]; then
    for candidate in pretrained_weights/model_state-110000.safetensors pretrained_weights/model_state-110000.th; do
      if [ -f "$candidate" ]; then ckpt=$candidate; break; fi
    done
  fi
  if [ -z "$ckpt" ] || [ ! -f "$ckpt" ]; then
    echo "error: no MagicPose weights. Looked for:" >&2
    echo "  $PIPELINE/ (a converted pipeline folder: unet/ appearance_unet/ controlnet/ vae/ text_encoder/ tokenizer/ scheduler/)" >&2
    echo "  ${ckpt:-pretrained_weights/model_state-110000.th} (the original checkpoint, converted on first use)" >&2
    cat >&2 <<MSG
Put the original checkpoint under pretrained_weights/ (see pretrained_weights/README.md):
  pretrained_weights/model_state-110000.th        MagicPose final checkpoint (non-commercial research licence)
or convert it once yourself:
  magicpose convert magicdance --checkpoint pretrained_weights/model_state-110000.th --out $PIPELINE
MSG
    exit 1
  fi
  stamp=$("$PY" -c 'import os, sys; s = os.stat(sys.argv[1]); print(f"{s.st_size}-{int(s.st_mtime)}")' "$ckpt")
  name=$(basename "$ckpt"); name=${name%.*}
  PIPELINE=$CACHE/$name-$stamp
  if ! complete "$PIPELINE"; then
    echo "converting $ckpt into $PIPELINE (once; later runs reuse it)" >&2
    args=(--checkpoint "$ckpt" --out "$PIPELINE" --overwrite)
    [ -d "$SD" ] && args+=(--sd "$SD")
    # shellcheck disable=SC2206  # word-splitting of the extra arguments is intended
    args+=(${MAGICPOSE_CONVERT_ARGS:-})
    mkdir -p "$CACHE"
    "$PY" -m magicpose convert magicdance "${args[@]}" >&2
  fi
fi

# model.pretrained goes in through a config overlay: `key=value` arguments must stay last for argparse.
overlay=$(mktemp "${TMPDIR:-/tmp}/magicpose-weights.XXXXXX.yaml")
trap 'rm -f "$overlay"' EXIT
printf 'model:\n  pretrained: "%s"\n' "$(cd "$PIPELINE" && pwd)" > "$overlay"
"$PY" -m magicpose animate --config configs/magicpose/inference.yaml --config "$overlay" \
  --reference "$ref" --poses "$poses" --out "$out" "$@"
