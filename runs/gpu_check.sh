#!/usr/bin/env bash
# The checks that need a GPU, as one short run on a machine with one: the tests marked `gpu`, which a machine
# without a CUDA device skips (every training stage on the GPU and resumed on the CPU, the pipeline and a GRPO step
# on the GPU, the engine on the GPU with a CPU generator).
#
#   bash runs/gpu_check.sh                 # where xomni and its dependencies are installed (runs/setup.sh)
#
# On a machine with torch but without the rest of xomni's dependencies and no network, first run
# `bash runs/gpu_wheels.sh` where pip can fetch: it puts the missing wheels in .whl/, which this script installs
# into /tmp/site (PY: the python whose torch sees the GPU; default python3, or .venv's when there is one).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
"$PY" -c "import torch; assert torch.cuda.is_available(), 'runs/gpu_check.sh needs a GPU that torch sees'; \
print('torch', torch.__version__, 'on', torch.cuda.get_device_name())"
"$PY" -m pytest -p no:cacheprovider -rs -m gpu tests/
