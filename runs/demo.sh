#!/usr/bin/env bash
# The main job on the shipped tiny checkpoint (checkpoints/tiny), about 45 s on a 2-core CPU:
#   1. image -> text: a held-out scene of the synthetic world (its ground truth printed by `xomni render`), and the
#      AR model's answers to questions about it;
#   2. text -> image: the AR model draws 4 images for a prompt (semantic tokens -> diffusion decoder);
#   3. held-out scenes reconstructed through the tokens and read by the OCR judge (grid.png, metrics.json).
#   OUT  where the results go (default out/demo); INDEX the held-out scene (default 3); PROMPT what to draw
set -euo pipefail
cd "$(dirname "$0")/.."
X=".venv/bin/xomni"
OUT=${OUT:-out/demo}
INDEX=${INDEX:-3}
PROMPT=${PROMPT:-"a yellow hexagon, and a poster that says \"body space\""}
[ -f checkpoints/tiny/ar/model.safetensors ] || {
    echo "no shipped checkpoint in checkpoints/tiny: build one with bash runs/cpu_tiny.sh"; exit 1; }

mkdir -p "$OUT"
$X render --split heldout --index "$INDEX" --out "$OUT/scene.png" | tee "$OUT/scene.json"
# the scene's own questions (their true answers are in scene.json), answered by the AR model from the image alone
mapfile -t QUESTIONS < <(.venv/bin/python -c \
    'import json, sys; print("\n".join("--question\n" + q for q, _ in json.load(open(sys.argv[1]))["questions"]))' \
    "$OUT/scene.json")
$X understand --image "$OUT/scene.png" "${QUESTIONS[@]}"
$X generate --prompt "$PROMPT" --out "$OUT/generate" --n 4 --seed 0
echo "drew 4 images for '$PROMPT': $OUT/generate/0000.png ... 0003.png"
$X eval reconstruction --n 16 --utilization-n 256 --out "$OUT/reconstruction"
echo "16 held-out scenes through the tokens (original | reconstruction, what the OCR read): $OUT/reconstruction/grid.png"
