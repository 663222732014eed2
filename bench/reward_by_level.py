"""GRPO's reward by prompt level, judged against the whole scene (as before session 21) and against what the prompt
says (`prompt_aspects`), on the same rollouts.

    .venv/bin/python bench/reward_by_level.py --checkpoint out/exp17/mix/candidate [--prompts 8]

For each kind of prompt GRPO draws (`rl_prompts`: scenes with text at the short, medium and dense levels, scenes
without text at the short, medium, dense and photo levels) --prompts training-split prompts, G rollouts each
(`--rollouts`, min-p `--min-p`, no CFG), decoded as GRPO decodes them; each rollout's OCR and alignment rewards (the
stage's default components and weights) computed twice: with the rollout's prompt, and with no prompt, which judges
the whole scene (its dense caption). Printed per kind and judging: mean reward, mean alignment over the rollouts
it applies to (a short prompt with text asks only whether a sign is there, and nothing when no coloured plate is
drawn), the share of those whose alignment is -CLUTTER_PENALTY (none of the asked objects found), the share of
groups whose rewards are all equal (no advantage: they teach nothing), over the groups without a failed (NaN)
reward, and how many groups had one (GRPO drops such a group whole).
"""

from __future__ import annotations

import argparse
import random

import torch

from xomni.data.world import WorldConfig, make_scene, prompts
from xomni.engine import Sampling
from xomni.eval.ocr import make_ocr_judge
from xomni.pipeline import Pipeline
from xomni.rewards import CLUTTER_PENALTY, Rollout, alignment, combine, ocr_accuracy, reward_judge
from xomni.rewards.pool import RewardPool
from xomni.stages.train_grpo import PRESETS, Config, reward_weights, rollout_shape, sample_and_submit

KINDS = [("text", "short"), ("text", "medium"), ("text", "dense"),
         ("scene", "short"), ("scene", "medium"), ("scene", "dense"), ("scene", "photo")]


def kind_prompts(kind: str, level: str, n: int, seed: int) -> list[tuple]:
    rng = random.Random(f"reward_by_level/{seed}/{kind}/{level}")
    out = []
    while len(out) < n:
        scene = make_scene(WorldConfig(), "train", rng.randrange(10**7))
        if (scene.text is not None) == (kind == "text") and level in prompts(scene):
            out.append((scene, prompts(scene)[level]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="checkpoints/tiny")
    ap.add_argument("--prompts", type=int, default=8, help="prompts of each kind")
    ap.add_argument("--rollouts", type=int, default=PRESETS["tiny"]["rollouts"], help="G")
    ap.add_argument("--min-p", type=float, default=PRESETS["tiny"]["min_p"])
    ap.add_argument("--decoder-steps", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    G = args.rollouts
    pipe = Pipeline.from_pretrained(args.checkpoint)
    pool = RewardPool(("rapidocr",), workers=0)
    weights = reward_weights(Config(), pool.components)
    judge, ocr = reward_judge(), [make_ocr_judge("rapidocr")]  # the pool's, in this process
    print("| prompts | judged against | reward | alignment | alignment at -0.5 | groups with equal rewards | "
          "groups dropped |")
    print("|---|---|---|---|---|---|---|")
    for kind, level in KINDS:
        pairs = kind_prompts(kind, level, args.prompts, args.seed)
        images: list = []
        _, _, _, pending, _ = sample_and_submit(pipe, pairs, G, Sampling(temperature=1.0, min_p=args.min_p),
                                                args.decoder_steps, pool, chunks=1, seed=(args.seed, kind, level),
                                                shape=rollout_shape(PRESETS["tiny"]["size"]), keep_images=images)
        said, _ = pool.gather(pending)
        whole = [Rollout(pairs[i // G][0], im) for i, im in enumerate(images)]  # no prompt: the whole scene
        scene_parts = {**said, "ocr": ocr_accuracy(whole, ocr), "alignment": alignment(whole, judge)}
        for name, parts in (("the whole scene", scene_parts), ("what the prompt says", said)):
            r = torch.tensor(combine(parts, weights)[0]).reshape(-1, G)
            a = [x for x in parts["alignment"] if x is not None]
            align = f"{sum(a) / len(a):.3f}" if a else "-"
            low = f"{sum(x == -CLUTTER_PENALTY for x in a) / len(a):.2f}" if a else "-"
            valid = torch.isfinite(r).all(1)  # GRPO drops a group with a failed reward whole
            flat = f"{(r[valid] == r[valid][:, :1]).all(1).float().mean():.2f}" if valid.any() else "-"
            print(f"| {kind}, {level} | {name} | {r.nanmean():.3f} | {align} | {low} | {flat} | {int((~valid).sum())} |",
                  flush=True)


if __name__ == "__main__":
    main()
