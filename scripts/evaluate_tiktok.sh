#!/usr/bin/env bash
# Score a `magicpose infer-tiktok` output folder with the TikTok protocol (DisCo's, and the fixed one).
#   bash scripts/evaluate_tiktok.sh RUN_DIR [extra magicpose evaluate args...]
# e.g.
#   bash scripts/evaluate_tiktok.sh outputs/tiktok_test                      # -> outputs/tiktok_test/metrics.json
#   bash scripts/evaluate_tiktok.sh outputs/tiktok_test --gt outputs/tiktok_test/gt_recon --out recon.json
#   bash scripts/evaluate_tiktok.sh outputs/tiktok_test --protocol disco --size 512 --frechet fast
# Feature-network weights: $MAGICPOSE_EVAL_WEIGHTS (default pretrained_weights/eval); which files, from where:
# docs/evaluation.md. Metrics whose file is missing are skipped (and named); the others still run.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
  echo "usage:" >&2
  sed -n '3,7p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 1
fi
run=$1; shift
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
# Later options win in argparse, so extra --gt / --out arguments replace these defaults.
exec "$PY" -m magicpose evaluate --pred "$run/pred" --gt "$run/gt" --out "$run/metrics.json" \
  --weights-dir "${MAGICPOSE_EVAL_WEIGHTS:-pretrained_weights/eval}" "$@"
