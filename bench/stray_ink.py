"""What the alignment reward's ink term charges images that do what they are asked (xomni/rewards, `stray_ink`).

    .venv/bin/python bench/stray_ink.py [--n 64] [--checkpoint checkpoints/tiny] [--steps 8]

The first --n held-out scenes without text and the first --n with text are rendered, and reconstructed through the
checkpoint's tokens and decoder (`--steps` sampling steps, seed 0, as GRPO decodes its rollouts). For each source and
kind the table gives the stray-ink share (ink that no object the scene judge finds explains, nor for text scenes the
plate's colours; no allowance for objects it misses) and the alignment reward with the scene itself as the prompt
(which allows the missed objects' areas): a faithful image should lose little, and what it loses is the judge
missing an object the decoder drew too loosely.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from xomni.data.batches import pixels_of
from xomni.data.world import WorldConfig, make_scene, render
from xomni.eval.scene_judge import SceneJudge
from xomni.pipeline import ImagePipeline, to_image
from xomni.rewards import Rollout, alignment, stray_ink, text_blends


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=64, help="scenes of each kind (without text, with text)")
    p.add_argument("--checkpoint", default="checkpoints/tiny", help="tokenizer + decoder for the reconstructions")
    p.add_argument("--steps", type=int, default=8, help="decoder sampling steps (GRPO's default: 8)")
    args = p.parse_args()

    kinds = {"no text": [], "text": []}
    for i in range(100_000):
        s = make_scene(WorldConfig(), "heldout", i)
        kind = kinds["text" if s.text is not None else "no text"]
        if len(kind) < args.n:
            kind.append(s)
        if all(len(v) == args.n for v in kinds.values()):
            break
    judge, pipe = SceneJudge(), ImagePipeline.from_pretrained(args.checkpoint)
    print("| source | scenes | n | stray ink: mean | median | 90th pct | alignment reward: mean |")
    print("|---|---|---|---|---|---|---|")
    for source in ("renders", "reconstructions"):
        for kind, scenes in kinds.items():
            images = [render(s) for s in scenes]
            if source == "reconstructions":
                gen = torch.Generator().manual_seed(0)
                images = [to_image(x) for x in pipe.decode(pipe.encode(pixels_of(images)), steps=args.steps,
                                                           generator=gen)]
            stray = np.array([stray_ink(im, [o.box for o in judge.objects(im)], text_blends(s))
                              for s, im in zip(scenes, images)])
            reward = alignment([Rollout(s, im) for s, im in zip(scenes, images)], judge)
            print(f"| {source} | {kind} | {len(scenes)} | {stray.mean():.3f} | {np.median(stray):.3f} | "
                  f"{np.quantile(stray, 0.9):.3f} | {np.mean(reward):.3f} |")


if __name__ == "__main__":
    main()
