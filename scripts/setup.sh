#!/usr/bin/env bash
# Create .venv with the pinned CPU stack (if missing or out of date) and install magicpose into it.
# Idempotent: a second run with unchanged requirements only checks a stamp and exits.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MAGICPOSE_VENV:-.venv}
PY=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi

stamp="$VENV/.magicpose-stamp"
want=$(cat requirements/cpu.txt requirements/dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VENV/bin/python" -c "import magicpose" 2>/dev/null; then
  echo "[setup] $VENV is up to date"
  exit 0
fi

echo "[setup] installing the pinned stack into $VENV (about 2 minutes the first time)"
# torch goes in the same command as everything else: installed alone, pytorch-lightning would pull a CUDA build.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements/cpu.txt -r requirements/dev.txt
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
echo "$want" > "$stamp"
echo "[setup] done: $("$VENV/bin/python" -c 'import torch, diffusers; print("torch", torch.__version__, "diffusers", diffusers.__version__)')"
