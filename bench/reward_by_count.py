"""GRPO's alignment reward by how many objects the scene judge finds against how many the prompt asks for, per
compositional task, on GRPO's own prompts without text: the incentive a policy meets when it draws fewer or more.

    .venv/bin/python bench/reward_by_count.py --checkpoint out/recipe34/candidate [--steps 2] [--groups]

Prompts: `rl_prompts` at steps 1000.. (never a run's: runs use 0..steps-1) with the recipe's scene mix, the scenes
without text; G rollouts each (min-p 0.03, no CFG, GRPO's 8 decoder steps), each judged by the reward's alignment
with its prompt (`alignment`, the rollout's own prompt). A rollout's bucket: fewer objects found than the prompt
asks for (<), as many (=) or more (>); a prompt that names no object asks none. `--groups` prints each group's
(found, alignment) pairs too.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from xomni.data.world import scene_task
from xomni.engine import Sampling
from xomni.pipeline import Pipeline
from xomni.rewards import Rollout, alignment, reward_judge
from xomni.rewards.pool import RewardPool
from xomni.stages.train_grpo import PRESETS, Config, rl_prompts, rollout_shape, sample_and_submit

SCENE_MIX = "single=1,count=1,two=2,relation=2"  # runs/cpu_tiny_rl.sh's


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="checkpoints/tiny")
    ap.add_argument("--steps", type=int, default=2, help="GRPO steps' prompts to use (8 without text each)")
    ap.add_argument("--rollouts", type=int, default=PRESETS["tiny"]["rollouts"], help="G")
    ap.add_argument("--groups", action="store_true", help="print every group's (found, alignment) too")
    args = ap.parse_args()
    G = args.rollouts
    pipe = Pipeline.from_pretrained(args.checkpoint)
    judge = reward_judge()
    pairs = [p for step in range(1000, 1000 + args.steps)
             for p in rl_prompts(step, PRESETS["tiny"]["prompts_per_step"], Config().text_share, 0,
                                scene_mix=SCENE_MIX)
             if p[0].text is None]
    images: list = []
    sample_and_submit(pipe, pairs, G, Sampling(temperature=1.0, min_p=PRESETS["tiny"]["min_p"]), 8,
                      RewardPool(("rapidocr",), workers=0), chunks=1, seed=(0, "reward_by_count"),
                      shape=rollout_shape(PRESETS["tiny"]["size"]), keep_images=images)
    buckets, groups = defaultdict(list), defaultdict(list)
    for i, image in enumerate(images):
        scene, prompt = pairs[i // G]
        r = Rollout(scene, image, prompt=prompt)
        asked = len(scene.objects) if "objects" in r.said() else 0
        found = len(judge.objects(image))
        a = alignment([r], judge)[0]
        buckets[(scene_task(scene), "<" if found < asked else "=" if found == asked else ">")].append(a)
        groups[i // G].append(f"{found}:{a:.2f}" if a is not None else f"{found}:-")
    print(f"{args.checkpoint}: {len(pairs)} prompts x {G} rollouts\n")
    print("| task | objects found vs asked | rollouts | mean alignment |")
    print("|---|---|---|---|")
    for (task, rel), values in sorted(buckets.items()):
        v = [x for x in values if x is not None]
        print(f"| {task} | {rel} | {len(v)} | {sum(v) / len(v):.3f} |" if v else f"| {task} | {rel} | 0 | - |")
    if args.groups:
        for g, pairs_ in sorted(groups.items()):
            print(scene_task(pairs[g][0]), repr(pairs[g][1][:70]), pairs_)


if __name__ == "__main__":
    main()
