"""How fine must a decoder draw for the scene judge to see the world's shapes? The ceiling the token grid sets.

    .venv/bin/python bench/shape_resolution.py [--n 96] [--blocks 2,4,8,16] [--object-size MIN,MAX] \
        [--checkpoint checkpoints/tiny [--steps 20]]

The first --n held-out scenes are rendered, then redrawn as if every k x k pixel block were known only as one colour:
each block takes the colour most of its pixels have (a mode filter, so colours stay the world's own and only
outlines coarsen). The scene judge (xomni/eval/scene_judge.py) scores the originals and each coarsened set: the share
of scenes it gets exactly (every object's shape and colour, boxes overlapping) and the share of objects it finds with
the right shape and colour. The tiny tokens are 16 px; the tokenizer's silhouette head reads object cells at 4 px
sub-squares (0.92 right, docs/image_side.md): a decoder that drew those sub-squares perfectly would score about the
k = 4 row, one that drew a colour per token the k = 16 row. With --checkpoint, one more row: the scenes drawn through
that checkpoint's tokens and decoder (`--steps` sampling steps, seed 0), what the trained image side achieves.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

from xomni.data.batches import pixels_of
from xomni.data.world import WorldConfig, make_scene, render
from xomni.eval.scene_judge import SceneJudge, exact


def mode_blocks(image: Image.Image, k: int) -> Image.Image:
    """Each k x k block painted the colour most of its pixels have (H and W multiples of k)."""
    a = np.asarray(image.convert("RGB"), np.int64)
    H, W, _ = a.shape
    packed = (a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2]  # H W
    blocks = packed.reshape(H // k, k, W // k, k).transpose(0, 2, 1, 3).reshape(H // k, W // k, k * k)
    s = np.sort(blocks, axis=-1)
    # the longest run in each sorted block is its mode
    starts = np.concatenate([np.ones(s.shape[:-1] + (1,), bool), s[..., 1:] != s[..., :-1]], -1)
    run_id = np.cumsum(starts, -1) - 1
    out = np.empty(s.shape[:-1], np.int64)
    for idx in np.ndindex(*s.shape[:-1]):
        counts = np.bincount(run_id[idx])
        out[idx] = s[idx][np.flatnonzero(starts[idx])[counts.argmax()]]
    full = np.repeat(np.repeat(out, k, 0), k, 1)
    rgb = np.stack([(full >> 16) & 255, (full >> 8) & 255, full & 255], -1).astype(np.uint8)
    return Image.fromarray(rgb)


def found(judge: SceneJudge, image: Image.Image, scene) -> tuple[int, int]:
    """(objects of the scene the judge finds with their shape and colour, objects in the scene)."""
    got = [(o.shape, o.color) for o in judge.objects(image)]
    hit = 0
    for o in scene.objects:
        if (o.shape, o.color) in got:
            got.remove((o.shape, o.color))
            hit += 1
    return hit, len(scene.objects)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=96)
    ap.add_argument("--blocks", default="2,4,8,16")
    ap.add_argument("--object-size", default=None, metavar="MIN,MAX",
                    help="draw objects MIN-MAX px wide instead of the world's default (what a larger-object world buys)")
    ap.add_argument("--checkpoint", default=None, help="also score reconstructions through this checkpoint's tokens")
    ap.add_argument("--steps", type=int, default=20, help="decoder sampling steps for --checkpoint (default: 20)")
    args = ap.parse_args()
    judge = SceneJudge()
    cfg = WorldConfig()
    if args.object_size:
        lo, hi = (int(x) for x in args.object_size.split(","))
        cfg = WorldConfig(object_min=lo, object_max=hi)
    print(f"objects {cfg.object_min}-{cfg.object_max} px on {cfg.width}x{cfg.height}, {args.n} held-out scenes")
    scenes = [make_scene(cfg, "heldout", i) for i in range(args.n)]
    images = [render(s) for s in scenes]
    print("| drawn at | scenes exact | objects found (shape and colour) |")
    print("|---|---|---|")
    rows = [("original", images)] + [(f"{k} px blocks", [mode_blocks(im, k) for im in images])
                                     for k in (int(x) for x in args.blocks.split(","))]
    if args.checkpoint:
        from xomni.pipeline import ImagePipeline, to_image

        pipe = ImagePipeline.from_pretrained(args.checkpoint)
        drawn = []
        for i in range(0, len(images), 32):
            codes = pipe.encode(pixels_of(images[i : i + 32]))
            out = pipe.decode(codes, steps=args.steps, generator=torch.Generator().manual_seed(0))
            drawn += [to_image(x) for x in out]
        rows.append((f"{args.checkpoint}, {args.steps} decoder steps", drawn))
    for name, drawn in rows:
        right = sum(exact(judge.objects(im), s) for s, im in zip(scenes, drawn))
        hits = [found(judge, im, s) for s, im in zip(scenes, drawn)]
        objects = sum(h for h, _ in hits) / max(1, sum(n for _, n in hits))
        print(f"| {name} | {right / len(scenes):.3f} | {objects:.3f} |")


if __name__ == "__main__":
    main()
