#!/usr/bin/env bash
# The RL part of the tiny recipe, after runs/cpu_tiny.sh: GRPO from its SFT model with three seeds, then the paper's
# claims measured (xomni eval claims), then the first seed's policy shipped as checkpoints/tiny.
#   OUT     the recipe's run folder (default out/tiny): its candidate/ is the SFT model, and the GRPO runs go in it
#   SFT     the SFT model to start from (default: $OUT/candidate when runs/cpu_tiny.sh made one, else the SFT model
#           shipped beside the policy, $DEST/sft, so the RL part runs on a fresh clone without rebuilding it;
#           checkpoints/tiny/sft is the SFT model its policy ar/ started from: README, "What the shipped checkpoint")
#   SEEDS   GRPO seeds (default "0 1 2"); STEPS per run (default 100)
#   DEST    where the first seed's policy is published (default checkpoints/tiny)
# Every stage resumes if interrupted; rerun the script to continue. Prints how long each part took; the recipe's
# clock ($OUT/recipe_clock, runs/clock.sh) goes on from runs/cpu_tiny.sh's, so its last stamp is the whole recipe's.
set -euo pipefail
cd "$(dirname "$0")/.."
X=".venv/bin/xomni"
OUT=${OUT:-out/tiny}
SEEDS=${SEEDS:-0 1 2}
STEPS=${STEPS:-100}
DEST=${DEST:-checkpoints/tiny}
if [ -z "${SFT:-}" ]; then
    SFT="$OUT/candidate"
    [ -d "$SFT/ar" ] || SFT="$DEST/sft"
fi
source runs/clock.sh  # stamp: seconds this run, and the recipe's time summed over its resumes
clock_start "$OUT"
if [ ! -d "$SFT/ar" ]; then
    echo "no SFT model in $SFT: run runs/cpu_tiny.sh first (it makes $OUT/candidate and $DEST/sft)"; exit 1
fi
echo "GRPO from the SFT model in $SFT"

RUNS=()
for seed in $SEEDS; do
    # the tiny preset (16 prompts x 8 rollouts a step, lr 5e-5, min-p 0.03); rewards: OCR of the asked-for text +
    # scene-judge alignment with its clutter penalty and sign question (docs/unified.md); the KL to the reference
    # over the image head's whole softmax (--kl full: docs/unified.md, "Session 23"); the negative advantages at three
    # quarters' weight (--neg-scale 0.75: at 1 the policy's text rollouts derail, "Session 26"; at 0.5 it drew one
    # object whatever was asked, "Session 38"; both in docs/unified.md); the prompts
    # without text split 1 : 1 : 2 : 2 between one object, one counted group, two groups and two objects in a
    # relation (--scene-mix: with the world's split, 0.55 of 8 a step asked for two single objects and the policy
    # learned to draw one; docs/unified.md, "Session 31"); the held-out suites every 50 steps go into the run's log
    $X train grpo --preset tiny --checkpoint "$SFT" --out "$OUT/grpo_s$seed" --seed "$seed" --steps "$STEPS" \
        --eval-every 50 --kl full --neg-scale 0.75 --scene-mix single=1,count=1,two=2,relation=2
    stamp "GRPO seed $seed"
    RUNS+=("$OUT/grpo_s$seed")
done
RL=$(IFS=,; echo "${RUNS[*]}")
$X eval claims --sft "$SFT" --rl "$RL" --out "$OUT/claims" --n 100 --cfg-scales 1,1.5,3 --min-p 0.03; stamp claims
first=${RUNS[0]}  # the first seed, whatever it scored: no pick of the best
METRICS=()  # the image side's reconstruction metrics, where this recipe trained it (otherwise publish keeps the
            # ones the shipped decoder's meta.json carries)
if [ -f "$OUT/eval/metrics.json" ]; then METRICS=(--metrics "$OUT/eval/metrics.json"); fi
$X publish --run "$SFT" --dest "$DEST" --decoder "$SFT/decoder" --ar "$first/ar" --sft-ar "$SFT/ar" --int8 true \
    "${METRICS[@]}" --command "bash runs/cpu_tiny.sh && bash runs/cpu_tiny_rl.sh"
stamp "RL recipe"
