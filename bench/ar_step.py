"""One AR training step (forward + backward of the split loss) on a real packed batch, for model sizes side by side:
what sized the tiny preset of `xomni.model.unified`, and what bfloat16 autocast saves (`xomni train ar --bf16`; on a
CPU with native bf16, AVX512-BF16 / AMX).

    .venv/bin/python bench/ar_step.py --run out/tiny4 [--repeats 3] [--text-tokenizer FILE]

The batch is what `xomni train ar` builds at step 0 (32 world samples packed into rows of 320) from the run's text
tokenizer and token shards. Prints a markdown table: parameters, seconds per step (best of --repeats), ratio; then
the loss and gradient of one step in float32 and under bf16 autocast on the same weights.
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import asdict

import torch
import torch.nn.functional as F

from xomni.data.sequences import Formatter, pack
from xomni.data.world import make_scene
from xomni.model.unified import PRESETS, UnifiedConfig, UnifiedModel
from xomni.stages.tokenize import load_shards, shard_world
from xomni.stages.train_ar import split_loss, world_sample
from xomni.tokenizer.text import TextTokenizer

VARIANTS = {
    "tiny preset (4 LLM layers, 1 + 1 vision)": {},
    "tiny preset, bf16 autocast (`--bf16 true`)": {"bf16": True},
    "tiny preset, joint head at every position (the first loss)": {"joint_loss": True},
    "6 LLM layers, 2 + 2 vision (the first preset)": {"num_layers": 6, "num_vision_layers": 2},
    "4 LLM layers, 1 + 1 vision, MLP 512": {"intermediate_size": 512},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="out/tiny", help="run folder with shards/ (and text_tokenizer.json)")
    ap.add_argument("--text-tokenizer", default="", help="the text tokenizer (default: RUN/text_tokenizer.json)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    torch.manual_seed(0)
    tok = TextTokenizer.from_file(args.text_tokenizer or f"{args.run}/text_tokenizer.json")
    folder = f"{args.run}/shards/train_128x128"
    idx, codes = load_shards(folder)
    split, world = shard_world(folder)
    h, w = codes.shape[1:]
    fmt = Formatter(tok, PRESETS["tiny"].codebook_size)
    samples = [world_sample(fmt, "pretrain2", make_scene(world, split, int(idx[k])), codes[k].flatten().tolist(), h, w,
                            random.Random(k), 0.5, 3, 320) for k in range(args.batch)]
    ids, labels, segments, positions = pack(samples, 320, fmt.vocab.pad_id)
    print(f"{args.batch} samples packed into {ids.shape[0]} rows of {ids.shape[1]}; torch threads {torch.get_num_threads()}")
    print("| model | params (M) | seconds per step | ratio |")
    print("|---|---|---|---|")
    base = None
    for name, change in VARIANTS.items():
        change = dict(change)
        joint = change.pop("joint_loss", False)
        bf16 = change.pop("bf16", False)
        model = UnifiedModel(UnifiedConfig(**{**asdict(PRESETS["tiny"]), "text_vocab_size": tok.vocab_size, **change}))
        times = []
        for _ in range(args.repeats + 1):  # the first is a warm-up
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                if joint:  # every position through both heads, one softmax over the joint vocabulary
                    logits = model(ids, positions=positions, segments=segments)
                    loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
                else:
                    hidden = model(ids, positions=positions, segments=segments, head="hidden")
                    loss = split_loss(model, hidden, labels)[0]
            loss.backward()
            times.append(time.perf_counter() - t0)
            model.zero_grad(set_to_none=True)
        best = min(times[1:])
        base = base or best
        print(f"| {name} | {sum(p.numel() for p in model.parameters()) / 1e6:.2f} | {best:.2f} | {best / base:.2f} |")
    agreement(ids, labels, segments, positions, tok.vocab_size)


def agreement(ids, labels, segments, positions, vocab: int) -> None:
    """The same step in float32 and under bf16 autocast, on the same weights (seeded tiny model): loss and gradient."""
    torch.manual_seed(0)
    model = UnifiedModel(UnifiedConfig(**{**asdict(PRESETS["tiny"]), "text_vocab_size": vocab}))
    losses, grads = {}, {}
    for bf16 in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            hidden = model(ids, positions=positions, segments=segments, head="hidden")
            loss, parts = split_loss(model, hidden, labels)
        loss.backward()
        losses[bf16] = (loss.item(), parts["image"], parts["text"])
        grads[bf16] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).double()
        model.zero_grad(set_to_none=True)
    cos = F.cosine_similarity(grads[False], grads[True], dim=0).item()
    print(f"\nfloat32 vs bf16 autocast, same weights and batch: loss {losses[False][0]:.4f} vs {losses[True][0]:.4f} "
          f"(image {losses[False][1]:.4f} vs {losses[True][1]:.4f}, text {losses[False][2]:.4f} vs "
          f"{losses[True][2]:.4f}); gradient cosine {cos:.5f}, norm ratio "
          f"{(grads[True].norm() / grads[False].norm()).item():.4f}")


if __name__ == "__main__":
    main()
