#!/usr/bin/env bash
# Set up xomni on a fresh machine: a virtual environment in .venv with the CPU build of torch and everything else.
# Idempotent: a second run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first and pinned: an unpinned torch (or one pulled in by another package) would be a multi-GB CUDA build
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[test]"
.venv/bin/python -c "import torch, transformers, diffusers, rapidocr; print('xomni environment ready: torch', torch.__version__)"
