"""Does a policy derail because of what the sampler lets through? The derailed share of a suite's held-out prompts
under several min-p values, sampling only (no decoder, no judge).

    .venv/bin/python bench/derail_sampling.py --checkpoints out/s24/tiny/candidate,out/s24/tiny/grpo_s0 \
        --suite synth-text-zh --min-p 0.03,0.1,0.3 [--n 200 --batch 50 --seed 0]

For each checkpoint and min-p, the suite's first n held-out prompts are sampled at their scenes' sizes in batches
(temperature 1, no CFG; one generator per batch, seeded by seed and batch, so two checkpoints see the same noise),
and the engine's top-code probabilities (`Rollout.top`) say which images derailed (`xomni.engine.derailed`). For the
derailed images, also: in which row of the image the first flat position falls (how many images per row), and the
probability the policy gave the code it sampled just before it (median; the sampler's log-prob, after the min-p
filter), against the median over the codes sampled before that one. If a derail starts from a code in the
distribution's tail, a larger min-p (which cuts the tail) derails less; if it starts from a state the policy cannot
go on from whatever it samples, it does not. X-Omni's sampler (min-p 0.03) is what every suite is scored with;
the other values are a diagnosis, not a proposal.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from xomni.engine import FLAT, Sampling, derailed
from xomni.eval.suites import TEXT_SUITES, build
from xomni.pipeline import Pipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoints", required=True, help="comma-separated checkpoint folders")
    ap.add_argument("--suite", default="synth-text-zh",
                    help="a suite that generates images: synth-geneval or a text suite")
    ap.add_argument("--min-p", default="0.03,0.1,0.3", help="comma-separated min-p values")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.suite not in (*TEXT_SUITES, "synth-geneval"):
        raise SystemExit(f"--suite must generate images (synth-geneval, {', '.join(TEXT_SUITES)}), got {args.suite!r}")
    if args.n < 1 or args.batch < 1:
        raise SystemExit("--n and --batch must be >= 1")
    min_ps = [float(x) for x in args.min_p.split(",")]
    items = build(args.suite, args.n)
    sizes = {(it["scene"]["width"], it["scene"]["height"]) for it in items}
    if len(sizes) != 1:
        raise SystemExit(f"the suite's scenes have several sizes {sorted(sizes)}: this bench batches one size")
    (width, height), prompts = sizes.pop(), [it["prompt"] for it in items]
    print(f"{args.suite}: {len(prompts)} held-out prompts at {width}x{height}, temperature 1, no CFG")
    print("| checkpoint | min-p | derailed | first flat position: images per row | p of the code before it (median) "
          "| p of the codes before those (median) |")
    print("|---|---|---|---|---|---|")
    for path in args.checkpoints.split(","):
        pipe = Pipeline.from_pretrained(path)
        for min_p in min_ps:
            hit, firsts, before, others = 0, [], [], []
            for b in range(0, len(prompts), args.batch):
                gen = torch.Generator().manual_seed(args.seed * 100003 + b)
                rollout, codes = pipe.sample_codes(prompts[b : b + args.batch], width, height,
                                                   Sampling(min_p=min_p), gen)
                probs, flat = rollout.logprobs.exp(), rollout.top < FLAT
                for i in torch.nonzero(derailed(rollout.top)).flatten().tolist():
                    first = int(flat[i].nonzero()[0])
                    hit += 1
                    firsts.append(first // codes.shape[2])  # the row it falls in
                    if first > 0:
                        before.append(float(probs[i, first - 1]))
                    others.extend(probs[i, :first - 1].tolist() if first > 1 else [])
            med = lambda xs: f"{statistics.median(xs):.3f}" if xs else "-"  # noqa: E731
            rows = " ".join(str(firsts.count(r)) for r in range(codes.shape[1])) if firsts else "-"
            print(f"| {path} | {min_p} | {hit / len(prompts):.3f} ({hit}) | {rows} | {med(before)} | {med(others)} |")


if __name__ == "__main__":
    main()
