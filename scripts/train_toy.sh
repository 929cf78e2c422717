#!/usr/bin/env bash
# Train the toy model shipped in pretrained_weights/toy/ (about an hour on 2 CPU cores: 64 min here): the quickstart's path
# (toy data -> stage 1 -> stage 2 -> animate held-out dancers -> evaluate) at the TOY_MODEL scale of
# magicpose/toy/quickstart.py, then export it (fp16 safetensors, metrics.json with targets and ablations, SHA256SUMS).
#   bash scripts/train_toy.sh                        # writes outputs/toy-model/ and replaces pretrained_weights/toy/
#   bash scripts/train_toy.sh --export /tmp/my-toy   # any further `magicpose quickstart` option (see its --help)
# Use it without training: bash scripts/quickstart.sh --pretrained
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m magicpose quickstart --toy-model --no-check --out outputs/toy-model \
    --export pretrained_weights/toy "$@"
