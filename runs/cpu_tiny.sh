#!/usr/bin/env bash
# The tiny recipe from nothing on this CPU: tokenizer -> token shards -> decoder -> eval -> checkpoints/tiny.
# Every stage resumes from out/tiny if interrupted; rerun the script to continue. Prints how long each stage took.
set -euo pipefail
cd "$(dirname "$0")/.."
X=".venv/bin/xomni"
OUT=${OUT:-out/tiny}
t0=$(date +%s)
stamp() { echo "[cpu_tiny] $1 done after $(( $(date +%s) - t0 )) s"; }
$X train tokenizer --preset tiny --out "$OUT"; stamp tokenizer
$X tokenize --tokenizer "$OUT/tokenizer" --out "$OUT/shards" --split train --n 16384
$X tokenize --tokenizer "$OUT/tokenizer" --out "$OUT/shards" --split train --n 16384 --dense-text true; stamp tokenize
$X train decoder --preset tiny --tokenizer "$OUT/tokenizer" --out "$OUT" \
    --shards "$OUT/shards/train_128x128,$OUT/shards/train-dense_128x128"; stamp decoder
$X publish --run "$OUT" --dest "$OUT/candidate" --command "bash runs/cpu_tiny.sh"
$X eval reconstruction --checkpoint "$OUT/candidate" --out "$OUT/eval" --n 256; stamp eval
$X publish --run "$OUT" --dest checkpoints/tiny --metrics "$OUT/eval/metrics.json" --command "bash runs/cpu_tiny.sh"
stamp "recipe"
