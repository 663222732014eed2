"""Does the cell-role loss weighting miscalibrate the image head? Sample a suite with the weighting's prior undone.

    .venv/bin/python bench/logit_adjust.py --checkpoint out/exp17/mix/candidate --alpha 1 \
        --out out/s18/la/geneval_a1 [--suite synth-geneval] [--weights first=32,object=8,text=16]

`xomni train ar --first-cell-weight ...` weighs each image target by its cell's role. If a weight depended on the
target code alone, the weighted cross-entropy's optimum would be q(k | x) proportional to w(k) p(k | x): the head
would over-predict the heavy codes (object starts, glyphs) by their weight. This script measures each code's mean
training weight w(k) over the shards' cells (the roles of `cell_roles`, weighted as `--weights` says, unnamed roles 1),
then runs the suite with the image head's logits shifted by -alpha * log w(k) (logit adjustment; alpha 1 undoes the
prior exactly under that assumption, 0 changes nothing). The shipped sampler is untouched: the shift is put in by
replacing the loaded model's image head with a biased copy for this process only.
"""

from __future__ import annotations

import argparse

import torch

import xomni.pipeline as pipeline_module
from xomni.data.world import cell_roles, make_scene
from xomni.stages import eval_suite
from xomni.stages.tokenize import load_shards, shard_world

ROLE_NAMES = {"first": "object, first cell", "object": "object", "text": "text", "rest": "background, all started"}


def mean_code_weights(folders: str, weights: dict[str, float], per_folder: int, codebook: int) -> torch.Tensor:
    """Mean loss weight of each code over the first `per_folder` scenes of each shard folder (1 for unseen codes)."""
    total, count = torch.zeros(codebook, dtype=torch.float64), torch.zeros(codebook, dtype=torch.float64)
    for folder in folders.split(","):
        indices, codes = load_shards(folder)
        split, world = shard_world(folder)
        rows, cols = codes.shape[1:]
        for i in range(min(per_folder, len(indices))):
            roles = cell_roles(make_scene(world, split, int(indices[i])), rows, cols)
            w = torch.tensor([weights.get(r, 1.0) for r in roles], dtype=torch.float64)
            total.index_add_(0, codes[i].flatten(), w)
            count.index_add_(0, codes[i].flatten(), torch.ones_like(w))
    return torch.where(count > 0, total / count.clamp(min=1), torch.ones_like(total)).float()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--suite", default="synth-geneval")
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--shards", default="out/tiny8/shards/train_128x128,out/tiny8/shards/train-dense_128x128")
    ap.add_argument("--per-folder", type=int, default=4096)
    ap.add_argument("--weights", default="first=32,object=8,text=16", help="role=weight (first, object, text, rest)")
    args = ap.parse_args()
    weights = {ROLE_NAMES[k]: float(v) for k, v in (kv.split("=") for kv in args.weights.split(","))}

    load = pipeline_module.Pipeline.from_pretrained.__func__

    def adjusted(cls, *a, **k):
        pipe = load(cls, *a, **k)
        head = pipe.model.mm_head
        w = mean_code_weights(args.shards, weights, args.per_folder, head.out_features)
        biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
        biased.weight.data.copy_(head.weight.data)
        biased.bias.data.copy_(-args.alpha * w.log())
        pipe.model.mm_head = biased.requires_grad_(False)
        # the engine's CPU fast path multiplies by its own copy of the head's weight, without a bias: through the
        # model's modules the shift applies to every image token, not to the first alone (it did until session 35)
        pipe.engine._fast = False
        print(f"image head shifted by -{args.alpha} log w; codes with w > 1: {int((w > 1).sum())} of {len(w)}")
        return pipe

    pipeline_module.Pipeline.from_pretrained = classmethod(adjusted)
    metrics = eval_suite.main(eval_suite.Config(suite=args.suite, out=args.out, checkpoint=args.checkpoint, n=args.n,
                                                source="model"))
    print({k: round(v, 3) for k, v in metrics.items() if k == "score" or k.startswith("task/")})


if __name__ == "__main__":
    main()
