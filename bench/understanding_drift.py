"""How far RL moved a policy's understanding from its reference, read where understanding is trained: the text
head's KL(reference || policy) at the answers of understanding conversations (`understanding_batch`, the
conversations `xomni train grpo --keep-understanding` holds the policy to), and each model's teacher-forced
accuracy there (the answer's next token is the head's argmax).

    .venv/bin/python bench/understanding_drift.py --reference out/s24/tiny/candidate \
        out/s26/grpo_s0_neg05 out/s27/grpo_s0_keep1 [--batches 8 --conversations 16 --split-seed 1000]

The conversations are those of GRPO steps `--split-seed` onwards (seed 0's scenes; by default past any 100-step
run's, so a policy trained with the term is not read on its own batches). Prints one table row per policy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from xomni.pipeline import Pipeline
from xomni.rl.grpo import forward_kl
from xomni.stages.train_grpo import answer_logprobs, quotes_text_answers, understanding_batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("policies", nargs="+", help="checkpoint folders (a GRPO run folder is one)")
    ap.add_argument("--reference", default="out/s24/tiny/candidate", help="the checkpoint RL started from")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--conversations", type=int, default=16, help="conversations per batch")
    ap.add_argument("--split-seed", type=int, default=1000, help="first GRPO step whose conversations are read")
    args = ap.parse_args()
    if args.batches < 1 or args.conversations < 1:
        ap.error("--batches and --conversations must be at least 1")
    ref = Pipeline.from_pretrained(args.reference)
    quote = quotes_text_answers(Path(args.reference))
    batches = [understanding_batch(ref, args.split_seed + i, args.conversations, 0, quote) for i in range(args.batches)]
    with torch.no_grad():
        ref_lp = [answer_logprobs(ref.model.eval(), *b) for b in batches]
        targets = [ids[:, 1:][answer[:, :-1]] for ids, _, answer, _ in batches]
        n = sum(len(t) for t in targets)
        acc = sum(int((lp.argmax(-1) == t).sum()) for lp, t in zip(ref_lp, targets)) / n
        print(f"{n} answer tokens in {args.batches * args.conversations} conversations; reference "
              f"{args.reference}: teacher-forced accuracy {acc:.4f}\n")
        print("| policy | KL(reference \\|\\| policy) per answer token | teacher-forced accuracy |")
        print("|---|---|---|")
        for path in args.policies:
            model = Pipeline.from_pretrained(path).model.eval()
            kl, right = 0.0, 0
            for b, r, t in zip(batches, ref_lp, targets):
                lp = answer_logprobs(model, *b)
                kl += float(forward_kl(lp, r).sum())
                right += int((lp.argmax(-1) == t).sum())
            print(f"| {path} | {kl / n:.5f} | {right / n:.4f} |")


if __name__ == "__main__":
    main()
