#!/usr/bin/env bash
# Set up xomni on a fresh machine: a virtual environment in .venv with the CPU build of torch and everything else.
# Idempotent: a second run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# System packages: Tesseract (English + simplified Chinese), the second OCR judge; Chromium, to look at reports.
# python3-venv: Debian's python3 makes no virtual environment without it.
APT_PACKAGES="python3-venv tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim chromium"
missing=""
for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq || true
  for p in $missing; do  # one at a time: a name this distribution lacks (Ubuntu's chromium is a snap) stops no other
    # everything else still works without one: the Tesseract judge and the report's browser test say what is missing
    $SUDO apt-get install -y -qq "$p" || echo "setup: could not install $p; install it with your package manager" >&2
  done
fi
# a venv whose creation failed (no python3-venv the first time) is made again rather than used without pip
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  rm -rf .venv
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first and pinned: an unpinned torch (or one pulled in by another package) would be a multi-GB CUDA build.
# Here pip's own configuration finds the CPU build of 2.13.0; where PyPI's default (CUDA) build would come instead,
# set TORCH_INDEX=https://download.pytorch.org/whl/cpu
.venv/bin/python -m pip install --quiet "torch==2.13.0" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}
.venv/bin/python -m pip install --quiet -e ".[test]"
.venv/bin/python -c "import torch, transformers, diffusers, rapidocr; print('xomni environment ready: torch', torch.__version__)"
command -v tesseract >/dev/null && tesseract --version | head -1 || true
