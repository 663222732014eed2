"""What int8 weights cost: a checkpoint published with `--int8 true` against the same run published in fp16.

    .venv/bin/xomni publish --run out/tiny --dest /tmp/fp16 --ar out/tiny/ar_sft/model
    .venv/bin/xomni publish --run out/tiny --dest /tmp/int8 --ar out/tiny/ar_sft/model --int8 true
    .venv/bin/python bench/int8_weights.py --reference /tmp/fp16 --candidate /tmp/int8 [--n 64]

On the first --n held-out scenes, part by part, everything else held at the reference's: the tokenizer (share of
codes the same), the decoder (the reference's codes, the same noise: PSNR of each against the render and against
each other), the AR model (held-out image and answer losses, the stage's own evaluation, on the reference's codes).
Prints one table; the sizes are the model.safetensors files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from xomni.checkpoint import load_component
from xomni.data.batches import scene_batch
from xomni.data.sequences import Formatter
from xomni.data.world import WorldConfig
from xomni.model.unified import UnifiedConfig, UnifiedModel
from xomni.pipeline import ImagePipeline
from xomni.stages.train_ar import Config as ARConfig
from xomni.stages.train_ar import evaluate
from xomni.tokenizer.text import TextTokenizer


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return (10 * torch.log10(1 / ((a - b) ** 2).mean())).item()


def size_mib(folder: Path) -> float:
    return (folder / "model.safetensors").stat().st_size / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", required=True, help="checkpoint folder published in fp16")
    ap.add_argument("--candidate", required=True, help="the same run published with --int8 true")
    ap.add_argument("--n", type=int, default=64, help="held-out scenes")
    ap.add_argument("--steps", type=int, default=20, help="decoder sampling steps")
    args = ap.parse_args()
    ref, cand = Path(args.reference), Path(args.candidate)
    a, b = ImagePipeline.from_pretrained(ref), ImagePipeline.from_pretrained(cand)
    _, pixels = scene_batch(WorldConfig(), "heldout", range(args.n))
    codes_a, codes_b = a.encode(pixels), b.encode(pixels)
    rows = [("tokenizer", size_mib(ref / "tokenizer"), size_mib(cand / "tokenizer"),
             f"codes the same: {(codes_a == codes_b).float().mean().item():.4f}")]
    out_a = a.decode(codes_a, steps=args.steps, generator=torch.Generator().manual_seed(0))
    out_b = b.decode(codes_a, steps=args.steps, generator=torch.Generator().manual_seed(0))
    rows.append(("decoder", size_mib(ref / "decoder"), size_mib(cand / "decoder"),
                 f"PSNR to the renders {psnr(out_a, pixels):.2f} -> {psnr(out_b, pixels):.2f} dB; "
                 f"to each other {psnr(out_a, out_b):.1f} dB"))
    if (ref / "ar").is_dir() and (cand / "ar").is_dir():
        tok = TextTokenizer.from_file(ref / "text_tokenizer.json")
        cfg = ARConfig(eval_n=args.n)
        losses = []
        for folder in (ref, cand):
            model = load_component(folder / "ar", UnifiedConfig, UnifiedModel).eval()
            with torch.no_grad():
                torch.manual_seed(0)
                losses.append(evaluate(model, Formatter(tok, model.config.codebook_size), a.tokenizer, cfg))
        rows.append(("AR model", size_mib(ref / "ar"), size_mib(cand / "ar"),
                     "held-out loss, image {:.4f} -> {:.4f}; answers {:.4f} -> {:.4f}".format(
                         losses[0]["heldout_loss_image"], losses[1]["heldout_loss_image"],
                         losses[0]["heldout_loss_text"], losses[1]["heldout_loss_text"])))
    print(f"{args.n} held-out scenes; {args.reference} (reference) vs {args.candidate}")
    print("| part | MiB, reference | MiB, int8 | what changes |")
    print("|---|---|---|---|")
    for name, sa, sb, what in rows:
        print(f"| {name} | {sa:.2f} | {sb:.2f} | {what} |")
    print(f"| all three | {sum(r[1] for r in rows):.2f} | {sum(r[2] for r in rows):.2f} | |")


if __name__ == "__main__":
    main()
