"""Rollouts that derail: where a policy's image head goes flat mid-image, what its reference says there, and what
the reward makes of them.

    .venv/bin/python bench/derail.py --checkpoints out/s22/zhmix/candidate,out/s22/grpo_s0 \
        --reference out/s22/zhmix/candidate [--show 2]

Each checkpoint samples G (`--rollouts`, GRPO's 8) rollouts of GRPO's 16 probe prompts (`rl_prompts` at step -1,
seed 0: half ask for text, the rest drawn by `--scene-mix`, the recipe's) as the stage samples them (`sample_and_submit`: temperature 1, min-p `--min-p`, no CFG,
decoded with 8 steps, scored by the stage's default reward), and one forward over those sequences gives its image
head's distribution at every position. A position is flat when its most likely code has probability below `--flat`
(0.1; the codebook has 4,096 codes); a rollout with at least `--derailed` (8) flat positions has derailed. Printed
per checkpoint:

- the share of flat positions, the derailed rollouts (all, then on prompts that ask for text / that do not);
- the entropy and the share of positions where min-p keeps more than 100 codes;
- on the same sequences, the reference's most likely code's probability at the checkpoint's flat positions and at
  its other positions, and its probability of the code sampled just before each derailed rollout's first flat
  position (first flat positions at the first image token, where the prompt leaves the background open, are left
  out);
- the mean reward of the derailed rollouts against the other rollouts of their groups: below them, GRPO pushes
  every code a derailed rollout sampled down.

With --show N, the N rollouts with the most flat positions, read around their first flat one: at each position the
policy's and the reference's top probability and their probabilities of the code the policy sampled.
"""

from __future__ import annotations

import argparse

import torch

from xomni.engine import DERAIL_POSITIONS, FLAT, Sampling, left_pad
from xomni.pipeline import Pipeline
from xomni.rewards import combine
from xomni.rewards.pool import RewardPool
from xomni.stages.train_grpo import (PRESETS, Config, image_logprobs, reward_weights, rl_prompts, rollout_shape,
                                    sample_and_submit)


def image_probs(pipe: Pipeline, ids: torch.Tensor, mask: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """(B, n, K) image-head probabilities at the n image positions of left-padded sequences (codes: B n)."""
    *_, logp_all = image_logprobs(pipe.model, ids, mask, codes.shape[1], codes, pipe.engine.grid(ids), full=True)
    return logp_all.exp()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoints", required=True, help="comma-separated checkpoint folders (a GRPO run is one)")
    ap.add_argument("--reference", required=True, help="the checkpoint the policies started from")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--rollouts", type=int, default=PRESETS["tiny"]["rollouts"], help="G, per prompt")
    ap.add_argument("--min-p", type=float, default=PRESETS["tiny"]["min_p"])
    ap.add_argument("--flat", type=float, default=FLAT, help="a position is flat below this top probability")
    ap.add_argument("--derailed", type=int, default=DERAIL_POSITIONS, help="flat positions that make a rollout derailed")
    ap.add_argument("--show", type=int, default=0, help="read the N most derailed rollouts position by position")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scene-mix", default="single=1,count=1,two=2,relation=2",
                    help="the probe's scene mix, as runs/cpu_tiny_rl.sh's GRPO draws it ('' : as the world draws them)")
    args = ap.parse_args()
    rows, cols = rollout_shape(PRESETS["tiny"]["size"])  # the tiny run's rollouts
    n, G = rows * cols, args.rollouts
    pairs = rl_prompts(-1, args.prompts, 0.5, args.seed, scene_mix=args.scene_mix)
    asks_text = torch.tensor([scene.text is not None for scene, _ in pairs]).repeat_interleave(G)
    ref = Pipeline.from_pretrained(args.reference)
    ref.model.eval()
    pool = RewardPool(("rapidocr",), workers=0)
    print("| checkpoint | flat positions | derailed rollouts: all / text prompts / scene prompts | entropy "
          "| min-p keeps > 100 codes | reference's top p: at flat / other positions | reference's p of the code "
          "before a derail (median) | reward: derailed / the rest of their groups |")
    print("|---|---|---|---|---|---|---|---|")
    for ckpt in args.checkpoints.split(","):
        pipe = Pipeline.from_pretrained(ckpt)
        pipe.model.eval()
        sampling = Sampling(temperature=1.0, min_p=args.min_p)
        prompt_ids, tokens, _, pending, _ = sample_and_submit(pipe, pairs, G, sampling, 8, pool, chunks=1,
                                                              seed=(args.seed, "derail"), shape=(rows, cols))
        rewards, _ = combine(pool.gather(pending)[0], reward_weights(Config(), pool.components))
        with torch.no_grad():
            prefix = pipe.tok.image_prefix(rows, cols)
            ids, mask = left_pad([p + prefix + t for p, t in zip(prompt_ids, tokens.tolist())], pipe.engine.pad_id)
            codes = pipe.fmt.vocab.image_code(tokens)
            p, p_ref = image_probs(pipe, ids, mask, codes), image_probs(ref, ids, mask, codes)
        top = p.max(-1).values
        flat = top < args.flat
        derailed = flat.sum(1) >= args.derailed
        kept = (p >= args.min_p * top[..., None]).sum(-1)
        entropy = -(p * p.clamp_min(1e-30).log()).sum(-1)
        ref_top = p_ref.max(-1).values
        before = []
        for i in derailed.nonzero()[:, 0].tolist():
            first = int(flat[i].nonzero()[0, 0])
            if first > 0:
                before.append(float(p_ref[i, first - 1, codes[i, first - 1]]))
        r, d = torch.tensor(rewards).reshape(-1, G), derailed.reshape(-1, G)
        mixed = d.any(1) & ~d.all(1) & torch.isfinite(r).all(1)
        versus = (f"{r[mixed][d[mixed]].mean():.3f} / {r[mixed][~d[mixed]].mean():.3f} ({int(mixed.sum())} groups)"
                  if mixed.any() else "-")
        at_flat = f"{ref_top[flat].median():.3f}" if flat.any() else "-"
        before_median = f"{torch.tensor(before).median():.3f}" if before else "-"
        print(f"| {ckpt} | {flat.float().mean():.3f} | {int(derailed.sum())} / {int(derailed[asks_text].sum())} / "
              f"{int(derailed[~asks_text].sum())} of {len(prompt_ids)} / {int(asks_text.sum())} / "
              f"{int((~asks_text).sum())} | {entropy.mean():.3f} | {(kept > 100).float().mean():.3f} | "
              f"{at_flat} / {ref_top[~flat].median():.3f} | {before_median} | {versus} |", flush=True)
        for i in flat.sum(1).argsort(descending=True)[: args.show].tolist():
            if not flat[i].any():
                break
            first = int(flat[i].nonzero()[0, 0])
            print(f"    rollout {i} ({int(flat[i].sum())} flat positions, the first at {first}):")
            for j in range(max(0, first - 2), min(n, first + 2)):
                c = codes[i, j]
                print(f"      position {j}: policy top {top[i, j]:.3f}, sampled code {p[i, j, c]:.3f} | "
                      f"reference top {ref_top[i, j]:.3f}, sampled code {p_ref[i, j, c]:.3f}")


if __name__ == "__main__":
    main()
