"""Does GRPO's reward pay for objects drawn lower in the image? The height of a rollout's objects against its
advantage within its group, on GRPO's own prompts.

    .venv/bin/python bench/reward_by_row.py --checkpoint out/recipe34/candidate [--steps 2]

Prompts: `rl_prompts` at steps 1000.. (never a run's) with the recipe's scene mix, text and no text as GRPO draws
them; G rollouts each (min-p 0.03, no CFG, GRPO's 8 decoder steps) scored by the reward's components (the tiny
preset's weights; `total` is their weighted sum). A rollout's height: the mean of its judged objects' centres
(`reward_judge`), 0 at the top and 1 at the bottom. Prints, for prompts with text and without, each component's
correlation between height and the rollout's advantage within its group (GRPO's (r - mean) / std over the group's
rollouts that have objects): above 0, the reward favours lower objects.
"""

from __future__ import annotations

import argparse

import torch

from xomni.engine import Sampling
from xomni.pipeline import Pipeline
from xomni.rewards import combine, reward_judge
from xomni.rewards.pool import RewardPool
from xomni.stages.train_grpo import PRESETS, Config, reward_weights, rl_prompts, rollout_shape, sample_and_submit

SCENE_MIX = "single=1,count=1,two=2,relation=2"  # runs/cpu_tiny_rl.sh's


def correlation(heights: list, values: list, groups: list[list[int]]) -> tuple[int, float | None]:
    """(rollouts used, corr(height, advantage)) over the groups (lists of rollout indices) with at least two
    rollouts that have both a height and a value, and unequal values."""
    xs, advs = [], []
    for group in groups:
        idx = [i for i in group if heights[i] is not None and values[i] is not None]
        r = torch.tensor([float(values[i]) for i in idx])
        if len(idx) < 2 or r.std() == 0:
            continue
        xs += [heights[i] for i in idx]
        advs += ((r - r.mean()) / r.std()).tolist()
    if len(xs) < 3:
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
    parts["total"], _ = combine(parts, reward_weights(cfg, tuple(parts)))
    heights = []
    for im in images:
        objects = judge.objects(im)
        heights.append(sum((o.box[1] + o.box[3]) / 2 for o in objects) / len(objects) / im.size[1] if objects else None)
    print(f"{args.checkpoint}: {len(pairs)} prompts x {G} rollouts\n")
    print("| prompts | component | rollouts with objects | corr(height, advantage) |")
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
