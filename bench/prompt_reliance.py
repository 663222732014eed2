"""Does the unified model read the prompt when it draws? Teacher-forced image loss with the scene's own prompt and
with another scene's, split by what each cell shows.

    .venv/bin/python bench/prompt_reliance.py --checkpoint checkpoints/tiny [--n 64] [--level short]

For the first --n scenes of each split that have objects, the scene's tokens (the tokenizer's reading of its render)
are scored as the image of a generation sample whose prompt is the scene's own (`prompts(scene)[level]`) or the
next scene's. Cells are grouped by the ground truth's roles (`cell_roles` in xomni/data/world.py: an object's first
cell in raster order, its other cells, text, background). Printed per split and group: mean NLL of the true code
with the own prompt and with the other prompt, and their difference (nats per code). A model that
draws from the prompt has a large gap on object and text cells; one that ignores it has none, whatever its loss.
"""

from __future__ import annotations

import argparse

import torch

from xomni.data.sequences import image_grids, pack
from xomni.data.world import CELL_ROLES, WorldConfig, cell_roles, make_scene, prompts, render
from xomni.pipeline import Pipeline

@torch.no_grad()
def code_nll(pipe: Pipeline, prompt: str, codes: torch.Tensor) -> torch.Tensor:
    """(rows*cols,) NLL of each true code given the prompt and the codes before it."""
    fmt = pipe.fmt
    sample = fmt.generation(prompt, codes.flatten().tolist(), *codes.shape)
    ids, labels, segments, positions = pack([sample], len(sample.ids), fmt.vocab.pad_id)
    logits = pipe.model(ids, positions=positions, segments=segments, head="image",
                        grid=image_grids(fmt.tok, ids) if pipe.model.config.image_grid_embed else None).float()[0]  # T K
    where = labels[0] >= fmt.vocab.text_vocab_size
    target = labels[0][where] - fmt.vocab.text_vocab_size
    return -logits[where].log_softmax(-1).gather(-1, target[:, None])[:, 0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="checkpoints/tiny")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--level", default="short", choices=("short", "medium", "dense", "photo"))
    args = ap.parse_args()
    pipe = Pipeline.from_pretrained(args.checkpoint)
    print(f"prompt level: {args.level}")
    print("| split | cells | count | NLL own prompt | NLL other prompt | gap |")
    print("|---|---|---|---|---|---|")
    for split in ("train", "heldout"):
        items, i = [], 0
        while len(items) < args.n + 1:
            scene = make_scene(WorldConfig(), split, i)
            i += 1
            if scene.objects:
                items.append((scene, pipe.codes_of(render(scene))))
        sums = {g: [0.0, 0.0, 0] for g in CELL_ROLES}
        for k in range(args.n):
            scene, codes = items[k]
            own = code_nll(pipe, prompts(scene)[args.level], codes)
            other = code_nll(pipe, prompts(items[k + 1][0])[args.level], codes)
            for g, a, b in zip(cell_roles(scene, *codes.shape), own.tolist(), other.tolist()):
                sums[g][0] += a
                sums[g][1] += b
                sums[g][2] += 1
        for g in CELL_ROLES:
            a, b, m = sums[g]
            if m:
                print(f"| {split} | {g} | {m} | {a / m:.3f} | {b / m:.3f} | {b / m - a / m:+.3f} |")


if __name__ == "__main__":
    main()
