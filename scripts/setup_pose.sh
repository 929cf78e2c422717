#!/usr/bin/env bash
# Create .venv-pose, the pose-extraction environment (mediapipe + onnxruntime, no torch), if missing or out
# of date, and install magicpose into it without its dependencies.
# Idempotent: a second run with unchanged requirements only checks a stamp and exits.
# mediapipe 0.10.21 needs numpy<2, protobuf<5 and opencv-contrib-python, which clash with .venv: hence a venv
# of its own. Use it as `.venv-pose/bin/magicpose extract-pose ...` / `prepare-video ...`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MAGICPOSE_POSE_VENV:-.venv-pose}
PY=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup-pose] creating $VENV"
  "$PY" -m venv "$VENV"
fi

stamp="$VENV/.magicpose-pose-stamp"
want=$(cat requirements/pose.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
    && "$VENV/bin/python" -c "import mediapipe, onnxruntime, magicpose.pose" 2>/dev/null; then
  echo "[setup-pose] $VENV is up to date"
  exit 0
fi

echo "[setup-pose] installing the pinned pose stack into $VENV (about a minute the first time)"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements/pose.txt
# --no-deps: magicpose's own dependencies (torch, diffusers, numpy 2, ...) must not enter this venv.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
echo "$want" > "$stamp"
echo "[setup-pose] done: $("$VENV/bin/python" -c 'import mediapipe, numpy, onnxruntime; print("mediapipe", mediapipe.__version__, "numpy", numpy.__version__, "onnxruntime", onnxruntime.__version__)')"
