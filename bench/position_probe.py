"""Does the unified model know where in the grid an image token sits?

    .venv/bin/python bench/position_probe.py CHECKPOINT [CHECKPOINT ...] [--scenes 256] [--train 192]

For each checkpoint folder (ar/, tokenizer/, text_tokenizer.json), encodes held-out scenes with its tokenizer, runs
each image alone through the model (as an understanding turn opens) and fits linear probes (softmax regression on
standardised features) from the image positions' states to their row and to their column: on the input embeddings
and after every block. Probes train on the first `--train` scenes and are scored on the rest. X-Omni gives image
tokens 1-D RoPE only: the column of a raster-order token is its index modulo the width, which a model must work out.
Prints a table of row and column accuracy per layer (chance: 1 / rows and 1 / columns).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from xomni.data.batches import scene_batch
from xomni.data.sequences import Formatter, image_grids
from xomni.data.world import WorldConfig
from xomni.stages.train_ar import load_ar
from xomni.stages.train_tokenizer import load_tokenizer
from xomni.tokenizer.text import TextTokenizer


@torch.no_grad()
def image_states(checkpoint: Path, n: int) -> tuple[list[tuple[str, torch.Tensor]], int, int]:
    """[(layer name, (n, rows*cols, D) states at the image positions)], rows, cols."""
    model = load_ar(checkpoint / "ar")
    vq = load_tokenizer(checkpoint / "tokenizer")
    fmt = Formatter(TextTokenizer.from_file(checkpoint / "text_tokenizer.json"), model.config.codebook_size)
    _, pixels = scene_batch(WorldConfig(), "heldout", range(n))
    codes = torch.cat([vq.encode(pixels[i : i + 64]) for i in range(0, n, 64)])
    rows, cols = codes.shape[1:]
    ids = torch.tensor([fmt.image_turn(c.flatten().tolist(), rows, cols) for c in codes])
    grid = image_grids(fmt.tok, ids) if model.config.image_grid_embed else None
    blocks = [(f"vision_pre.{i}", b) for i, b in enumerate(model.vision_pre)]
    blocks += [(f"layers.{i}", b) for i, b in enumerate(model.layers)]
    blocks += [(f"vision_post.{i}", b) for i, b in enumerate(model.vision_post)]
    states = [("input embedding", model.embed(ids, grid))]
    def keep(name):
        return lambda module, args, out: states.append((name, out[0] if isinstance(out, tuple) else out))

    hooks = [b.register_forward_hook(keep(name)) for name, b in blocks]
    model(ids, head="hidden", grid=grid)
    for h in hooks:
        h.remove()
    where = model.is_image(ids)[0]
    return [(name, x[:, where]) for name, x in states], rows, cols


def probe(x: torch.Tensor, y: torch.Tensor, classes: int, train: int, steps: int = 300) -> float:
    """Held-out accuracy of a softmax regression from x (N, C, D) to the label y (C,) of each of the C positions."""
    x = (x - x.mean((0, 1))) / (x.std((0, 1)) + 1e-6)
    target = y.expand(x.shape[0], -1)
    w = torch.zeros(x.shape[-1], classes, requires_grad=True)
    b = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.05)
    for _ in range(steps):
        loss = F.cross_entropy((x[:train] @ w + b).flatten(0, 1), target[:train].flatten()) + 1e-3 * w.pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return ((x[train:] @ w + b).argmax(-1) == target[train:]).float().mean().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--scenes", type=int, default=256, help="held-out scenes encoded (default 256)")
    ap.add_argument("--train", type=int, default=192, help="of which the probes train on the first (default 192)")
    args = ap.parse_args()
    if not 0 < args.train < args.scenes:
        ap.error("--train must be between 0 and --scenes")
    torch.manual_seed(0)
    print("| checkpoint | states | row accuracy | column accuracy |")
    print("|---|---|---|---|")
    for ckpt in args.checkpoints:
        states, rows, cols = image_states(ckpt, args.scenes)
        cell = torch.arange(rows * cols)
        for name, x in states:
            r = probe(x, cell // cols, rows, args.train)
            c = probe(x, cell % cols, cols, args.train)
            print(f"| {ckpt} | {name} | {r:.3f} | {c:.3f} |")
        print(f"| {ckpt} | chance | {1 / rows:.3f} | {1 / cols:.3f} |")


if __name__ == "__main__":
    main()
