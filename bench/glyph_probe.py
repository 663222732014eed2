"""How fast can the tiny SigLIP encoder learn to name glyphs? A glyph head alone on text-dense scenes.

    .venv/bin/python bench/glyph_probe.py [--steps 400] [--lr 1e-3] [--batch 16]

The tokenizer's encoder (tiny preset, from scratch), the decode-side adapter on its normalised features (no codebook),
and one linear head classifying each cell's glyph (none, space, 52 English letter-halves, 4 quadrants of each of 300 Chinese characters),
trained on `WorldConfig(dense_text=True)` scenes only. Prints the accuracy on each step's own (unseen) batch every 25
steps: the speed the full tokenizer recipe should come close to (docs/image_side.md).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from xomni.data.batches import label_batch, pixels_of
from xomni.data.world import CHARS_ZH, GLYPH_INDEX, GLYPHS, ZH_QUADRANTS, WorldConfig, make_scene, render
from xomni.tokenizer.siglip_vq import PRESETS, SiglipVQ


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vq = SiglipVQ(PRESETS["tiny"])
    head = nn.Linear(vq.config.adapter_dim, len(GLYPHS))
    params = list(vq.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.05, betas=(0.9, 0.98))
    first_zh = GLYPH_INDEX[CHARS_ZH[0] + ZH_QUADRANTS[0]]
    world = WorldConfig(dense_text=True)
    t0 = time.time()
    print("| step | loss | English letter-halves | Chinese characters | seconds |")
    print("|---|---|---|---|---|")
    for step in range(args.steps):
        scenes = [make_scene(world, "train", step * args.batch + j) for j in range(args.batch)]
        pixels, glyph = pixels_of([render(s) for s in scenes]), label_batch(scenes)["glyph"]
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / 50)
        logits = head(vq(pixels, quantize=False).embeddings)  # B h w G
        loss = F.cross_entropy(logits.flatten(0, 2), glyph.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 25 == 0:
            pred = logits.argmax(-1)
            zh, en = glyph >= first_zh, (glyph > 1) & (glyph < first_zh)
            print(f"| {step + 1} | {loss.item():.3f} | {(pred[en] == glyph[en]).float().mean():.3f} | "
                  f"{(pred[zh] == glyph[zh]).float().mean():.3f} | {time.time() - t0:.0f} |")


if __name__ == "__main__":
    main()
