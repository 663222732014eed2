"""Does the unified model read the image when it answers? Colour questions scored with the scene's own image and
with another scene's image.

    .venv/bin/python bench/image_reliance.py --checkpoint out/tiny4/candidate [--n 64]

For the first --n scenes of each split that have a colour question ("What color is the star?"), every colour name
is scored as the answer by its summed log-probability (teacher-forced, its closing <|im_end|> included), which gives
a distribution over the colour names. Printed per split: accuracy (the true colour scores highest), and the mean
total-variation distance between the distribution with the scene's own image and with the next scene's image. A
model that ignores the image has TV near 0 and accuracy near the answer prior; the alignment LM's colour accuracy
(bench/vqa_kinds.py) is what the tokens allow.
"""

from __future__ import annotations

import argparse

import torch

from xomni.data.sequences import image_grids, pack
from xomni.data.world import COLORS, WorldConfig, make_scene, questions, render
from xomni.pipeline import Pipeline


@torch.no_grad()
def colour_distribution(pipe: Pipeline, codes: torch.Tensor, question: str) -> torch.Tensor:
    """(C,) probabilities over COLORS' names as the answer to `question` about the image with these codes."""
    fmt = pipe.fmt
    samples = [fmt.conversation(codes.flatten().tolist(), *codes.shape, [(question, name)]) for name in COLORS]
    ids, labels, segments, positions = pack(samples, max(len(s.ids) for s in samples), fmt.vocab.pad_id)
    assert len(ids) == len(samples), "one answer per row"  # the answers differ by a few tokens: none share a row
    logits = pipe.model(ids, positions=positions, segments=segments, head="text",
                        grid=image_grids(fmt.tok, ids) if pipe.model.config.image_grid_embed else None).float()  # C T V
    logp = logits.log_softmax(-1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    score = (logp * (labels >= 0)).sum(-1)  # C: log p(answer tokens)
    return score.softmax(-1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="checkpoints/tiny")
    ap.add_argument("--n", type=int, default=64)
    args = ap.parse_args()
    pipe = Pipeline.from_pretrained(args.checkpoint)
    names = list(COLORS)
    print("| split | colour accuracy | TV(own image, other image) | scenes |")
    print("|---|---|---|---|")
    for split in ("train", "heldout"):
        items, i = [], 0
        while len(items) < args.n + 1:
            scene = make_scene(WorldConfig(), split, i)
            i += 1
            asked = [q for q in questions(scene) if q.kind == "color"]
            if asked:
                items.append((pipe.codes_of(render(scene)), asked[0]))
        hits, tv = 0, 0.0
        for k in range(args.n):
            codes, q = items[k]
            own = colour_distribution(pipe, codes, q.question)
            other = colour_distribution(pipe, items[k + 1][0], q.question)
            hits += names[int(own.argmax())] == q.answer
            tv += 0.5 * float((own - other).abs().sum())
        print(f"| {split} | {hits / args.n:.3f} | {tv / args.n:.4f} | {args.n} |")


if __name__ == "__main__":
    main()
