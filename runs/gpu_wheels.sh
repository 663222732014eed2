#!/usr/bin/env bash
# Wheels for runs/gpu_check.sh on a GPU machine that has torch (and transformers, numpy, pillow, onnxruntime,
# opencv) but cannot fetch the rest of xomni's dependencies: run here, where pip reaches PyPI, for that machine's
# Python (PYVER, default 3.12) on x86-64 Linux; they land in .whl/ (ignored by git), to be carried there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${PYVER:-3.12}
mkdir -p .whl
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
for pkg in "diffusers>=0.35" "rapidocr>=3,<4" pyclipper shapely omegaconf antlr4-python3-runtime colorlog \
        importlib_metadata; do  # pyproject's ranges, and what they need that the GPU machine lacks
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
        "${PLATFORMS[@]}" -d .whl "$pkg"
done
ls -la .whl
