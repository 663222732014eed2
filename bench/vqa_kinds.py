"""The tokenizer's alignment LM on held-out questions, per kind (colour / count / presence), with its most frequent
(truth, answer) pairs: where the stage's single VQA number comes from.

    .venv/bin/python bench/vqa_kinds.py --checkpoint out/tiny4 [--n 96] [--split train]

Uses the stage's own evaluation questions (`_eval_question`: kinds rotate with the scene index, presence alternates
between its "yes" and "no" forms) on the first --n held-out scenes, or training scenes with --split train: held-out
scenes each hold a (colour, shape) combination or text that training never shows, so the two splits side by side
tell memory from composition.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict

import torch

from xomni.data.batches import scene_batch
from xomni.data.world import WorldConfig
from xomni.stages.train_tokenizer import _eval_question, load_alignment_lm, load_tokenizer
from xomni.tokenizer.text import TextTokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="checkpoints/tiny", help="folder with tokenizer/, alignment_lm/, "
                                                                    "text_tokenizer.json")
    ap.add_argument("--n", type=int, default=96)
    ap.add_argument("--split", default="heldout", choices=["heldout", "train"])
    args = ap.parse_args()
    vq, lm = load_tokenizer(f"{args.checkpoint}/tokenizer"), load_alignment_lm(f"{args.checkpoint}/alignment_lm")
    tok = TextTokenizer.from_file(f"{args.checkpoint}/text_tokenizer.json")
    scenes, pixels = scene_batch(WorldConfig(), args.split, range(args.n))
    with torch.no_grad():
        embeddings = vq(pixels, quantize=True).embeddings
        qa = [_eval_question(s, i) for i, s in enumerate(scenes)]
        answers = lm.answer(embeddings, [tok.encode(x.question + "\n") for x in qa], tok.token_id("<|im_end|>"))
    right, pairs = defaultdict(lambda: [0, 0]), defaultdict(Counter)
    for x, a in zip(qa, answers):
        a = tok.decode(a).strip()
        right[x.kind][0] += a == x.answer
        right[x.kind][1] += 1
        pairs[x.kind][(x.answer, a)] += 1
    print("| kind | right | most frequent (truth, answer) |")
    print("|---|---|---|")
    for kind, (ok, total) in right.items():
        print(f"| {kind} | {ok}/{total} | {pairs[kind].most_common(4)} |")


if __name__ == "__main__":
    main()
