"""How many decoder sampling steps the text needs: OCR accuracy of reconstructions of held-out text scenes at several
step counts, same tokens, same seed.

    .venv/bin/python bench/decoder_steps.py --checkpoint out/tiny4/candidate [--n 48] [--steps 1,4,20]

The first --n held-out scenes (of the first 400) that carry text are encoded once; each step count decodes them
with the same generator seed; rapidocr reads them; the score is LongText-Bench's text accuracy. Prints a table.
"""

from __future__ import annotations

import argparse

import torch

from xomni.data.batches import scene_batch
from xomni.data.world import WorldConfig
from xomni.eval.longtext import match_text, text_accuracy
from xomni.eval.ocr import make_ocr_judge
from xomni.pipeline import ImagePipeline, to_image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="checkpoints/tiny")
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--steps", default="1,4,20")
    args = ap.parse_args()
    pipe = ImagePipeline.from_pretrained(args.checkpoint)
    scenes, pixels = scene_batch(WorldConfig(), "heldout", range(400))
    keep = [k for k, s in enumerate(scenes) if s.text is not None][: args.n]
    scenes, pixels = [scenes[k] for k in keep], pixels[keep]
    ocr = make_ocr_judge("rapidocr")
    codes = pipe.encode(pixels)
    print("| decoder steps | English text accuracy | Chinese text accuracy |")
    print("|---|---|---|")
    for steps in (int(x) for x in args.steps.split(",")):
        out = pipe.decode(codes, steps=steps, generator=torch.Generator().manual_seed(0))
        acc: dict[str, list] = {"en": [], "zh": []}  # TextMatch per image, pooled as the suites pool them
        for s, x in zip(scenes, out):
            acc[s.text.lang].append(match_text(ocr.read(to_image(x)), s.text.text, s.text.lang))
        mean = {k: text_accuracy(v) if v else float("nan") for k, v in acc.items()}
        print(f"| {steps} | {mean['en']:.3f} ({len(acc['en'])} scenes) | {mean['zh']:.3f} ({len(acc['zh'])} scenes) |")


if __name__ == "__main__":
    main()
