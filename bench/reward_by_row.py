"""Does GRPO's reward pay for objects drawn lower in the image? The height of a rollout's objects against its
advantage within its group, on GRPO's own prompts.

    .venv/bin/python bench/reward_by_row.py --checkpoint out/recipe34/candidate [--steps 2]

Prompts: `rl_prompts` at steps 1000.. (never a run's) with the recipe's scene mix, text and no text as GRPO draws
them; G rollouts each (min-p 0.03, no CFG, GRPO's 8 decoder steps) scored by the reward's components that weigh
(`total`: their weighted mean with the tiny preset's weights, GRPO's reward). A rollout's height: the mean of its
judged objects' centres (`reward_judge`), 0 at the top and 1 at the bottom. Prints, for prompts with text and
without, the correlation between a rollout's height less its group's mean height and its advantage
(`xomni.rl.grpo.group_advantages` over all G rollouts of the group, before `--neg-scale`), over the rollouts with
objects in the groups whose every rollout has the component: above 0, within a group the lower rollouts are paid
more. About 110-128 rollouts a row: a correlation's standard error is about 0.09.
"""

from __future__ import annotations

import argparse
import math

import torch

from xomni.engine import Sampling
from xomni.pipeline import Pipeline
from xomni.rewards import combine, reward_judge
from xomni.rewards.pool import RewardPool
from xomni.rl.grpo import group_advantages
from xomni.stages.train_grpo import PRESETS, Config, reward_weights, rl_prompts, rollout_shape, sample_and_submit

SCENE_MIX = "single=1,count=1,two=2,relation=2"  # runs/cpu_tiny_rl.sh's


def correlation(heights: list, values: list, groups: list[list[int]]) -> tuple[int, float | None]:
    """(rollouts used, corr(height less its group's mean height, advantage)) over the groups (lists of rollout
    indices) whose every value is finite, and their rollouts with a height."""
    xs, advs = [], []
    for group in groups:
        if not all(values[i] is not None and math.isfinite(values[i]) for i in group):
            continue
        adv = group_advantages(torch.tensor([[float(values[i]) for i in group]]))[0][0]
        idx = [k for k, i in enumerate(group) if heights[i] is not None]
        if len(idx) < 2:
            continue
        mean = sum(heights[group[k]] for k in idx) / len(idx)
        xs += [heights[group[k]] - mean for k in idx]
        advs += [float(adv[k]) for k in idx]
    if len(xs) < 3 or min(xs) == max(xs) or min(advs) == max(advs):
        return len(xs), None
    return len(xs), torch.corrcoef(torch.tensor([xs, advs]))[0, 1].item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="checkpoints/tiny")
    ap.add_argument("--steps", type=int, default=2, help="GRPO steps' prompts to use (16 each)")
    ap.add_argument("--rollouts", type=int, default=PRESETS["tiny"]["rollouts"], help="G")
    args = ap.parse_args()
    G, cfg = args.rollouts, Config()
    pipe = Pipeline.from_pretrained(args.checkpoint)
    judge = reward_judge()
    pairs = [p for step in range(1000, 1000 + args.steps)
             for p in rl_prompts(step, PRESETS["tiny"]["prompts_per_step"], cfg.text_share, 0, scene_mix=SCENE_MIX)]
    pool = RewardPool(("rapidocr",), workers=0)
    images: list = []
    _, _, _, pending, _ = sample_and_submit(pipe, pairs, G, Sampling(temperature=1.0, min_p=PRESETS["tiny"]["min_p"]),
                                            8, pool, chunks=1, seed=(0, "reward_by_row"),
                                            shape=rollout_shape(PRESETS["tiny"]["size"]), keep_images=images)
    parts, _ = pool.gather(pending)
    weights = reward_weights(cfg, tuple(parts))
    parts = {k: v for k, v in parts.items() if weights.get(k)}  # components that weigh nothing are not GRPO's
    parts["total"], _ = combine(parts, weights)
    heights = []
    for im in images:
        objects = judge.objects(im)
        heights.append(sum((o.box[1] + o.box[3]) / 2 for o in objects) / len(objects) / im.size[1] if objects else None)
    print(f"{args.checkpoint}: {len(pairs)} prompts x {G} rollouts\n")
    print("| prompts | component | rollouts used | corr(height in its group, advantage) |")
    print("|---|---|---|---|")
    for kind, has_text in (("text", True), ("no text", False)):
        groups = [list(range(g * G, (g + 1) * G)) for g, (scene, _) in enumerate(pairs)
                  if (scene.text is not None) == has_text]
        for name, values in parts.items():
            n, c = correlation(heights, values, groups)
            if n:
                print(f"| {kind} | {name} | {n} | {'-' if c is None else f'{c:+.3f}'} |")


if __name__ == "__main__":
    main()
