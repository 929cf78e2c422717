#!/usr/bin/env bash
# Make sure a headless Chromium from the OS packages is there for the browser test (tests/test_demo_browser.py,
# Playwright with executable_path = `command -v chromium`). Nothing downloads a browser build: never
# `playwright install`. Idempotent: with chromium on PATH it only says so.
# Debian/Ubuntu with apt-get (as root, or with sudo); elsewhere install chromium yourself, or point
# MAGICPOSE_CHROMIUM at a Chromium/Chrome binary.
set -euo pipefail
if [ -n "${MAGICPOSE_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1; then
  echo "[setup-browser] chromium: ${MAGICPOSE_CHROMIUM:-$(command -v chromium)}"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "[setup-browser] no chromium and no apt-get: install Chromium, or set MAGICPOSE_CHROMIUM; the browser test skips" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "[setup-browser] no chromium, and installing it needs root (apt-get install -y chromium); the browser test skips" >&2
    exit 0
  fi
fi
echo "[setup-browser] installing chromium from the OS packages (apt-get)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
echo "[setup-browser] done: $(chromium --version 2>/dev/null || command -v chromium)"
