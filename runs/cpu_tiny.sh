#!/usr/bin/env bash
# The tiny recipe from nothing on this CPU:
#   tokenizer -> token shards -> decoder -> alignment LM on the shards -> eval reconstruction
#   -> unified AR model: pretrain1, pretrain2, pretrain3, sft, text phases -> eval suites -> checkpoints/tiny
# Every stage resumes from $OUT (default out/tiny) if interrupted; rerun the script to continue (a finished stage
# returns at once). Prints how long each stage took, and the recipe's time on the clock summed over every run of
# the script (and of runs/cpu_tiny_rl.sh on the same $OUT): $OUT/recipe_clock, one line a stage in
# $OUT/recipe_clock.log (runs/clock.sh). IMAGE_ONLY=1 stops after the image side.
#   IMAGE_SIDE=DIR  skips training the image side: DIR's tokenizer, text tokenizer, decoder and alignment LM (e.g. the
#                   shipped checkpoints/tiny) are used as they are; the shards are tokenized with DIR's tokenizer
#   DEST            where the result is published (default checkpoints/tiny)
#   BF16            auto / true / false: the AR phases' forward in bfloat16 (autocast); auto (default): where the CPU
#                   has native bf16 (AVX512-BF16 / AMX), where a step takes 0.57x the time (bench/ar_step.py)
set -euo pipefail
cd "$(dirname "$0")/.."
X=".venv/bin/xomni"
OUT=${OUT:-out/tiny}
DEST=${DEST:-checkpoints/tiny}
IMG=${IMAGE_SIDE:-$OUT}  # the folder holding tokenizer/, text_tokenizer.json, decoder/, alignment_lm/
source runs/clock.sh  # stamp: seconds this run, and the recipe's time summed over its resumes
clock_start "$OUT"

# the image side (issue 2)
if [ -z "${IMAGE_SIDE:-}" ]; then $X train tokenizer --preset tiny --out "$OUT"; stamp tokenizer; fi
$X tokenize --tokenizer "$IMG/tokenizer" --out "$OUT/shards" --split train --n 16384
$X tokenize --tokenizer "$IMG/tokenizer" --out "$OUT/shards" --split train --n 16384 --dense-text true; stamp tokenize
SHARDS="$OUT/shards/train_128x128,$OUT/shards/train-dense_128x128"
DEC=(--decoder "$IMG/decoder")
AR=(--text-tokenizer "$IMG/text_tokenizer.json" --tokenizer "$IMG/tokenizer" --shards "$SHARDS")
# generation samples: an object's first cell weighs 32 in the loss, its other cells 8 and a text cell 3, and
# GenEval's "a photo of ..." prompts go only to scenes without text (docs/unified.md, "Reading the prompt", "Run 8")
AR+=(--first-cell-weight 32 --object-cell-weight 8 --text-cell-weight 3 --photo-text-free true)
AR+=(--bf16 "${BF16:-auto}")

# From here every stage reads only the shards. The decoder first, on both cores (tokenizer + decoder are issue 2's
# time bar; docs/image_side.md, "Tokenizer and decoder, one after the other"): its patch prior fitted alone, then the
# transformer on what it leaves (recipe v5). Then the alignment LM on the frozen codes (no encoder) and the unified AR
# model in the paper's phases, each starting from the previous one's weights. The tiny LLM starts from the alignment
# LM (a Qwen2 of its shape that reads the tokens), where the paper's starts from Qwen2.5 (see xomni/stages/train_ar.py).
if [ -z "${IMAGE_SIDE:-}" ]; then
    $X train decoder --preset tiny --tokenizer "$OUT/tokenizer" --out "$OUT" --shards "$SHARDS" \
        --prior-flow-grad false --prior-first 2000 --steps 5500; stamp decoder
    $X train tokenizer --preset tiny --out "$OUT" --lm-only true --shards "$SHARDS" --steps 3500; stamp "alignment LM"
    # the image side's numbers (issue 2): reconstructions through the tokens, and the alignment LM's answers
    $X publish --run "$OUT" --dest "$OUT/candidate" "${DEC[@]}" --command "bash runs/cpu_tiny.sh"
    $X eval reconstruction --checkpoint "$OUT/candidate" --out "$OUT/eval" --n 256; stamp "eval reconstruction"
    METRICS=(--metrics "$OUT/eval/metrics.json")
else
    METRICS=()  # DIR's components keep the meta (and reconstruction metrics) they were published with
fi
if [ "${IMAGE_ONLY:-0}" = 1 ]; then exit 0; fi

$X train ar --phase pretrain1 "${AR[@]}" --out "$OUT/ar_pt1" --llm-init "$IMG/alignment_lm" --steps 200 --lr 1e-3
$X train ar --phase pretrain2 "${AR[@]}" --out "$OUT/ar_pt2" --init "$OUT/ar_pt1/model" --steps 1000 --lr 5e-4
$X train ar --phase pretrain3 "${AR[@]}" --out "$OUT/ar_pt3" --init "$OUT/ar_pt2/model" --steps 150 --lr 3e-4
$X train ar --phase sft       "${AR[@]}" --out "$OUT/ar_sft" --init "$OUT/ar_pt3/model" --steps 300 --lr 3e-4 \
    --final-lr 0; stamp "AR phases"
# Text: the model learns to copy the quoted letters into glyph cells only when text cells weigh 16 and, for a
# while, only text-dense scenes are drawn; then the mixture brings back scenes and understanding, with a sign's
# text answered in quotes (spelled). docs/unified.md, "The letter copy, learned (session 17)".
TEXT=(--phase sft --text-cell-weight 16 --lr 3e-4)
DENSE=(--shards "$OUT/shards/train-dense_128x128" --gen-share 1.0)
# ar_text1 reads the sft phase's data stream on from where ar_sft (300 steps) left it (--data-start)
$X train ar "${AR[@]}" "${TEXT[@]}" --out "$OUT/ar_text1" --init "$OUT/ar_sft/model" --steps 400 --final-lr 0 \
    --data-start 300
$X train ar "${AR[@]}" "${TEXT[@]}" "${DENSE[@]}" --out "$OUT/ar_text2" --init "$OUT/ar_text1/model" --steps 400 \
    --final-lr 0
$X train ar "${AR[@]}" "${TEXT[@]}" "${DENSE[@]}" --out "$OUT/ar_text3" --init "$OUT/ar_text2/model" --steps 1500 \
    --final-lr 1.0 --warmup 20
# the mixtures read that stream on from where ar_text1 (300 + 400) left it, so that no two runs on it draw the
# same samples (the session-34 rebuild's ar_text1 ran before --data-start and re-read ar_sft's 300 steps)
$X train ar "${AR[@]}" "${TEXT[@]}" --out "$OUT/ar_mix" --init "$OUT/ar_text3/model" --steps 600 --final-lr 0 \
    --warmup 20 --quote-text-answers true --data-start 700
# Chinese: the same copy learned for Chinese characters (2 x 2 glyph cells, 300 characters) only on Chinese
# text-dense scenes, then the mixture again, twice (docs/unified.md, "Session 22: the Chinese copy, learned")
$X train ar "${AR[@]}" "${TEXT[@]}" "${DENSE[@]}" --text-lang zh --out "$OUT/ar_zh" --init "$OUT/ar_mix/model" \
    --steps 1500 --final-lr 1.0 --warmup 20
$X train ar "${AR[@]}" "${TEXT[@]}" --out "$OUT/ar_mix2" --init "$OUT/ar_zh/model" --steps 600 --final-lr 0 \
    --warmup 20 --quote-text-answers true --data-start 1300
$X train ar "${AR[@]}" "${TEXT[@]}" --out "$OUT/ar_mix3" --init "$OUT/ar_mix2/model" --steps 600 --final-lr 0 \
    --warmup 20 --quote-text-answers true --data-start 1900; stamp "text phases"

$X publish --run "$IMG" --dest "$OUT/candidate" "${DEC[@]}" --ar "$OUT/ar_mix3/model" --command "bash runs/cpu_tiny.sh"
GENERATION=(synth-geneval synth-text-en synth-text-zh)
for suite in "${GENERATION[@]}"; do  # the model draws each item's prompt
    $X eval "$suite" --checkpoint "$OUT/candidate" --source model --out "$OUT/eval_$suite"
done
for suite in synth-vqa synth-pope; do  # the model answers questions about the held-out renders
    $X eval "$suite" --checkpoint "$OUT/candidate" --source renders --out "$OUT/eval_$suite"
done
# X-Omni's min-p 0.03 cuts the tiny model's object starts (docs/unified.md, "Sampling: min-p"): also the full softmax
for suite in "${GENERATION[@]}"; do
    $X eval "$suite" --checkpoint "$OUT/candidate" --source model --min-p 0 --out "$OUT/eval_${suite}_minp0"
done; stamp "eval suites"
# the SFT model is shipped twice: as the policy (ar/) until runs/cpu_tiny_rl.sh replaces it, and as sft/ar/, which
# the RL script starts from on a clone that has no $OUT
$X publish --run "$IMG" --dest "$DEST" "${DEC[@]}" --ar "$OUT/ar_mix3/model" --sft-ar "$OUT/ar_mix3/model" \
    --int8 true "${METRICS[@]}" --command "bash runs/cpu_tiny.sh"
stamp "recipe"
