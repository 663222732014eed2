"""Which way does GRPO push a policy on drawing the asked sign? Its own rollouts, scored as GRPO scores them.

    .venv/bin/python bench/sign_choice.py --checkpoints out/exp17/mix/candidate,out/s20/grpo_s1 [--prompts 24]

`bench/reward_holes.py` scores clean renders of the alternatives; a policy's rollouts are not clean. Here each
checkpoint samples G rollouts (`--rollouts`, min-p `--min-p`, no CFG) for --prompts training-split prompts per
language that ask for text on a coloured plate (the prompt names the text: the `photo` level, which does not, is
left out), decodes them as GRPO does (`--decoder-steps`), and scores them with the stage's default reward (OCR +
alignment by `reward_judge()`, 1 : 1). Each rollout is split by `sign_drawn` (a plate covering at least SIGN_SHARE of
the asked box: of the asked colour when the prompt names it, of any colour but white when it does not). Printed
per checkpoint and language:

- the share of rollouts with the sign drawn, and the groups that have both kinds (only these move the choice);
- over those mixed groups, the mean reward, OCR and alignment of the rollouts with and without the sign;
- the mean GRPO advantage (`group_advantages`) of the rollouts with the sign in the mixed groups: above 0, the
  update pushes toward drawing it; below 0, toward leaving it out.

A second table asks which way the reward pushes on the sign's size, over the rollouts with the sign in groups that
have at least three: the sign's size is `sign_extent` (its plate's bounding box as a share of the asked box, at most
1; of the prompt's plate colour or, when it names none, any coloured plate). Alignment is split into its questions
(the share answered yes, the alignment reward with no clutter penalty) and its penalty (`CLUTTER_PENALTY` x clutter,
and the -CLUTTER_PENALTY of an image that answers none of the asked objects' questions). Printed per checkpoint
and language: the median size; the within-group correlation (values less their group's mean over the signed
rollouts, pooled) of size with the reward, OCR, the questions and the penalty; and the mean advantage (over the
whole group) of the signed rollouts above their group's median size less that of those below it: above 0, GRPO
pushes toward bigger signs.
"""

from __future__ import annotations

import argparse
import math
import random

import torch

from xomni.data.world import WorldConfig, make_scene, prompt_aspects, prompts
from xomni.engine import Sampling
from xomni.pipeline import Pipeline
from xomni import rewards
from xomni.rewards import Rollout, alignment, combine, reward_judge, sign_drawn, sign_extent
from xomni.rewards.pool import RewardPool
from xomni.rl.grpo import group_advantages
from xomni.stages.train_grpo import PRESETS, Config, reward_weights, rollout_shape, sample_and_submit


def sign_prompts(lang: str, n: int, seed: int) -> list[tuple]:
    """n (scene, prompt) pairs from the training split: text in `lang` on a coloured plate, a level that names it."""
    rng = random.Random(f"sign_choice/{seed}/{lang}")
    out = []
    while len(out) < n:
        scene = make_scene(WorldConfig(), "train", rng.randrange(10**7))
        if scene.text is None or scene.text.lang != lang or scene.text.plate == "white":
            continue
        levels = {k: v for k, v in prompts(scene).items() if k != "photo"}
        out.append((scene, levels[rng.choice(sorted(levels))]))
    return out


def questions_only(rollouts: list[Rollout]) -> list[float | None]:
    """The alignment reward without its clutter penalty: the share of the prompt's questions answered yes."""
    penalty, rewards.CLUTTER_PENALTY = rewards.CLUTTER_PENALTY, 0.0
    try:
        return alignment(rollouts, reward_judge())
    finally:
        rewards.CLUTTER_PENALTY = penalty


def within_corr(x: torch.Tensor, y: torch.Tensor, keep: torch.Tensor) -> float:
    """Pearson correlation of x and y (P, G) over the kept entries, each less its row's mean over the kept ones."""
    k = keep & torch.isfinite(y)
    n = k.sum(1, keepdim=True).clamp(min=1)
    dx = torch.where(k, x - (x * k).nansum(1, keepdim=True) / n, 0.0)
    dy = torch.where(k, y - torch.where(k, y, 0.0).sum(1, keepdim=True) / n, 0.0)
    den = (dx.pow(2).sum() * dy.pow(2).sum()).sqrt()
    return float((dx * dy).sum() / den) if den > 0 else math.nan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoints", required=True, help="comma-separated checkpoint folders (a GRPO run is one)")
    ap.add_argument("--prompts", type=int, default=24, help="prompts per language")
    ap.add_argument("--rollouts", type=int, default=PRESETS["tiny"]["rollouts"], help="G")
    ap.add_argument("--min-p", type=float, default=PRESETS["tiny"]["min_p"])
    ap.add_argument("--decoder-steps", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    G = args.rollouts
    pool = RewardPool(("rapidocr",), workers=0)
    sizes = []
    print("| checkpoint | text | rollouts with the sign | mixed groups | reward with / without | OCR with / without "
          "| alignment with / without | mean advantage of a drawn sign |")
    print("|---|---|---|---|---|---|---|---|")
    for ckpt in args.checkpoints.split(","):
        pipe = Pipeline.from_pretrained(ckpt)
        for lang in ("en", "zh"):
            pairs = sign_prompts(lang, args.prompts, args.seed)
            images: list = []
            _, _, _, pending, _ = sample_and_submit(pipe, pairs, G, Sampling(temperature=1.0, min_p=args.min_p),
                                                    args.decoder_steps, pool, chunks=1, seed=(args.seed, "sign_choice"),
                                                    shape=rollout_shape(PRESETS["tiny"]["size"]),
                                                    keep_images=images)
            parts, _ = pool.gather(pending)
            rewards, _ = combine(parts, reward_weights(Config(), pool.components))
            r = torch.tensor(rewards).reshape(-1, G)
            sign = torch.tensor([bool(sign_drawn(im, scene, "plate" in prompt_aspects(scene, prompt)))
                                 for i, im in enumerate(images) for scene, prompt in [pairs[i // G]]]).reshape(-1, G)
            mixed = sign.any(1) & ~sign.all(1) & torch.isfinite(r).all(1)
            row = f"| {ckpt} | {lang} | {sign.float().mean():.2f} | {int(mixed.sum())} of {len(pairs)} |"
            if mixed.any():
                adv, _ = group_advantages(r[mixed])
                s = sign[mixed]
                components = [torch.tensor([math.nan if x is None else x for x in parts[k]]).reshape(-1, G)
                              for k in ("ocr", "alignment")]  # a component that does not apply: NaN, left out
                for vals in (r, *components):
                    v = vals[mixed]
                    row += f" {v[s].nanmean():.3f} / {v[~s].nanmean():.3f} |"
                row += f" {adv[s].mean():+.3f} |"
            else:
                row += " - | - | - | - |"
            print(row, flush=True)
            sizes.append(size_row(ckpt, lang, pairs, images, parts, r, sign, G))
    print("\n| checkpoint | text | signed rollouts in groups with 3+ | median size | size vs reward | vs OCR "
          "| vs questions | vs penalty | advantage: bigger half - smaller half |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(sizes))


def size_row(ckpt, lang, pairs, images, parts, r, sign, G) -> str:
    """The second table's row: which way the reward pushes on the size of a drawn sign."""
    rollouts = [Rollout(pairs[i // G][0], im, prompt=pairs[i // G][1]) for i, im in enumerate(images)]
    size = torch.tensor([sign_extent(ro.image, ro.scene, "plate" in ro.said()) for ro in rollouts]).reshape(-1, G)
    nan = lambda v: torch.tensor([math.nan if x is None else x for x in v]).reshape(-1, G)  # noqa: E731
    q = nan(questions_only(rollouts))
    ocr, align = nan(parts["ocr"]), nan(parts["alignment"])
    penalty = q - align
    keep = sign & (sign.sum(1, keepdim=True) >= 3) & torch.isfinite(r).all(1, keepdim=True)
    if not keep.any():
        return f"| {ckpt} | {lang} | 0 | - | - | - | - | - | - |"
    adv, _ = group_advantages(torch.where(torch.isfinite(r), r, 0.0))
    diffs = []
    for g in range(size.shape[0]):
        if keep[g].any():
            s, a = size[g][keep[g]], adv[g][keep[g]]
            big = s > s.median() if (s > s.median()).any() else s >= s.median()  # ties at the cap of 1
            if big.any() and (~big).any():
                diffs.append(float(a[big].mean() - a[~big].mean()))
    corr = [within_corr(size, v, keep) for v in (r, ocr, q, penalty)]
    return (f"| {ckpt} | {lang} | {int(keep.sum())} | {size[keep].median():.2f} | "
            + " | ".join(f"{c:+.2f}" for c in corr)
            + f" | {sum(diffs) / max(1, len(diffs)):+.3f} ({len(diffs)} groups) |")


if __name__ == "__main__":
    main()
